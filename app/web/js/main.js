// The console's shell: pages by URL hash, the API key dialog, what every page shares.

import { apiKey, onKeyNeeded, optional, request, setApiKey } from "./api.js";
import { initCatalogue, loadPage, openProduct, setCataloguesAvailable } from "./catalogue.js";
import { initReview, loadReview } from "./review.js";
import { initShelf, setDetector, setShelfCatalogues } from "./shelf.js";
import { initTry, setCatalogues, setSkuSuggestions, showTry } from "./tryit.js";
import { $, guarded } from "./ui.js";

const SUGGESTED_SKUS = 500; // the correction box suggests the first page of SKUs
const PAGES = ["try", "shelf", "catalogue", "review"]; // #name shows section #page-name

// Several calls may hit a 401 at once: they share one dialog.
let pendingKey = null;

function askForKey(reason) {
  if (pendingKey) return pendingKey;
  const dialog = $("key-dialog");
  $("key-reason").textContent = reason
    ? `The service answered: ${reason}. Enter a key; it is kept for this browser tab only.`
    : "Sent as X-API-Key and kept for this browser tab only.";
  $("key-input").value = apiKey();
  pendingKey = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        pendingKey = null;
        const key = $("key-input").value.trim();
        const save = dialog.returnValue === "save" && key !== "";
        if (save) setApiKey(key);
        resolve(save);
      },
      { once: true },
    );
  });
  dialog.showModal();
  $("key-input").focus();
  return pendingKey;
}

// The key's role decides what the pages offer (body.role-classify / role-edit hide the rest).
async function showRole() {
  const answer = await guarded(() => request("GET", "/auth/role"));
  const role = answer ? answer.role : null;
  for (const name of ["classify", "edit", "admin"]) document.body.classList.toggle(`role-${name}`, role === name);
}

async function refreshShared() {
  const page = await guarded(() => request("GET", `/products?limit=${SUGGESTED_SKUS}`));
  if (page) setSkuSuggestions(page.items.map((p) => p.sku));
  const catalogues = await guarded(() => optional("GET", "/catalogues"));
  const list = catalogues ? catalogues.items || catalogues.catalogues || catalogues : [];
  const names = Array.isArray(list)
    ? list.map((c) => (typeof c === "string" ? { name: c, count: "?" } : { name: c.name, count: c.product_count ?? c.products ?? c.count }))
    : [];
  setCatalogues(names);
  setShelfCatalogues(names);
  setCataloguesAvailable(catalogues !== null && catalogues !== undefined);
}

function route(event) {
  const [page, ...rest] = (location.hash.slice(1) || "try").split("/");
  const current = PAGES.includes(page) ? page : "try";
  for (const name of PAGES) {
    $(`page-${name}`).hidden = current !== name;
    $(`nav-${name}`).classList.toggle("active", current === name);
  }
  if (current === "try") showTry();
  else if (current === "review") loadReview();
  else if (current === "catalogue" && rest.length) openProduct(decodeURIComponent(rest.join("/")));
  else if (current === "catalogue" && event) loadPage(); // others may have changed it meanwhile
}

async function showModel() {
  try {
    const ready = await (await fetch("/readyz")).json();
    const name = ready.model_name && ready.model_name !== ready.model ? `${ready.model_name} (${ready.model})` : ready.model;
    $("model").textContent = ready.model ? `model ${name} on ${ready.device}` : "service not ready";
    if (ready.model) setDetector(ready.detector ?? null); // null: /shelf needs boxes
  } catch {
    $("model").textContent = "service unreachable";
  }
}

function start() {
  onKeyNeeded(askForKey);
  $("key-button").addEventListener("click", async () => {
    if (await askForKey("")) {
      await showRole();
      await refreshShared();
      await loadPage(0);
    }
  });
  $("error-close").addEventListener("click", () => {
    $("error").hidden = true;
  });
  initTry({ onCatalogueChanged: refreshShared });
  initCatalogue({ onChanged: refreshShared });
  initReview({ onCatalogueChanged: refreshShared });
  initShelf();
  window.addEventListener("hashchange", route);
  route();
  showModel();
  // One after the other: a 401 on the first opens the key dialog once, the rest reuse the key.
  showRole()
    .then(refreshShared)
    .then(() => loadPage(0));
}

start();
