// "Catalogue": browse pages of products, search them, open one (images, add, delete, catalogues,
// barcodes, look-alikes), register a new product.
//
// Search: the API has no text search, so the box filters the loaded page (PAGE products) on sku,
// name, metadata, catalogues and barcodes, and looks the text up as an exact SKU across the whole
// catalogue; "find by barcode" (barcodes.js) asks the whole catalogue for a code's product.

import { form, optional, request, sku } from "./api.js";
import { initBarcodes, showProductBarcodes, splitCodes } from "./barcodes.js";
import { $, el, forgetThumbnails, guarded, notice, thumbnail } from "./ui.js";

const PAGE = 100;
const ROW_THUMB_PX = 96; // fetched at twice the 48 px shown: sharp on a phone's screen
const SKU_PATTERN = /^(?!\.+$)[A-Za-z0-9._-]{1,64}$/;

const state = { offset: 0, total: 0, items: [], exact: null, product: null };
let changed = () => {};

export function initCatalogue({ onChanged }) {
  changed = onChanged;
  $("prev-page").addEventListener("click", () => loadPage(Math.max(0, state.offset - PAGE)));
  $("next-page").addEventListener("click", () => loadPage(state.offset + PAGE));
  let timer = null;
  $("search").addEventListener("input", () => {
    renderRows();
    clearTimeout(timer);
    timer = setTimeout(lookUpExact, 250);
  });
  $("new-product").addEventListener("click", () => {
    $("product").hidden = true;
    $("register-form").hidden = false;
    $("register-form").elements.sku.focus();
  });
  $("register-form").addEventListener("submit", register);
  $("add-images-form").addEventListener("submit", addImages);
  $("catalogues-form").addEventListener("submit", saveCatalogues);
  $("delete-product").addEventListener("click", deleteProduct);
  initBarcodes({
    onOpen: openProduct,
    onChanged: async (target) => {
      changed(target);
      await loadPage();
    },
  });
}

export function setCataloguesAvailable(available) {
  $("register-catalogues").hidden = !available;
}

export async function loadPage(offset = state.offset) {
  const page = await guarded(() => request("GET", `/products?limit=${PAGE}&offset=${offset}`));
  if (!page) return;
  if (page.items.length === 0 && page.offset > 0 && page.total > 0) {
    return loadPage(Math.max(0, page.total - PAGE)); // the last page emptied under us
  }
  Object.assign(state, { offset: page.offset, total: page.total, items: page.items });
  renderRows();
}

function haystack(product) {
  const parts = [
    product.sku,
    product.name,
    JSON.stringify(product.metadata),
    ...(product.catalogues || []),
    ...(product.barcodes || []),
  ];
  return parts.join(" ").toLowerCase();
}

function renderRows() {
  const needle = $("search").value.trim().toLowerCase();
  let shown = needle ? state.items.filter((p) => haystack(p).includes(needle)) : state.items;
  if (needle && state.exact && !shown.some((p) => p.sku === state.exact.sku)) {
    shown = [state.exact, ...shown];
  }
  $("product-rows").replaceChildren(...shown.map(productRow));
  $("search-scope").textContent = needle
    ? `${shown.length} match${shown.length === 1 ? "" : "es"} on this page of ${state.items.length}` +
      (state.total > state.items.length ? " (and an exact SKU anywhere)" : "")
    : "";
  const last = state.offset + state.items.length;
  $("page-info").textContent = state.total ? `${state.offset + 1}–${last} of ${state.total}` : "no products yet";
  $("prev-page").disabled = state.offset === 0;
  $("next-page").disabled = last >= state.total;
}

function productRow(product) {
  const selected = state.product && state.product.sku === product.sku;
  return el(
    "tr",
    { "data-sku": product.sku, class: selected ? "selected" : "", onclick: () => openProduct(product.sku) },
    el("td", { class: "photo" }, product.image_ids.length ? thumbnail(product.sku, product.image_ids[0], ROW_THUMB_PX) : null),
    el("td", { class: "sku" }, product.sku),
    el("td", {}, product.name),
    el("td", {}, String(product.image_count)),
    el("td", {}, (product.catalogues || []).join(", ")),
    el("td", { class: "meta" }, Object.keys(product.metadata).length ? JSON.stringify(product.metadata) : ""),
  );
}

async function lookUpExact() {
  const text = $("search").value.trim();
  state.exact = null;
  if (SKU_PATTERN.test(text) && !state.items.some((p) => p.sku === text)) {
    state.exact = await guarded(() => optional("GET", `/products/${sku(text)}`));
  }
  renderRows();
}

