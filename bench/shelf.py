"""POST /shelf on real corner-shop photos, leave one photo out, through a live server.

The data: `../shared/data/cornershop-dev` (14 phone photos, 744 labelled product boxes; for
evaluation only: read in place, nothing derived from it is kept). Every box of every photo is
registered as a reference image of product `<label>..<photo>` (metadata `label`, `photo`), so a
query photo can be scoped to the other photos' references with `filter={"photo": [others]}`:
one registration pass, fourteen leave-one-out folds. For each photo:

- **with its own boxes**: the share of boxes named correctly (the top match's label), the
  facings count error (sum over labels of |counted - true|, over the true count), ms per photo;
- **alone** (the product detector finds the boxes; when the service has one): a true box counts
  when a found box overlaps it at IoU >= 0.5 and is named with its label; boxes found per photo;
- **planograms** from the photo's own annotation (its rows as `arrange` finds them from the true
  boxes, facings as labelled): the photo against its own plan (score), against the same plan
  with two neighbouring products swapped and one facing removed (do the statuses say exactly
  that?), and against the next photo's plan.

    .venv/bin/python -m bench.shelf [--photos 14] [--model M] [--no-detector]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from tqdm import tqdm

from app.encoder.loading import load_service_encoder
from app.encoder.preprocess import eval_pixels
from app.recognition.shelf_layout import arrange
from app.settings import Settings
from tests.support.paths import SHARED
from tests.support.reports import table
from tests.support.servers import LiveServer, settings_env

PHOTOS = SHARED / "data/cornershop-dev/photos"


@dataclass(frozen=True)
class Truth:
    box: tuple[int, int, int, int]
    label: str


def truths(xml: Path) -> list[Truth]:
    found = []
    for obj in ET.parse(xml).getroot().iter("object"):
        b = obj.find("bndbox")
        assert b is not None
        coords = tuple(int(float(b.findtext(k) or 0)) for k in ("xmin", "ymin", "xmax", "ymax"))
        found.append(Truth(coords, (obj.findtext("name") or "").strip()))  # type: ignore[arg-type]
    return found


def sku_of(label: str, photo: str | None) -> str:
    """`<label>..<photo>` (leave-one-out references), or the label alone (the planogram's)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", label)[:48]
    return safe if photo is None else f"{safe}..{photo}"


def label_of(sku: str | None) -> str | None:
    return None if sku is None else sku.rsplit("..", 1)[0]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def register(client: httpx.Client, photos: dict[str, Path], boxes: dict[str, list[Truth]]) -> None:
    """Every box twice: as `<label>..<photo>` in catalogue `loo` (metadata `photo`: the folds),
    and as `<label>` in catalogue `plan` (every photo's boxes: the planogram checks)."""
    crops: dict[tuple[str, str], list[bytes]] = {}
    for name, path in tqdm(photos.items(), desc="crop", unit="photo"):
        image = Image.open(path).convert("RGB")
        for truth in boxes[name]:
            buffer = io.BytesIO()
            image.crop(truth.box).save(buffer, format="JPEG", quality=92)
            crops.setdefault((truth.label, name), []).append(buffer.getvalue())
    products: dict[str, list[bytes]] = {}
    for (label, _), data in crops.items():
        products.setdefault(label, []).extend(data)
    jobs = [
        (sku_of(label, name), label, name, "loo", data) for (label, name), data in crops.items()
    ]
    jobs += [(sku_of(label, None), label, None, "plan", data) for label, data in products.items()]
    for sku, label, name, catalogue, data in tqdm(jobs, desc="register", unit="product"):
        for start in range(0, len(data), 32):
            files = [
                ("images", (f"{i}.jpg", d, "image/jpeg"))
                for i, d in enumerate(data[start : start + 32])
            ]
            if start == 0:
                answer = client.post(
                    "/products",
                    data={
                        "sku": sku,
                        "name": label,
                        "metadata": json.dumps({"label": label, "photo": name}),
                        "catalogues": catalogue,
                    },
                    files=files,
                )
            else:
                answer = client.post(f"/products/{sku}/images", files=files)
            answer.raise_for_status()


def shelf(client: httpx.Client, path: Path, **fields: Any) -> tuple[dict[str, Any], float]:
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    begin = time.perf_counter()
    answer = client.post("/shelf", data=data, files={"image": (path.name, path.read_bytes())})
    elapsed = time.perf_counter() - begin
    answer.raise_for_status()
    return answer.json(), 1000 * elapsed


class Floor:
    """What a shelf photo's boxes cost at the least, in this process: the photo shrunk to
    1024 px by the client, decoded, its boxes cropped, and the crops through the service's
    encoder at its CPU batch size."""

    def __init__(self, model: str) -> None:
        self.encoder = load_service_encoder(Settings(model=model, device="cpu").model_choice)
        self.batch = Settings().batching.size_for("cpu")

    def ms(self, path: Path, boxes: list[tuple[int, int, int, int]]) -> float:
        image = Image.open(path)
        image.thumbnail((1024, 1024))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=90)
        data = buffer.getvalue()
        scale = image.width / Image.open(path).width
        begin = time.perf_counter()
        small = Image.open(io.BytesIO(data)).convert("RGB")
        crops = [
            eval_pixels(small.crop(tuple(round(v * scale) for v in box)), self.encoder.preprocess)
            for box in boxes
        ]
        for start in range(0, len(crops), self.batch):
            self.encoder.embed_pixels(np.stack(crops[start : start + self.batch]))
        return 1000 * (time.perf_counter() - begin)


