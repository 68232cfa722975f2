// Small DOM helpers shared by the pages: elements, the error banner, notices, drop zones,
// catalogue choosers, thumbnails.

import { request, sku } from "./api.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function showError(error) {
  $("error-text").textContent = error.message || String(error);
  $("error").hidden = false;
  $("notice").hidden = true;
}

export function clearError() {
  $("error").hidden = true;
}

export function notice(message) {
  $("notice").textContent = message;
  $("notice").hidden = false;
}

// Runs an action, showing its error instead of losing it; returns undefined on failure.
export async function guarded(action) {
  clearError();
  try {
    return await action();
  } catch (error) {
    showError(error);
    return undefined;
  }
}

const MIN_BOX_PX = 8; // on screen: a shorter drag is a click, not a box

// Boxes drawn by dragging on `photo` (inside `stage`): drawn in screen pixels, reported in the
// photo's own (the upright picture the service reads). `move(box)` follows the drag;
// `done(box)` ends it, with null for a click.
export function dragBoxes(stage, photo, { move, done }) {
  let start = null;
  const point = (event) => {
    const rect = photo.getBoundingClientRect();
    const clamp = (v, max) => Math.min(Math.max(v, 0), max);
    return [clamp(event.clientX - rect.left, rect.width), clamp(event.clientY - rect.top, rect.height)];
  };
  const natural = (a, b) => {
    const s = photo.naturalWidth / photo.clientWidth;
    const [x0, x1] = [Math.min(a[0], b[0]), Math.max(a[0], b[0])].map((v) => Math.round(v * s));
    const [y0, y1] = [Math.min(a[1], b[1]), Math.max(a[1], b[1])].map((v) => Math.round(v * s));
    return [x0, y0, Math.min(x1, photo.naturalWidth), Math.min(y1, photo.naturalHeight)];
  };
  stage.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    stage.setPointerCapture(event.pointerId);
    start = point(event);
  });
  stage.addEventListener("pointermove", (event) => {
    if (start) move(natural(start, point(event)));
  });
  stage.addEventListener("pointerup", (event) => {
    if (!start) return;
    const end = point(event);
    const big = Math.abs(end[0] - start[0]) >= MIN_BOX_PX && Math.abs(end[1] - start[1]) >= MIN_BOX_PX;
    const box = big ? natural(start, end) : null;
    start = null;
    done(box);
  });
}

// A drop zone (a <label> around a file input) that takes a dropped file too.
export function dropZone(zone, onFile) {
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files.length) onFile(event.dataTransfer.files[0]);
  });
}

// A catalogue <select>: "all products" and one option per catalogue, keeping the choice.
export function fillCatalogueSelect(select, names) {
  const chosen = select.value;
  select.replaceChildren(
    el("option", { value: "" }, "all products"),
    ...names.map(({ name, count }) => el("option", { value: name }, `${name} (${count})`)),
  );
  select.value = names.some((c) => c.name === chosen) ? chosen : "";
}

// Thumbnails are fetched (they need the API key) and shown as blob: URLs, kept per image; a
// fetch in flight is shared (a list re-rendered while loading asks once), a failed one retried.
const thumbUrls = new Map(); // "sku/id/size" -> Promise of a blob: URL

export function thumbnail(productSku, imageId, size = 128) {
  const box = el("div", { class: "thumb", "data-image-id": imageId }, `#${imageId}`);
  const key = `${productSku}/${imageId}/${size}`;
  if (!thumbUrls.has(key)) {
    const url = request("GET", `/products/${sku(productSku)}/images/${imageId}?size=${size}`, { raw: true })
      .then((response) => response.blob())
      .then((blob) => URL.createObjectURL(blob));
    url.catch(() => thumbUrls.delete(key));
    thumbUrls.set(key, url);
  }
  thumbUrls.get(key).then(
    (url) => box.replaceChildren(el("img", { src: url, alt: `${productSku} image ${imageId}`, class: "thumb" })),
    (error) => {
      box.title = error.message; // the placeholder stays; the reason is one hover away
    },
  );
  return box;
}

export function forgetThumbnails(productSku) {
  for (const [key, url] of thumbUrls) {
    if (key.startsWith(`${productSku}/`)) {
      url.then(URL.revokeObjectURL, () => {});
      thumbUrls.delete(key);
    }
  }
}