export async function openProduct(productSku) {
  const product = await guarded(() => request("GET", `/products/${sku(productSku)}`));
  if (!product) return;
  state.product = product;
  $("register-form").hidden = true;
  $("product").hidden = false;
  $("product").dataset.sku = product.sku;
  $("product-title").textContent = `${product.name} (${product.sku})`;
  const facts = [
    ["Metadata", JSON.stringify(product.metadata)],
    ["Images", String(product.image_count)],
    ["Updated", new Date(product.updated_at).toLocaleString()],
  ];
  if (product.catalogues) facts.splice(1, 0, ["Catalogues", product.catalogues.join(", ") || "none"]);
  $("product-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("catalogues-form").hidden = !product.catalogues;
  $("catalogues-input").value = (product.catalogues || []).join(", ");
  showProductBarcodes(product);
  $("product-images").replaceChildren(...product.image_ids.map((id) => imageFigure(product.sku, id)));
  renderRows();
  showSimilar(product.sku);
}

function imageFigure(productSku, id) {
  const remove = () => deleteImage(productSku, id);
  return el(
    "figure",
    { "data-image-id": id },
    thumbnail(productSku, id, 128),
    el("figcaption", {}, `#${id} `, el("button", { type: "button", class: "delete-image needs-admin", onclick: remove }, "Delete")),
  );
}

async function showSimilar(productSku) {
  const answer = await guarded(() => optional("GET", `/products/${sku(productSku)}/similar`));
  const items = answer ? answer.items || answer.similar || answer.products || [] : [];
  $("similar").hidden = items.length === 0;
  $("similar-list").replaceChildren(
    ...items.map((item) =>
      el(
        "li",
        { "data-sku": item.sku },
        item.image_id ? thumbnail(item.sku, item.image_id, 64) : null,
        el(
          "span",
          {},
          el("a", { href: `#catalogue/${encodeURIComponent(item.sku)}` }, item.sku),
          ` ${item.name || ""} · score ${Number(item.score).toFixed(3)}`,
        ),
      ),
    ),
  );
}

function describeWarnings(warnings = []) {
  return warnings.map((w) =>
    typeof w === "string"
      ? w
      : `image ${w.upload + 1} looks like ${w.sku} ${w.name} (reference #${w.image_id}, score ${Number(w.score).toFixed(3)})`,
  );
}

function splitList(text) {
  return text.split(",").map((s) => s.trim()).filter(Boolean);
}

async function register(event) {
  event.preventDefault();
  const f = event.target.elements;
  const fields = { sku: f.sku.value.trim(), name: f.name.value, metadata: f.metadata.value.trim(), images: [...f.images.files] };
  if (!$("register-catalogues").hidden) fields.catalogues = splitList(f.catalogues.value);
  fields.barcodes = splitCodes(f.barcodes.value); // 409 / 422 as the service words them
  const product = await guarded(() => request("POST", "/products", { body: form(fields) }));
  if (!product) return;
  event.target.reset();
  const warnings = describeWarnings(product.warnings);
  const codes = product.barcodes && product.barcodes.length ? ` and barcode(s) ${product.barcodes.join(", ")}` : "";
  notice(`Registered ${product.sku} with ${product.image_count} image(s)${codes}.${warnings.length ? ` Warning: ${warnings.join("; ")}` : ""}`);
  changed(product.sku);
  await loadPage();
  await openProduct(product.sku);
}

async function addImages(event) {
  event.preventDefault();
  const target = state.product.sku;
  const files = [...$("add-images").files];
  const added = await guarded(() => request("POST", `/products/${sku(target)}/images`, { body: form({ images: files }) }));
  if (!added) return;
  event.target.reset();
  const warnings = describeWarnings(added.warnings);
  notice(`Added ${added.added} new image(s) to ${target}.${warnings.length ? ` Warning: ${warnings.join("; ")}` : ""}`);
  changed(target);
  await loadPage();
  await openProduct(target);
}

async function saveCatalogues(event) {
  event.preventDefault();
  const target = state.product.sku;
  const names = splitList($("catalogues-input").value);
  const ok = await guarded(() => request("PUT", `/products/${sku(target)}/catalogues`, { json: names }));
  if (ok === undefined) return;
  notice(`${target} is now in: ${names.join(", ") || "no catalogue"}.`);
  changed(target);
  await loadPage();
  await openProduct(target);
}

async function deleteImage(productSku, id) {
  if (!window.confirm(`Delete image #${id} of ${productSku}?`)) return;
  const ok = await guarded(() => request("DELETE", `/products/${sku(productSku)}/images/${id}`));
  if (ok === undefined) return;
  forgetThumbnails(productSku);
  notice(`Deleted image #${id} of ${productSku}.`);
  changed(productSku);
  await loadPage();
  await openProduct(productSku);
}

async function deleteProduct() {
  const target = state.product.sku;
  if (!window.confirm(`Delete ${target} and all its reference images?`)) return;
  const ok = await guarded(() => request("DELETE", `/products/${sku(target)}`));
  if (ok === undefined) return;
  forgetThumbnails(target);
  state.product = null;
  if (state.exact && state.exact.sku === target) state.exact = null;
  $("product").hidden = true;
  notice(`Deleted ${target}.`);
  changed(target);
  await loadPage();
}