def plan_of(truth: list[Truth]) -> list[list[dict[str, Any]]]:
    """The photo's plan from its annotation: rows as `arrange` finds them from the true boxes,
    runs of one label merged into one entry with its facings."""
    layout = arrange([t.box for t in truth])
    plan: list[list[dict[str, Any]]] = []
    for row in layout.rows:
        entries: list[dict[str, Any]] = []
        for i in row.members:
            sku = sku_of(truth[i].label, None)
            if entries and entries[-1]["sku"] == sku:
                entries[-1]["facings"] += 1
            else:
                entries.append({"sku": sku, "facings": 1})
        plan.append(entries)
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=14)
    parser.add_argument("--model", default="retailklip-lite0-shelf")
    parser.add_argument("--no-detector", action="store_true")
    args = parser.parse_args(argv)
    photos = {p.stem: p for p in sorted(PHOTOS.glob("*.jpg"), key=lambda p: int(p.stem[1:]))}
    photos = dict(list(photos.items())[: args.photos])
    boxes = {name: truths(path.with_suffix(".xml")) for name, path in photos.items()}
    rows, plan_rows = [], []
    baseline = Floor(args.model)
    with tempfile.TemporaryDirectory(prefix="bench-shelf-") as tmp:
        settings = {
            "data_dir": Path(tmp) / "data",
            "model": args.model,
            "log_level": "warning",
            "detector": "off" if args.no_detector else "auto",
        }
        env = settings_env(settings)
        with LiveServer(env=env, log_path=Path(tmp) / "server.log") as server:
            server.start()
            with httpx.Client(base_url=server.url, timeout=600) as client:
                detector = client.get("/readyz").json().get("detector")
                register(client, photos, boxes)
                names = list(photos)
                for name, path in tqdm(photos.items(), desc="photos"):
                    truth = boxes[name]
                    scope = {
                        "catalogue": "loo",
                        "filter": {"photo": [n for n in names if n != name]},
                        "top_k": 1,
                    }
                    given, ms = shelf(client, path, boxes=[list(t.box) for t in truth], **scope)
                    named = [
                        label_of(r["matches"][0]["sku"] if r["matches"] else None)
                        for r in given["regions"]
                    ]
                    right = sum(n == t.label for n, t in zip(named, truth, strict=True))
                    known = {t.label for n in names if n != name for t in boxes[n]}
                    nameable = [t for t in truth if t.label in known]
                    right_known = sum(
                        n == t.label for n, t in zip(named, truth, strict=True) if t.label in known
                    )
                    floor = baseline.ms(path, [t.box for t in truth])
                    count_true, count_got = Counter(t.label for t in truth), Counter(named)
                    error = sum(abs(count_got[k] - count_true[k]) for k in count_true | count_got)
                    row = [
                        name,
                        len(truth),
                        f"{right / len(truth):.1%}",
                        f"{right_known / max(1, len(nameable)):.1%} of {len(nameable)}",
                        f"{error / len(truth):.1%}",
                        f"{ms:.0f}",
                        f"{ms / floor:.2f}x",
                    ]
                    if detector:
                        alone, ms_alone = shelf(client, path, **scope)
                        found = [
                            (
                                tuple(r["box"]),
                                label_of(r["matches"][0]["sku"]) if r["matches"] else None,
                            )
                            for r in alone["regions"]
                        ]
                        located = sum(any(iou(t.box, b) >= 0.5 for b, _ in found) for t in truth)
                        hit = sum(
                            any(iou(t.box, b) >= 0.5 and n == t.label for b, n in found)
                            for t in truth
                        )
                        row += [
                            len(found),
                            f"{located / len(truth):.1%}",
                            f"{hit / len(truth):.1%}",
                            f"{ms_alone:.0f}",
                        ]
                    rows.append(row)
                    nxt = names[(names.index(name) + 1) % len(names)]
                    plan_rows.append(check_plans(client, path, truth, boxes[nxt]))
    headers = [
        "photo",
        "boxes",
        "named right (given boxes)",
        "named right, labels on other photos",
        "facings count error",
        "ms",
        "ms / (shrunk decode + crops forward)",
    ]
    if rows and len(rows[0]) > 7:
        headers += ["boxes found", "recall IoU>=0.5", "found and named right", "ms (detector)"]
    print(table(headers, rows))
    print()
    print(
        table(
            [
                "photo",
                "own plan score",
                "swapped + removed: statuses as expected",
                "another photo's plan score",
            ],
            plan_rows,
        )
    )
    return 0


