// "Shelf": a shelf or fridge photo through POST /shelf, with an optional planogram and must-have
// list. The products' boxes come from the service's detector, or are drawn here (drag on the
// photo) or pasted as JSON; the answer is drawn by shelf-report.js.

import { form, request } from "./api.js";
import { drawOverlay, renderReport } from "./shelf-report.js";
import { $, dragBoxes, dropZone, fillCatalogueSelect, guarded } from "./ui.js";

// detector: the service's detector id, null for none, undefined while /readyz is unread.
const state = { file: null, report: null, sequence: 0, detector: undefined };

export function initShelf() {
  $("shelf-photo-input").addEventListener("change", (event) => {
    if (event.target.files.length) usePhoto(event.target.files[0]);
  });
  dropZone($("shelf-drop"), usePhoto);
  $("shelf-form").addEventListener("submit", (event) => {
    event.preventDefault();
    audit();
  });
  $("shelf-boxes").addEventListener("input", redraw);
  $("shelf-undo-box").addEventListener("click", () => setBoxes(drawnBoxes().slice(0, -1)));
  $("shelf-clear-boxes").addEventListener("click", () => setBoxes([]));
  $("shelf-photo").addEventListener("load", () => {
    redraw();
    if (state.detector !== null) audit(); // with a detector (or not knowing) the photo is enough
  });
  $("shelf-photo").addEventListener("error", () => {
    redraw();
    if (state.detector !== null) audit(); // the browser cannot show it; the service says why
  });
  initDrawing();
  redraw();
}

export function setDetector(detector) {
  state.detector = detector;
  redraw();
}

export function setShelfCatalogues(names) {
  fillCatalogueSelect($("shelf-catalogue-select"), names);
  $("shelf-catalogue-filter").hidden = names.length === 0;
}

function usePhoto(file) {
  state.file = file;
  state.report = null; // boxes and answers belong to the photo they were made on
  $("shelf-result").hidden = true;
  $("shelf-boxes").value = "";
  const photo = $("shelf-photo");
  if (photo.src) URL.revokeObjectURL(photo.src);
  photo.src = URL.createObjectURL(file);
  $("shelf-stage").hidden = false;
  redraw();
}

// The boxes to send: the textarea's JSON (drawn boxes are written there). Unparsable text is
// sent as it is, so the service's 422 says what is wrong with it; here it draws nothing.
function drawnBoxes() {
  try {
    const boxes = JSON.parse($("shelf-boxes").value.trim() || "[]");
    return Array.isArray(boxes) ? boxes.filter((b) => Array.isArray(b) && b.length === 4 && b.every(Number.isFinite)) : [];
  } catch {
    return [];
  }
}

function setBoxes(boxes) {
  $("shelf-boxes").value = boxes.length ? JSON.stringify(boxes) : "";
  redraw();
}

function redraw() {
  const boxes = drawnBoxes();
  $("shelf-box-count").textContent = boxes.length ? `${boxes.length} drawn` : "none";
  $("shelf-submit").disabled = !state.file;
  const help = $("shelf-help");
  help.hidden = !state.file || state.detector !== null || boxes.length > 0 || state.report !== null;
  help.textContent =
    "This service has no product detector: drag on the photo to box each product (or paste the " +
    "boxes under Boxes), then Check the shelf.";
  drawOverlay($("shelf-overlay"), $("shelf-photo"), state.report, boxes);
}

function initDrawing() {
  dragBoxes($("shelf-stage"), $("shelf-photo"), {
    move: (box) => drawOverlay($("shelf-overlay"), $("shelf-photo"), state.report, [...drawnBoxes(), box]),
    done: (box) => (box ? setBoxes([...drawnBoxes(), box]) : redraw()),
  });
}

// "cola, fanta" or ["cola", "fanta"]: sent as repeated must_have fields, like catalogues.
function mustHave(text) {
  const value = text.trim();
  if (value.startsWith("[")) {
    try {
      const list = JSON.parse(value);
      if (Array.isArray(list)) return list.map(String);
    } catch {
      // not JSON after all: read as a plain list below
    }
  }
  return value.split(/[\s,;"[\]]+/).filter(Boolean);
}

async function audit() {
  if (!state.file) return;
  const sequence = (state.sequence += 1);
  const sent = {
    image: state.file,
    boxes: $("shelf-boxes").value.trim(),
    catalogue: $("shelf-catalogue-select").value,
    filter: $("shelf-filter").value.trim(), // JSON, checked by the API (its 422 is shown)
    group_by: $("shelf-group-by").value.trim(),
    planogram: $("shelf-planogram").value.trim(),
    must_have: mustHave($("shelf-must-have").value),
  };
  $("shelf-result").classList.add("busy");
  $("shelf-submit").textContent = "Checking…";
  const report = await guarded(() => request("POST", "/shelf", { body: form(sent) }));
  if (sequence !== state.sequence) return; // a newer request is on its way
  $("shelf-result").classList.remove("busy");
  $("shelf-submit").textContent = "Check the shelf";
  if (!report) return;
  state.report = report;
  renderReport(report, sent);
  redraw();
}
