// Small DOM helpers shared by the pages: elements, the error banner, notices, thumbnails.

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

// Thumbnails are fetched (they need the API key) and shown as blob: URLs, kept per image.
const thumbUrls = new Map();

export function thumbnail(productSku, imageId, size = 128) {
  const box = el("div", { class: "thumb", "data-image-id": imageId }, `#${imageId}`);
  const key = `${productSku}/${imageId}/${size}`;
  const show = (url) => {
    box.replaceChildren(el("img", { src: url, alt: `${productSku} image ${imageId}`, class: "thumb" }));
  };
  if (thumbUrls.has(key)) {
    show(thumbUrls.get(key));
    return box;
  }
  request("GET", `/products/${sku(productSku)}/images/${imageId}?size=${size}`, { raw: true })
    .then((response) => response.blob())
    .then((blob) => {
      const url = URL.createObjectURL(blob);
      thumbUrls.set(key, url);
      show(url);
    })
    .catch((error) => {
      box.title = error.message; // the placeholder stays; the reason is one hover away
    });
  return box;
}

export function forgetThumbnails(productSku) {
  for (const [key, url] of thumbUrls) {
    if (key.startsWith(`${productSku}/`)) {
      URL.revokeObjectURL(url);
      thumbUrls.delete(key);
    }
  }
}
