"""The detector's dev-set table: recall at IoU 0.5 and 0.7, AP50, boxes per photo, time.

Photos are boxed shelf photos in Pascal VOC form (`NAME.jpg` beside `NAME.xml`), such as
`../shared/data/cornershop-dev` (evaluation and model selection only). A method is any
callable from a photo path to (boxes, scores) in photo pixels; it opens and decodes the photo
itself, so its time includes the JPEG decode, as a service's would.

Recall and boxes per photo are at the method's operating threshold, and the time is taken at
that threshold; AP50 ranks every box the method returns down to a low floor (`AP_FLOOR`).
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.detector.metrics import PhotoResult, average_precision, recall

# (photo path, lowest score to return) -> (boxes, scores), best first.
Method = Callable[[Path, float], tuple[np.ndarray, np.ndarray]]
AP_FLOOR = 0.05


@dataclass
class BoxedPhoto:
    path: Path
    boxes: np.ndarray  # (M, 4) x1, y1, x2, y2


def read_voc_folder(folder: str | Path) -> list[BoxedPhoto]:
    photos = []
    for xml in sorted(Path(folder).rglob("*.xml"), key=lambda p: (len(p.stem), p.stem)):
        image = xml.with_suffix(".jpg")
        if not image.exists():
            continue
        boxes = []
        for obj in ET.parse(xml).findall("object"):
            bb = obj.find("bndbox")
            if bb is None:
                continue
            boxes.append([float(bb.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax")])
        photos.append(BoxedPhoto(image, np.asarray(boxes, np.float32).reshape(-1, 4)))
    return photos


@dataclass
class DetectorScores:
    name: str
    recall50: float
    recall70: float
    ap50: float
    recall50_floor: float  # recall at IoU 0.5 of every box down to the AP floor
    boxes_per_photo: float
    ms_per_photo: float
    photos: int
    truth: int
    per_photo: list[PhotoResult]

    def row(self) -> str:
        return (
            f"| {self.name} | {self.recall50:.3f} | {self.recall70:.3f} | {self.ap50:.3f} | "
            f"{self.recall50_floor:.3f} | {self.boxes_per_photo:.1f} | {self.ms_per_photo:.0f} |"
        )


HEADER = (
    "| method | recall@0.5 | recall@0.7 | AP50 | recall@0.5, all boxes | boxes/photo | ms/photo |\n"
    "| --- | --- | --- | --- | --- | --- | --- |"
)


def evaluate_method(
    name: str,
    method: Method,
    photos: list[BoxedPhoto],
    operating_threshold: float,
    ap_floor: float = AP_FLOOR,
) -> DetectorScores:
    """Time `method` at its operating threshold (median over the photos, after one untimed
    run), then score it with every box down to `ap_floor`."""
    if photos:
        method(photos[0].path, operating_threshold)
    seconds, kept = [], []
    for photo in photos:
        started = time.perf_counter()
        boxes, _ = method(photo.path, operating_threshold)
        seconds.append(time.perf_counter() - started)
        kept.append(len(boxes))
    results = [
        PhotoResult(*method(p.path, min(ap_floor, operating_threshold)), p.boxes) for p in photos
    ]
    return DetectorScores(
        name=name,
        recall50=recall(results, 0.5, operating_threshold),
        recall70=recall(results, 0.7, operating_threshold),
        ap50=average_precision(results, 0.5),
        recall50_floor=recall(results, 0.5),
        boxes_per_photo=float(np.mean(kept)) if kept else 0.0,
        ms_per_photo=1000 * float(np.median(seconds)) if seconds else 0.0,
        photos=len(photos),
        truth=sum(len(p.boxes) for p in photos),
        per_photo=results,
    )
