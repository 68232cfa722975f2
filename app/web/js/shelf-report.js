// What POST /shelf answered, shown: every region boxed on the photo with its product's name in
// its verdict's colour, the gaps dashed, the rows, facings, must-haves and the planogram check.

import { describeCodes } from "./barcodes.js";
import { $, el } from "./ui.js";

const percent = (share) => `${(share * 100).toFixed(1)}%`;
const counted = (n, one, many) => `${n} ${n === 1 ? one : many}`;

// A region's name: the product when known ("?" after it when not sure), else "unknown" (on the
// photo just "?": a real shelf has many, in boxes too narrow for the word).
function labelOf(region, onPhoto = false) {
  const best = region.matches[0];
  if (region.unknown || !best) return onPhoto ? "?" : "unknown";
  return region.verdict === "ambiguous" ? `${best.name}?` : best.name;
}

function describe(region) {
  const best = region.matches[0];
  const guess = best ? `${best.name} (${best.sku}, score ${best.score.toFixed(3)})` : "no match";
  const codes = region.barcodes && region.barcodes.length ? `; ${describeCodes(region.barcodes)}` : "";
  return `${region.verdict}: ${guess}; shelf ${region.shelf + 1}, place ${region.position + 1}${codes}`;
}

// Boxes in the photo's pixels, placed in percent of its size: they follow the displayed size
// (a resize, a phone) without being drawn again.
export function drawOverlay(overlay, photo, report, drawn) {
  const [width, height] = [photo.naturalWidth, photo.naturalHeight];
  if (!width || !height) {
    overlay.replaceChildren();
    return;
  }
  const place = (node, [x0, y0, x1, y1]) => {
    node.style.left = `${(x0 / width) * 100}%`;
    node.style.top = `${(y0 / height) * 100}%`;
    node.style.width = `${((x1 - x0) / width) * 100}%`;
    node.style.height = `${((y1 - y0) / height) * 100}%`;
    return node;
  };
  const regions = report ? report.regions : [];
  const gaps = report ? report.gaps : [];
  const answered = new Set(regions.map((r) => JSON.stringify(r.box)));
  overlay.replaceChildren(
    ...regions.map((region, index) =>
      place(
        el(
          "div",
          {
            class: `region ${region.verdict}`,
            "data-index": index,
            "data-sku": region.unknown || !region.matches.length ? "" : region.matches[0].sku,
            "data-verdict": region.verdict,
            "data-barcodes": region.barcodes && region.barcodes.length ? region.barcodes.map((c) => c.text).join(" ") : undefined,
            title: describe(region),
          },
          el("span", { class: "label" }, labelOf(region, true)),
        ),
        region.box,
      ),
    ),
    ...gaps.map((gap) =>
      place(
        el(
          "div",
          { class: "gap", title: `gap on shelf ${gap.shelf + 1}, ${Math.round(gap.width)} px wide` },
          el("span", { class: "label" }, "gap"),
        ),
        gap.box,
      ),
    ),
    // Drawn (or pasted) and not yet sent.
    ...drawn.filter((box) => !answered.has(JSON.stringify(box))).map((box) => place(el("div", { class: "pending" }), box)),
  );
}

// Count, share of the facings, share of their summed widths.
function shareCells(item) {
  return [item.count, percent(item.share), percent(item.width_share)].map((v) => el("td", { class: "num" }, String(v)));
}

function facingsRows(facings) {
  return facings.map((f) =>
    el(
      "tr",
      { "data-sku": f.sku ?? "", class: f.sku === null ? "unknown" : "" },
      el("td", {}, f.sku ?? "unknown"),
      el("td", {}, f.name ?? "not recognised"),
      ...shareCells(f),
    ),
  );
}

function groupRows(groups) {
  return groups.map((g) =>
    el("tr", { class: g.value === null ? "unknown" : "" }, el("td", {}, g.value ?? "unknown, or without the key"), ...shareCells(g)),
  );
}

