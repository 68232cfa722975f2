// "Shelf": a shelf or fridge photo through POST /shelf, with an optional planogram and must-have
// list. The products' boxes come from the service's detector, or are drawn here (drag on the
// photo) or pasted as JSON; the answer is drawn by shelf-report.js.

import { form, request } from "./api.js";
import { drawOverlay, renderReport } from "./shelf-report.js";
import { $, dropZone, fillCatalogueSelect, guarded } from "./ui.js";

const MIN_BOX_PX = 8; // on screen: a shorter drag is a click, not a box

// detector: the service's detector id, null for none, undefined while /readyz is unread.
const state = { file: null, report: null, drag: null, sequence: 0, detector: undefined };

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

// Drawn in screen pixels, kept in the photo's own (the upright picture the service reads).
function initDrawing() {
  const stage = $("shelf-stage");
  const point = (event) => {
    const rect = $("shelf-photo").getBoundingClientRect();
    const clamp = (v, max) => Math.min(Math.max(v, 0), max);
    return [clamp(event.clientX - rect.left, rect.width), clamp(event.clientY - rect.top, rect.height)];
  };
  const natural = (a, b) => {
    const photo = $("shelf-photo");
    const s = photo.naturalWidth / photo.clientWidth;
    const [x0, x1] = [Math.min(a[0], b[0]), Math.max(a[0], b[0])].map((v) => Math.round(v * s));
    const [y0, y1] = [Math.min(a[1], b[1]), Math.max(a[1], b[1])].map((v) => Math.round(v * s));
    return [x0, y0, Math.min(x1, photo.naturalWidth), Math.min(y1, photo.naturalHeight)];
  };
  stage.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    stage.setPointerCapture(event.pointerId);
    state.drag = point(event);
  });
  stage.addEventListener("pointermove", (event) => {
    if (!state.drag) return;
    drawOverlay($("shelf-overlay"), $("shelf-photo"), state.report, [...drawnBoxes(), natural(state.drag, point(event))]);
  });
  stage.addEventListener("pointerup", (event) => {
    if (!state.drag) return;
    const [start, end] = [state.drag, point(event)];
    state.drag = null;
    const big = Math.abs(end[0] - start[0]) >= MIN_BOX_PX && Math.abs(end[1] - start[1]) >= MIN_BOX_PX;
    if (big) setBoxes([...drawnBoxes(), natural(start, end)]);
    else redraw();
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
