// The Review page: classifications the service kept (RETAILKLIP_REVIEW), most uncertain first.
// One click confirms a suggestion (the photo becomes that product's reference) or rejects the
// item. Keyboard, for a clerk with a hundred to go: 1-3 confirm that suggestion of the selected
// item, x rejects it as "not a product", n as "not in the catalogue", j / k move the selection.
// An item lists the barcodes read in its photo: confirming it attaches those no product held to
// the confirmed product (in the same write as the photo).

import { form, request } from "./api.js";
import { readCodeItems, unheldGtins } from "./barcodes.js";
import { $, el, guarded, notice } from "./ui.js";

const PAGE = 50;
const photoUrls = new Map(); // item id -> blob: URL (the photo needs the API key)
let items = [];
let selected = 0;
let onChanged = () => {};

function photo(item) {
  const box = el("div", { class: "thumb review-photo" }, `#${item.id}`);
  const show = (url) => box.replaceChildren(el("img", { src: url, alt: `review item ${item.id}` }));
  if (photoUrls.has(item.id)) show(photoUrls.get(item.id));
  else {
    request("GET", `/review/${item.id}/photo`, { raw: true })
      .then((response) => response.blob())
      .then((blob) => {
        const url = URL.createObjectURL(blob);
        photoUrls.set(item.id, url);
        show(url);
      })
      .catch((error) => {
        box.title = error.message;
      });
  }
  return box;
}

function forget(itemId) {
  const url = photoUrls.get(itemId);
  if (url) URL.revokeObjectURL(url);
  photoUrls.delete(itemId);
}

async function confirm(item, targetSku) {
  const added = await guarded(() =>
    request("POST", `/review/${item.id}/confirm`, { body: form({ sku: targetSku }) }),
  );
  if (!added) return;
  // Attached in the same transaction, or the confirmation failed (409: held by now).
  const attached = unheldGtins(item.barcodes || []);
  const many = attached.length > 1;
  const codes = attached.length ? ` Barcode${many ? "s" : ""} ${attached.join(", ")} ${many ? "are" : "is"} now ${targetSku}'s.` : "";
  notice(`Item #${item.id} is now reference image #${added.image_ids[0]} of ${targetSku}.${codes}`);
  forget(item.id);
  onChanged(targetSku);
  await loadReview();
}

async function reject(item, reason) {
  const done = await guarded(() =>
    request("POST", `/review/${item.id}/reject`, { body: form({ reason }) }),
  );
  if (done === undefined) return;
  notice(`Item #${item.id} rejected (${reason.replaceAll("_", " ")}).`);
  forget(item.id);
  await loadReview();
}

// The codes read in the item's photo, and what confirming does with those no product held.
function codesBlock(item) {
  const codes = item.barcodes || [];
  if (!codes.length) return null;
  const unheld = unheldGtins(codes);
  const names = Object.fromEntries(item.candidates.map((c) => [c.sku, c.name]));
  return el(
    "div",
    { class: "review-codes" },
    el("ul", { class: "codes" }, readCodeItems(codes, names)),
    unheld.length
      ? el(
          "p",
          { class: "muted code-note" },
          `Confirming attaches the unregistered barcode${unheld.length === 1 ? "" : "s"} to the confirmed product.`,
        )
      : null,
  );
}

function card(item, index) {
  const other = el("input", {
    class: "review-sku",
    placeholder: "another sku",
    list: "sku-list",
    pattern: "[A-Za-z0-9._\\-]{1,64}",
  });
  const score = (value) => (value === null || value === undefined ? "-" : value.toFixed(3));
  return el(
    "li",
    {
      class: index === selected ? "review-item selected" : "review-item",
      "data-item-id": item.id,
      onclick: () => select(index),
    },
    photo(item),
    el(
      "div",
      { class: "info" },
      el("div", { class: `verdict-tag ${item.verdict}` }, item.verdict),
      el("div", { class: "muted" }, `best ${score(item.top_score)} · margin ${score(item.margin)}`),
      el(
        "ol",
        { class: "suggestions" },
        item.candidates.map((c, i) =>
          el(
            "li",
            {},
            el(
              "button",
              { type: "button", class: "confirm", "data-sku": c.sku, onclick: () => confirm(item, c.sku) },
              `${i + 1}. ${c.sku} (${c.score.toFixed(3)})`,
            ),
          ),
        ),
      ),
      codesBlock(item),
      el(
        "form",
        {
          class: "review-other",
          onsubmit: (event) => {
            event.preventDefault();
            if (other.value.trim()) confirm(item, other.value.trim());
          },
        },
        other,
        el("button", { type: "submit" }, "Confirm"),
      ),
      el(
        "div",
        {},
        el("button", { type: "button", class: "reject", onclick: () => reject(item, "not_a_product") }, "Not a product (x)"),
        el("button", { type: "button", class: "reject", onclick: () => reject(item, "not_in_catalogue") }, "Not in the catalogue (n)"),
      ),
    ),
  );
}

function select(index) {
  selected = Math.max(0, Math.min(index, items.length - 1));
  const rows = $("review-list").children;
  for (let i = 0; i < rows.length; i += 1) rows[i].classList.toggle("selected", i === selected);
  rows[selected]?.scrollIntoView({ block: "nearest" });
}

export async function loadReview() {
  const page = await guarded(() => request("GET", `/review?limit=${PAGE}`));
  if (!page) return;
  items = page.items;
  selected = Math.min(selected, Math.max(0, items.length - 1));
  $("review-mode").textContent =
    page.mode === "off"
      ? "The review queue is off (RETAILKLIP_REVIEW=off): the service keeps no photos."
      : `${page.total} item(s) kept (RETAILKLIP_REVIEW=${page.mode}), most uncertain first. ` +
        "Keys: 1-3 confirm a suggestion, x not a product, n not in the catalogue, j / k move.";
  $("review-list").replaceChildren(...items.map(card));
}

function onKey(event) {
  if ($("page-review").hidden || event.target.closest("input, textarea, select")) return;
  const item = items[selected];
  if (event.key === "j") select(selected + 1);
  else if (event.key === "k") select(selected - 1);
  else if (!item) return;
  else if (["1", "2", "3"].includes(event.key)) {
    const candidate = item.candidates[Number(event.key) - 1];
    if (candidate) confirm(item, candidate.sku);
  } else if (event.key === "x") reject(item, "not_a_product");
  else if (event.key === "n") reject(item, "not_in_catalogue");
}

export function initReview({ onCatalogueChanged }) {
  onChanged = onCatalogueChanged;
  $("review-refresh").addEventListener("click", () => loadReview());
  document.addEventListener("keydown", onKey);
}