// Each row left to right, its facings as chips in their verdict's colour, gaps where they are.
function shelfRows(report) {
  return report.shelves.map((shelf) => {
    const chips = [];
    for (const index of shelf.regions) {
      const region = report.regions[index];
      chips.push(el("li", { class: `chip ${region.verdict}`, title: describe(region) }, labelOf(region)));
      for (const gap of report.gaps) {
        if (gap.shelf === shelf.index && gap.after === region.position) chips.push(el("li", { class: "chip gap" }, "gap"));
      }
    }
    return el(
      "li",
      { "data-shelf": shelf.index },
      el("strong", {}, `Shelf ${shelf.index + 1}: ${counted(shelf.facings, "facing", "facings")}`),
      el("ul", { class: "chips" }, chips),
    );
  });
}

function gapItems(gaps) {
  if (!gaps.length) return [el("li", { class: "muted" }, "No gaps: every row is filled edge to edge.")];
  return gaps.map((g) =>
    el("li", { class: "gap-item" }, `Shelf ${g.shelf + 1}, after facing ${g.after + 1}: ${Math.round(g.width)} px empty`),
  );
}

function showMissing(missing, asked) {
  $("shelf-missing-block").hidden = missing === null;
  if (missing === null) return;
  $("shelf-missing-summary").textContent = missing.length
    ? `${counted(missing.length, "must-have is", "must-haves are")} not on the shelf:`
    : `All ${counted(asked.length, "must-have", "must-haves")} found.`;
  $("shelf-missing").replaceChildren(...missing.map((sku) => el("li", { class: "chip missing", "data-sku": sku }, sku)));
}

function showPlanogram(plan) {
  $("shelf-planogram-block").hidden = plan === null;
  if (plan === null) return;
  const ok = plan.positions.filter((p) => p.status === "ok").length;
  $("shelf-score").textContent = `${percent(plan.score)} in place (${ok} of ${counted(plan.positions.length, "planned facing", "planned facings")})`;
  $("shelf-unplanned").textContent = plan.unplanned.length ? `Found but not planned: ${plan.unplanned.join(", ")}` : "Nothing found that the plan does not have.";
  $("shelf-positions").tBodies[0].replaceChildren(
    ...plan.positions.map((p) =>
      el(
        "tr",
        { class: `status-${p.status}`, "data-status": p.status },
        el("td", { class: "num" }, String(p.shelf + 1)),
        el("td", { class: "num" }, String(p.position + 1)),
        el("td", {}, p.expected),
        el("td", {}, p.found ?? "—"),
        el("td", {}, p.status.replace("_", " ")),
      ),
    ),
  );
}

export function renderReport(report, sent) {
  $("shelf-summary").textContent = [
    counted(report.regions.length, "facing", "facings"),
    `on ${counted(report.shelves.length, "shelf", "shelves")},`,
    counted(report.gaps.length, "gap", "gaps"),
  ].join(" ");
  $("shelf-scope").textContent = [
    report.detector ? `found by the detector ${report.detector}` : "the boxes sent",
    sent.catalogue && `catalogue ${sent.catalogue}`,
    sent.filter && `filter ${sent.filter}`,
    `model ${report.model}`,
  ]
    .filter(Boolean)
    .join(" · ");
  $("shelf-facings").tBodies[0].replaceChildren(...facingsRows(report.facings));
  $("shelf-groups-block").hidden = report.groups === null;
  if (report.groups !== null) {
    $("shelf-group-key").textContent = sent.group_by;
    $("shelf-groups").tBodies[0].replaceChildren(...groupRows(report.groups));
  }
  $("shelf-rows").replaceChildren(...shelfRows(report));
  $("shelf-gaps").replaceChildren(...gapItems(report.gaps));
  showMissing(report.missing, sent.must_have);
  showPlanogram(report.planogram);
  $("shelf-result").hidden = false;
}