def check_plans(
    client: httpx.Client, path: Path, truth: list[Truth], other: list[Truth]
) -> list[Any]:
    """The photo, with its own boxes and the `plan` catalogue (every photo's boxes are its
    references: this checks the planogram, not recognition), against its own plan, the same
    plan with two neighbouring entries swapped and one entry removed, and another photo's."""
    given = {"boxes": [list(t.box) for t in truth], "catalogue": "plan", "top_k": 1}
    own = plan_of(truth)
    report, _ = shelf(client, path, planogram={"shelves": own}, **given)
    base = {
        (p["shelf"], p["position"]) for p in report["planogram"]["positions"] if p["status"] != "ok"
    }
    changed = [[dict(e) for e in entries] for entries in own]
    # Two neighbouring entries of equal facings swap places (each then reads wrong_product);
    # one entry of another shelf is taken out (its facings then stand unplanned).
    pair = next(
        (
            (s, i)
            for s, entries in enumerate(changed)
            for i in range(len(entries) - 1)
            if entries[i]["facings"] == entries[i + 1]["facings"]
        ),
        None,
    )
    verdict = "-"
    if pair is not None:
        shelf_no, i = pair
        entries = changed[shelf_no]
        entries[i], entries[i + 1] = entries[i + 1], entries[i]
        start = sum(e["facings"] for e in entries[:i])
        expected = {(shelf_no, start + k) for k in range(2 * entries[i]["facings"])}
        cut = next((c for c in range(len(changed)) if c != shelf_no and len(changed[c]) > 1), None)
        removed = None if cut is None else changed[cut].pop(0)
        answer, _ = shelf(client, path, planogram={"shelves": changed}, **given)
        check = answer["planogram"]
        now = {(p["shelf"], p["position"], p["status"]) for p in check["positions"]}
        wrong = {(s, p) for s, p, status in now if status == "wrong_product"}
        exact = wrong - base == expected - base and not any(st == "missing" for *_, st in now)
        gone = removed["sku"] if removed else None
        told = (
            gone is None
            or gone in check["unplanned"]
            or any(e["sku"] == gone for entries in changed for e in entries)
        )
        verdict = f"{'yes' if exact and told else 'no'} ({len(wrong - base)} wrong_product)"
    another, _ = shelf(client, path, planogram={"shelves": plan_of(other)}, **given)
    return [path.stem, report["planogram"]["score"], verdict, another["planogram"]["score"]]


if __name__ == "__main__":
    raise SystemExit(main())
