// Barcodes: a product's codes on its card (listed, added, removed), "find by barcode" in the
// Catalogue, and the codes a photo showed as the other pages list them (Try it, Review, Shelf).
//
// The API stores and serves a product's codes as GTIN-14 (a shorter GTIN zero-padded on the
// left) and takes them at any length, with spaces or dashes between digits: what is typed goes
// as it is, and the service's 409 (held by another product) or 422 (the check digit it should
// have) is shown like every error.

import { form, request, sku } from "./api.js";
import { $, el, guarded, notice } from "./ui.js";

const FORMATS = {
  ean13: "EAN-13",
  ean8: "EAN-8",
  upca: "UPC-A",
  upce: "UPC-E",
  code128: "Code 128",
  qrcode: "QR code",
  datamatrix: "Data Matrix",
};

export const formatName = (format) => FORMATS[format] || format;

// "4006381333931, 036000291452": commas, semicolons or lines between codes (a space may sit
// inside one: "9638 5074").
export function splitCodes(text) {
  return text.split(/[,;\n]+/).map((s) => s.trim()).filter(Boolean);
}

// The codes read in a photo ({text, format, gtin, sku}), one <li> each: the code as printed,
// its format, and the product holding it (a link) or "not registered". `names`: sku -> name,
// for the products the page already knows.
export function readCodeItems(codes, names = {}) {
  return codes.map((code) => {
    let holder;
    if (code.sku) {
      const name = names[code.sku];
      holder = el(
        "span",
        { class: "holder" },
        "held by ",
        el("a", { href: `#catalogue/${encodeURIComponent(code.sku)}` }, code.sku),
        name ? ` (${name})` : "",
      );
    } else {
      holder = el("span", { class: "unregistered" }, code.gtin ? "not registered" : "not a product code");
    }
    return el(
      "li",
      { class: "code", "data-text": code.text, "data-gtin": code.gtin ?? "", "data-sku": code.sku ?? "" },
      el("span", { class: "code-text" }, code.text),
      el("span", { class: "code-format" }, formatName(code.format)),
      holder,
    );
  });
}

// One line for a tooltip: "barcode 4006381333931 (EAN-13, banana)".
export function describeCodes(codes) {
  return codes
    .map((c) => `barcode ${c.text} (${formatName(c.format)}, ${c.sku ?? (c.gtin ? "not registered" : "not a product code")})`)
    .join(", ");
}

// The retail codes no product held: confirming a review item attaches them.
export const unheldGtins = (codes) => codes.filter((c) => c.gtin && !c.sku).map((c) => c.gtin);

// ---- the product card and the Catalogue's lookup -------------------------------------------

let current = null; // the product shown
let open = async () => {}; // (sku) => its card shown
let changed = async () => {}; // (sku) => the list (and what other pages know) reloaded

export function initBarcodes({ onOpen, onChanged }) {
  open = onOpen;
  changed = onChanged;
  $("barcodes-form").addEventListener("submit", addCodes);
  $("barcode-find").addEventListener("submit", findByCode);
}

// A server without barcodes answers products without the field: the section stays hidden.
export function showProductBarcodes(product) {
  if (!current || current.sku !== product.sku) $("barcodes-input").value = ""; // typed for another
  current = product;
  const codes = product.barcodes;
  $("product-barcodes").hidden = !Array.isArray(codes);
  if (!Array.isArray(codes)) return;
  $("barcode-none").hidden = codes.length > 0;
  $("barcode-list").replaceChildren(
    ...codes.map((gtin) =>
      el(
        "li",
        { class: "chip code", "data-gtin": gtin },
        el("span", { class: "code-text" }, gtin),
        el(
          "button",
          {
            type: "button",
            class: "remove-code needs-admin",
            title: `Remove barcode ${gtin}`,
            "aria-label": `Remove barcode ${gtin}`,
            onclick: () => removeCode(product.sku, gtin),
          },
          "×",
        ),
      ),
    ),
  );
}

async function addCodes(event) {
  event.preventDefault();
  const target = current.sku;
  const codes = splitCodes($("barcodes-input").value);
  if (!codes.length) return;
  const before = new Set(current.barcodes);
  const path = `/products/${sku(target)}/barcodes`;
  const product = await guarded(() => request("POST", path, { body: form({ barcodes: codes }) }));
  if (!product) return; // the 409 or 422 is in the banner; the typed codes stay to be fixed
  event.target.reset();
  const added = product.barcodes.filter((gtin) => !before.has(gtin));
  notice(
    added.length
      ? `Added barcode${added.length === 1 ? "" : "s"} ${added.join(", ")} to ${target}.`
      : `${target} already has ${codes.length === 1 ? "that barcode" : "those barcodes"}.`,
  );
  await changed(target);
  await open(target);
}

async function removeCode(productSku, gtin) {
  if (!window.confirm(`Remove barcode ${gtin} from ${productSku}?`)) return;
  const ok = await guarded(() => request("DELETE", `/products/${sku(productSku)}/barcodes/${gtin}`));
  if (ok === undefined) return;
  notice(`Removed barcode ${gtin} from ${productSku}.`);
  await changed(productSku);
  await open(productSku);
}

// GET /products?barcode= answers the page holding the one product with that code, or none.
async function findByCode(event) {
  event.preventDefault();
  const text = $("barcode-find-input").value.trim();
  if (!text) return;
  const page = await guarded(() => request("GET", `/products?barcode=${encodeURIComponent(text)}`));
  if (!page) return;
  const [product] = page.items;
  if (!product) {
    notice(`No product has barcode ${text}.`);
    return;
  }
  notice(`Barcode ${text} belongs to ${product.sku} (${product.name}).`);
  await open(product.sku);
}
