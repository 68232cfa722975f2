"""The JSON-text form fields (`metadata`, `boxes`) parsed into what the use cases take; each
held to the one JSON rule of app/strict_json.py, every refusal a 422 naming the field."""

from __future__ import annotations

from typing import Any

from app.api.errors import Invalid
from app.recognition.regions import Box
from app.strict_json import JsonRefused, loads_strict

METADATA_SHAPE = "metadata must be a JSON object"
BOXES_SHAPE = "boxes must be a JSON list of [x0, y0, x1, y1] lists"


def parse_metadata(raw: str | None) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    try:
        value = loads_strict(raw)
    except JsonRefused as exc:
        raise Invalid(exc.worded("metadata", METADATA_SHAPE)) from exc
    if not isinstance(value, dict):
        raise Invalid(METADATA_SHAPE)
    return value


def parse_boxes(raw: str, limit: int) -> list[Box]:
    """`[[x0, y0, x1, y1], ...]`, 1 to `limit` boxes, 0 <= x0 < x1 and 0 <= y0 < y1 (whether
    they fit the photo is known once it is decoded: app/recognition/regions.py)."""
    try:
        value: Any = loads_strict(raw)
    except JsonRefused as exc:
        raise Invalid(exc.worded("boxes", BOXES_SHAPE)) from exc
    if not isinstance(value, list) or not value:
        raise Invalid(BOXES_SHAPE)
    if len(value) > limit:
        raise Invalid(f"boxes: at most {limit} boxes per request")
    boxes = []
    for i, box in enumerate(value):
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
        ):
            raise Invalid(f"boxes[{i}]: must be [x0, y0, x1, y1], four numbers")
        # Finite, and integers within 64 bits: loads_strict holds every number to that.
        x0, y0, x1, y1 = (float(v) for v in box)
        if x0 < 0 or y0 < 0 or x0 >= x1 or y0 >= y1:
            raise Invalid(f"boxes[{i}]: need 0 <= x0 < x1 and 0 <= y0 < y1")
        boxes.append((x0, y0, x1, y1))
    return boxes
