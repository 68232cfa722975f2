"""The shelf audit: a shelf or fridge photo in, the shelf's facts out.

regions   the boxes the client drew, or the detector's (one class, "product"): the photo
          is decoded at the detector's scale, and the detector runs alone on the model
          thread (never beside an encoder pass)
name      every region classified as in /classify: cropped at the scale where the smallest
          box still covers the model's input (decoded again only when the detector's scale
          is too coarse for that), embedded in passes the machine holds, searched, named
layout    rows and places from the boxes' geometry (app/recognition/shelf_layout.py)
count     facings per SKU (and per metadata value), gaps, the must-have list, the
          planogram (app/recognition/shelf_checks.py)
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import numpy as np

from app.catalogue.products import ProductStore
from app.detector.product_detector import Detection, ProductDetector
from app.encoder.decode import DecodedPhoto, ImageDecodeError
from app.encoder.preprocess import reduction_for
from app.recognition.classify import Classifier, ClassifyOptions
from app.recognition.regions import Box, crops_pixels
from app.recognition.scopes import Scope
from app.recognition.search import Verdict
from app.recognition.shelf_checks import (
    Facings,
    PlanogramCheck,
    PlanShelf,
    check_planogram,
    facings,
    missing_must_haves,
)
from app.recognition.shelf_layout import Gap, Row, arrange
from app.recognition.uploads import UploadRejected


class DetectorMissing(Exception):
    """A photo without `boxes` and no detector to find its products."""


@dataclass(frozen=True)
class ShelfChecks:
    planogram: Sequence[PlanShelf] | None = None
    must_have: Sequence[str] | None = None
    group_by: str | None = None  # a metadata key: facings per value too


@dataclass(frozen=True)
class ShelfRegion:
    box: Box  # pixels of the upright photo
    verdict: Verdict
    detection: float | None  # the detector's score; None for a box the client drew
    shelf: int
    position: int  # left to right in its row

    @property
    def sku(self) -> str | None:
        """What the facing counts as: None for an unknown product."""
        verdict = self.verdict
        return None if verdict.unknown or not verdict.matches else verdict.matches[0].sku


@dataclass(frozen=True)
class ShelfReport:
    regions: list[ShelfRegion]
    rows: list[Row]
    facings: list[Facings]  # per SKU; key None: the unknown facings
    groups: list[Facings] | None  # per value of `group_by`; key None: no value (or unknown)
    gaps: list[Gap]
    missing: list[str] | None  # of the must-have list
    planogram: PlanogramCheck | None
    model: str
    detector: str | None  # the detector's model id, when it found the regions


@dataclass
class ShelfAudit:
    classifier: Classifier
    products: ProductStore
    detector: ProductDetector | None
    detection_threshold: float | None  # None: the detector's own
    max_boxes: int

    async def audit(
        self,
        photo: bytes,
        boxes: list[Box] | None,
        options: ClassifyOptions,
        scope: Scope,
        checks: ShelfChecks,
    ) -> ShelfReport:
        """Raises DetectorMissing, UploadRejected, BoxOutside, and as /classify does."""
        classifier, inference = self.classifier, self.classifier.inference
        prepared = await classifier.prepare(options, scope)
        reading = classifier.read_codes(photo)
        scores: list[float | None]
        try:
            if boxes is not None:
                regions, scores = boxes, [None] * len(boxes)
                work = functools.partial(self._crops, photo, None, regions)
            else:
                decoded, found = await self._detect(photo)
                found = [d for d in found if d.box[2] > d.box[0] and d.box[3] > d.box[1]]
                regions = [_full_size(d.box, decoded) for d in found]
                scores = [d.score for d in found]
                work = functools.partial(self._crops, photo, decoded, regions)
            hits = await inference.decode_and_search(work, prepared.spec) if regions else []
        except ImageDecodeError as exc:
            raise UploadRejected("image", None, exc) from exc
        named = await classifier.name(hits, prepared, options)
        verdicts = await classifier.with_codes(named, hits, reading, prepared, options, regions)
        layout = arrange(regions)
        shelf_regions = [
            ShelfRegion(box, verdict, score, layout.shelf_of[i], layout.position_of[i])
            for i, (box, verdict, score) in enumerate(zip(regions, verdicts, scores, strict=True))
        ]
        return await self._report(shelf_regions, layout.rows, layout.gaps, checks, boxes is None)

    async def _detect(self, photo: bytes) -> tuple[DecodedPhoto, list[Detection]]:
        detector = self.detector
        if detector is None:
            raise DetectorMissing()
        inference = self.classifier.inference
        long_side = detector.metadata.preprocess.long_side
        decoded = await inference.off_loop(
            lambda: inference.photo(photo, lambda w, h: max(w, h) // long_side)
        )
        found = await inference.alone_on_model_thread(
            lambda: detector.detect(decoded.image, self.detection_threshold, self.max_boxes)
        )
        return decoded, found

    def _crops(
        self, photo: bytes, decoded: DecodedPhoto | None, boxes: list[Box]
    ) -> list[np.ndarray]:
        """Blocking (the decode pool): each region's model pixels, from `decoded` when its
        scale is fine enough for the smallest box, else from the photo decoded again."""
        inference = self.classifier.inference
        sizes = [(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes]
        needed = reduction_for(inference.encoder.preprocess, sizes)
        if decoded is None or round(1 / decoded.scale) > needed:
            decoded = inference.photo(photo, lambda w, h: needed)
        return crops_pixels(inference, decoded, boxes)

    async def _report(
        self,
        regions: list[ShelfRegion],
        rows: list[Row],
        gaps: list[Gap],
        checks: ShelfChecks,
        detected: bool,
    ) -> ShelfReport:
        keys = [r.sku for r in regions]
        widths = [r.box[2] - r.box[0] for r in regions]
        groups = None
        if checks.group_by is not None:
            found = sorted({k for k in keys if k is not None})
            metadata = await anyio.to_thread.run_sync(self.products.metadata_of, found)
            values = [_group_value(metadata.get(k or ""), checks.group_by) for k in keys]
            groups = facings(values, widths)
        planogram = None
        if checks.planogram is not None:
            by_row = [[keys[i] for i in row.members] for row in rows]
            planogram = check_planogram(checks.planogram, by_row)
        missing = None
        if checks.must_have is not None:
            missing = missing_must_haves(checks.must_have, {k for k in keys if k is not None})
        detector = self.detector
        return ShelfReport(
            regions=regions,
            rows=rows,
            facings=facings(keys, widths),
            groups=groups,
            gaps=gaps,
            missing=missing,
            planogram=planogram,
            model=self.classifier.model_id,
            detector=detector.model_id if detected and detector is not None else None,
        )


def _full_size(box: tuple[int, int, int, int], decoded: DecodedPhoto) -> Box:
    """A box in the decoded image's pixels, in the upright photo's full-size pixels."""
    sx, sy = decoded.width / decoded.image.width, decoded.height / decoded.image.height
    x0, y0, x1, y1 = box
    return (
        float(max(0, round(x0 * sx))),
        float(max(0, round(y0 * sy))),
        float(min(decoded.width, round(x1 * sx))),
        float(min(decoded.height, round(y1 * sy))),
    )


def _group_value(metadata: dict[str, Any] | None, key: str) -> str | None:
    """A facing's group: the metadata value (a string as it is, anything else as JSON text);
    None for an unknown product or one without the key."""
    if metadata is None or key not in metadata:
        return None
    value = metadata[key]
    return value if isinstance(value, str) else json.dumps(value)
