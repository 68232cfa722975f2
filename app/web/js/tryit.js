// "Try it": pick or drop a photo, see the matches and the barcodes read in it, draw a box to
// classify one region, and correct the answer ("this is SKU X" adds the photo, or the boxed
// region, as a reference of X).

import { form, request, sku } from "./api.js";
import { formatName, readCodeItems } from "./barcodes.js";
import { $, dragBoxes, dropZone, el, fillCatalogueSelect, guarded, notice, thumbnail } from "./ui.js";

const state = { file: null, box: null, sequence: 0 };
let catalogueChanged = () => {};

export function initTry({ onCatalogueChanged }) {
  catalogueChanged = onCatalogueChanged;
  $("photo-input").addEventListener("change", (event) => {
    if (event.target.files.length) usePhoto(event.target.files[0]);
  });
  dropZone($("drop"), usePhoto);
  $("top-k").addEventListener("change", classify);
  $("catalogue-select").addEventListener("change", classify);
  $("filter-input").addEventListener("change", classify);
  $("clear-box").addEventListener("click", () => {
    setBox(null);
    classify();
  });
  $("correct-form").addEventListener("submit", (event) => {
    event.preventDefault();
    correct($("correct-sku").value.trim());
  });
  initBoxDrawing();
  window.addEventListener("resize", () => setBox(state.box));
}

export function showTry() {
  setBox(state.box);
}

export function setSkuSuggestions(skus) {
  $("sku-list").replaceChildren(...skus.map((value) => el("option", { value })));
}

export function setCatalogues(names) {
  fillCatalogueSelect($("catalogue-select"), names);
  $("catalogue-filter").hidden = names.length === 0;
}

function usePhoto(file) {
  state.file = file;
  const photo = $("photo");
  if (photo.src) URL.revokeObjectURL(photo.src);
  photo.onload = () => {
    setBox(null);
    classify();
  };
  photo.onerror = () => {
    setBox(null);
    classify(); // the browser cannot show it; the service says why it cannot read it either
  };
  photo.src = URL.createObjectURL(file);
  $("stage").hidden = false;
  $("stage-help").hidden = false;
}

// The box lives in the photo's pixel coordinates (what the API takes); the overlay is scaled.
function scale() {
  const photo = $("photo");
  return photo.naturalWidth / photo.clientWidth;
}

function setBox(box) {
  state.box = box;
  $("clear-box").hidden = !box;
  $("correct-submit").textContent = `Add the ${box ? "region" : "photo"} as its reference`;
  const overlay = $("box");
  overlay.hidden = !box;
  if (box && $("photo").clientWidth > 0) { // a hidden page has no layout: redrawn when shown
    const s = scale();
    overlay.style.left = `${box[0] / s}px`;
    overlay.style.top = `${box[1] / s}px`;
    overlay.style.width = `${(box[2] - box[0]) / s}px`;
    overlay.style.height = `${(box[3] - box[1]) / s}px`;
  }
}

function initBoxDrawing() {
  dragBoxes($("stage"), $("photo"), {
    move: (box) => setBox(box),
    done: (box) => {
      if (box) {
        setBox(box);
        classify();
      } else {
        setBox(state.box); // a click keeps the box there was
      }
    },
  });
}

export async function classify() {
  if (!state.file) return;
  const sequence = (state.sequence += 1);
  const fields = {
    image: state.file,
    top_k: $("top-k").value,
    catalogue: $("catalogue-select").value,
    filter: $("filter-input").value.trim(), // JSON, checked by the API (its 422 is shown)
  };
  if (state.box) fields.boxes = JSON.stringify([state.box]);
  $("result").classList.add("busy");
  const answer = await guarded(() => request("POST", "/classify", { body: form(fields) }));
  if (sequence !== state.sequence) return; // a newer request is on its way
  $("result").classList.remove("busy");
  if (answer) render(answer, fields);
}

// With `boxes` the API answers {"regions": [{"box", "matches", "unknown", "barcodes"}], "model"}.
function resultOf(answer) {
  if (Array.isArray(answer.regions) && answer.regions.length) {
    const region = answer.regions[0];
    return { ...region, scope: `Region [${region.box.join(", ")}] of the photo` };
  }
  const scope = state.box ? "Whole photo: this server does not take boxes" : "Whole photo";
  return { ...answer, scope };
}

function render(answer, sent) {
  const result = resultOf(answer);
  const verdict = $("verdict");
  const best = result.matches[0];
  if (!best) verdict.textContent = "No match: the catalogue is empty";
  else if (result.unknown) verdict.textContent = `Unknown product (best score ${best.score.toFixed(3)})`;
  else if (result.verdict === "ambiguous") verdict.textContent = `Maybe ${best.name} (${best.sku}): ambiguous`;
  else verdict.textContent = `${best.name} (${best.sku})`;
  verdict.classList.toggle("unknown", result.unknown || !best);
  const searched = [
    result.scope,
    sent.catalogue && `catalogue ${sent.catalogue}`,
    sent.filter && `filter ${sent.filter}`,
    `model ${answer.model}`,
  ];
  $("result-scope").textContent = searched.filter(Boolean).join(" · ");
  // A code a product holds makes that product the answer (unless the image strongly disagrees):
  // its match says which code; every code read is listed, held or not.
  const codes = result.barcodes || [];
  $("matches").replaceChildren(...result.matches.map((match) => matchItem(match, codes.filter((c) => c.sku === match.sku))));
  const names = Object.fromEntries(result.matches.map((m) => [m.sku, m.name]));
  $("code-list").replaceChildren(...readCodeItems(codes, names));
  $("codes").hidden = codes.length === 0;
  $("result").hidden = false;
}

function matchItem(match, codes = []) {
  const bar = el("span");
  bar.style.width = `${Math.max(0, match.score) * 100}%`;
  return el(
    "li",
    { class: "match", "data-sku": match.sku },
    thumbnail(match.sku, match.image_id, 96),
    el(
      "div",
      { class: "info" },
      el("div", { class: "sku" }, match.sku),
      el("div", {}, match.name),
      el("div", { class: "score" }, `score ${match.score.toFixed(3)}`),
      el("div", { class: "score-bar" }, bar),
      codes.map((c) => el("div", { class: "code-tag" }, `barcode ${c.text} (${formatName(c.format)})`)),
    ),
    el("button", { type: "button", class: "this-is needs-edit", onclick: () => correct(match.sku) }, `This is ${match.sku}`),
  );
}

function crop(box) {
  const [x0, y0, x1, y1] = box;
  const canvas = el("canvas", { width: x1 - x0, height: y1 - y0 });
  canvas.getContext("2d").drawImage($("photo"), x0, y0, x1 - x0, y1 - y0, 0, 0, x1 - x0, y1 - y0);
  return new Promise((resolve) => {
    canvas.toBlob((blob) => resolve(new File([blob], "region.jpg", { type: "image/jpeg" })), "image/jpeg", 0.95);
  });
}

// One click: the photo (or the boxed region) becomes a reference image of `target`.
async function correct(target) {
  if (!state.file || !target) return;
  const what = state.box ? "region" : "photo";
  const image = state.box ? await crop(state.box) : state.file;
  const path = `/products/${sku(target)}/images`;
  const added = await guarded(() => request("POST", path, { body: form({ images: image }) }));
  if (!added) return;
  const id = added.image_ids[0];
  notice(
    added.added
      ? `Added the ${what} to ${target} as reference image #${id}.`
      : `The ${what} already is reference image #${id} of ${target}.`,
  );
  catalogueChanged(target);
  await classify(); // show what the correction changed
}
