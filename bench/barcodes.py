"""Barcode reading bench: generated codes pasted on real product photos; real photos as they are.

    .venv/bin/python -m bench.barcodes [--quick] [--per-condition 40] [--budget-ms 100] \
        [--work-side 1600] [--draw /tmp/barcodes]

Codes are made by zxing-cpp (random valid EAN-13, UPC-A, EAN-8, UPC-E), drawn at 8 px per
module with a random sub-pixel phase and box-filtered down to the module size asked for (as
a sensor averages), on a white label with bars as tall as GS1's nominal sizes, then turned,
warped in perspective, pasted on a Grocery Store photo (MIT) scaled to the photo size, blurred
and JPEG-compressed. Each condition changes one thing from the base (EAN-13, 2 px per module,
upright, 1 MP, JPEG 90); `mixed` draws every factor at random. Per condition: the read rate
(the pasted code's GTIN among the reads), wrong reads (any other code: must be 0), and the
same for one plain `zxingcpp.read_barcodes` call on the photo (all options at their defaults)
as the floor. 12 MP rows paste onto real 12 MP shelf photos (`cornershop-dev`, evaluation
only, never committed).

Every pasted photo is read twice, by the reader as it ships (its gate on: `gate.py`) and by
the same reader without the gate, so the read rate, wrong reads and CPU ms of both come from
one run; *gate refused*: photos the gate stopped (the first view read nothing and the gate
saw no run of bars), of which *lost* were read without it.

Then the Grocery Store test photos as they are (no code pasted): every read is listed for a
person to look at (`--draw` saves each photo with its boxes); the gate on photos without a
code (those photos as stored and as bench/barcode_latency.py sends them, 1 MP and 12 MP 4:3
decoded as the service decodes for reading, and the real shelf photos at full size and as
served): how many it lets through, and CPU ms with and without it; and the ms per photo at
0.3, 1, 3 and 12 MP with and without a code. Prints tables; writes nothing into the
repository.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.metadata import version
from pathlib import Path

import numpy as np
import zxingcpp
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from app.barcodes.formats import DEFAULT_FORMATS, CodeFormat, zxing_formats
from app.barcodes.gtin import check_digit, normalise_gtin, upce_to_upca
from app.barcodes.reader import (
    DEFAULT_BUDGET_MS,
    DEFAULT_WORK_SIDE,
    BarcodeReader,
    ReadCode,
    ReadStats,
)
from app.barcodes.views import Kind
from app.encoder.decode import decode_photo
from bench.barcode_latency import cropped_4_3, scaled
from bench.service_bench import DATA, queries
from tests.support.paths import GROCERY, SHARED

CORNERSHOP = SHARED / "data/cornershop-dev/photos"
# What the service decodes an upload at for reading (BARCODE_READ_SIDE's default).
READ_SIDE = 2000
# Bar heights in modules at GS1's nominal size (X = 0.33 mm): 22.85 mm for EAN-13 and UPC,
# 18.23 mm for EAN-8.
BAR_MODULES = {CodeFormat.EAN13: 69, CodeFormat.UPCA: 69, CodeFormat.UPCE: 69, CodeFormat.EAN8: 55}
MAKE = {
    CodeFormat.EAN13: zxingcpp.BarcodeFormat.EAN13,
    CodeFormat.UPCA: zxingcpp.BarcodeFormat.UPCA,
    CodeFormat.UPCE: zxingcpp.BarcodeFormat.UPCE,
    CodeFormat.EAN8: zxingcpp.BarcodeFormat.EAN8,
}
DRAWN_MODULE = 8


@dataclass(frozen=True)
class Condition:
    group: str
    name: str
    fmt: CodeFormat = CodeFormat.EAN13
    module: float = 2.0  # px per module in the photo as read
    angle: float | None = 0.0  # degrees; None: uniform in [0, 360)
    perspective: float = 0.0  # corners moved inwards by up to this share of the label's size
    blur: float = 0.0  # Gaussian radius (px)
    quality: int = 90  # JPEG
    megapixels: float = 1.0
    mixed: bool = False
    contrast: float = 1.0  # bars' darkness: 1 black, 0.5 grey 128 (on a white label)


BASE = Condition("base", "EAN-13, 2 px/module, 0 deg, 1 MP, JPEG 90")


def conditions() -> list[Condition]:
    rows = [BASE]
    rows += [
        replace(BASE, group="module", name=f"{m:g} px/module", module=m) for m in (1, 1.5, 3, 4)
    ]
    rows += [replace(BASE, group="rotation", name=f"{a} deg", angle=a) for a in range(15, 360, 15)]
    rows += [replace(BASE, group="rotation", name="any angle, 3 px/module", angle=None, module=3)]
    rows += [
        replace(
            BASE,
            group="perspective",
            name=f"corners in by up to {p:.0%}",
            perspective=p,
            angle=None,
        )
        for p in (0.1, 0.2, 0.3)
    ]
    rows += [
        replace(BASE, group="blur", name=f"Gaussian r={b:g} px", blur=b)
        for b in (0.5, 1.0, 1.5, 2.0)
    ]
    rows += [replace(BASE, group="blur", name="Gaussian r=1.5 px, 3 px/module", blur=1.5, module=3)]
    rows += [replace(BASE, group="jpeg", name=f"quality {q}", quality=q) for q in (50, 25, 10)]
    rows += [
        replace(
            BASE,
            group="contrast",
            name=f"bars at {c:.0%} contrast (grey {round(255 * (1 - c))}), any angle",
            contrast=c,
            angle=None,
        )
        for c in (0.5, 0.35)
    ]
    rows += [
        replace(BASE, group="format", name=f"{f.value}, any angle", fmt=f, angle=None)
        for f in (CodeFormat.EAN13, CodeFormat.UPCA, CodeFormat.EAN8, CodeFormat.UPCE)
    ]
    rows += [
        replace(
            BASE,
            group="size",
            name=f"0.3 MP, {m:g} px/module, any angle",
            megapixels=0.3,
            module=m,
            angle=None,
        )
        for m in (1.5, 2, 3)
    ]
    rows += [
        replace(
            BASE,
            group="size",
            name=f"12 MP shelf, {m:g} px/module, any angle",
            megapixels=12,
            module=m,
            angle=None,
        )
        for m in (2, 3, 4, 6)
    ]
    rows += [replace(BASE, group="mixed", name="everything at random (1 MP)", mixed=True)]
    rows += [
        replace(
            BASE,
            group="mixed",
            name="everything at random (12 MP shelf)",
            mixed=True,
            megapixels=12,
        )
    ]
    return rows


def random_code(fmt: CodeFormat, rng: random.Random) -> str:
    """Digits zxing-cpp is given to draw (check digit included)."""
    if fmt is CodeFormat.UPCE:
        while True:  # number system 0; zxing-cpp refuses non-canonical zero suppressions
            body = "0" + "".join(rng.choice("0123456789") for _ in range(6))
            # The check digit is the expanded UPC-A's: exactly one of the ten expands cleanly.
            digits = next(body + c for c in "0123456789" if is_upce(body + c))
            try:
                zxingcpp.create_barcode(digits, MAKE[fmt])
            except ValueError:
                continue
            return digits
    length = {CodeFormat.EAN13: 12, CodeFormat.UPCA: 11, CodeFormat.EAN8: 7}[fmt]
    first = rng.choice("123456789")  # an EAN-13 starting with 0 is a UPC-A
    body = first + "".join(rng.choice("0123456789") for _ in range(length - 1))
    return body + check_digit(body)


def is_upce(digits: str) -> bool:
    try:
        upce_to_upca(digits)
    except ValueError:
        return False
    return True


def expected_gtin(fmt: CodeFormat, digits: str) -> str:
    return normalise_gtin(upce_to_upca(digits) if fmt is CodeFormat.UPCE else digits)


def label(
    fmt: CodeFormat, digits: str, module: float, rng: random.Random, contrast: float = 1.0
) -> Image.Image:
    """The code on a white label at `module` px per module, with a random sub-pixel phase,
    its bars at `contrast` (1: black)."""
    drawn = Image.fromarray(
        np.asarray(zxingcpp.create_barcode(digits, MAKE[fmt]).to_image(scale=DRAWN_MODULE))
    )
    bars = BAR_MODULES[fmt] * DRAWN_MODULE
    drawn = drawn.resize((drawn.width, bars), Image.Resampling.NEAREST)
    pad = DRAWN_MODULE * 2
    phase_x, phase_y = rng.randrange(DRAWN_MODULE), rng.randrange(DRAWN_MODULE)
    canvas = Image.new("L", (drawn.width + 2 * pad, drawn.height + 2 * pad), 255)
    canvas.paste(drawn, (pad + phase_x, pad + phase_y))
    factor = module / DRAWN_MODULE
    size = (max(1, round(canvas.width * factor)), max(1, round(canvas.height * factor)))
    shrunk = canvas.resize(size, Image.Resampling.BOX)
    if contrast < 1:
        shrunk = shrunk.point(lambda v: round(255 - (255 - v) * contrast))
    return shrunk


def perspective_coeffs(
    src: list[tuple[float, float]], dst: list[tuple[float, float]]
) -> list[float]:
    """Pillow PERSPECTIVE data mapping output points `dst` to input points `src`."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return [float(c) for c in np.linalg.solve(np.array(rows), np.array(rhs))]


def warped(image: Image.Image, condition: Condition, rng: random.Random) -> Image.Image:
    """The label as RGBA (alpha: where it is), in perspective and turned."""
    rgba = Image.merge("RGBA", (image, image, image, Image.new("L", image.size, 255)))
    if condition.perspective > 0:
        w, h = rgba.size
        p = condition.perspective
        corners = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]
        moved = [
            (
                x + (1 if x == 0 else -1) * rng.uniform(0, p) * w,
                y + (1 if y == 0 else -1) * rng.uniform(0, p) * h,
            )
            for x, y in corners
        ]
        rgba = rgba.transform(
            (w, h),
            Image.Transform.PERSPECTIVE,
            perspective_coeffs(corners, moved),
            Image.Resampling.BILINEAR,
        )
    angle = rng.uniform(0, 360) if condition.angle is None else condition.angle
    return rgba.rotate(angle, expand=True, resample=Image.Resampling.BILINEAR)


def photo_at(path: Path, megapixels: float) -> Image.Image:
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    if megapixels >= 12:
        return image  # the real 12 MP photo as it is
    scale = math.sqrt(megapixels * 1e6 / (image.width * image.height))
    return image.resize(
        (round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC
    )


def finish(image: Image.Image, blur: float, quality: int) -> Image.Image:
    if blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def mixed(condition: Condition, rng: random.Random) -> Condition:
    fmt = rng.choices(list(MAKE), weights=(5, 2, 1, 1))[0]
    return replace(
        condition,
        fmt=fmt,
        module=rng.uniform(1.5, 4.0),
        angle=None,
        perspective=rng.uniform(0, 0.25),
        blur=rng.choice((0.0, 0.0, 0.5, 1.0)),
        quality=rng.choice((95, 75, 50, 30)),
    )


@dataclass(frozen=True)
class Sample:
    image: Image.Image
    fmt: CodeFormat
    digits: str
    gtin: str


def make_sample(condition: Condition, background: Path, rng: random.Random) -> Sample:
    if condition.mixed:
        condition = mixed(condition, rng)
    digits = random_code(condition.fmt, rng)
    photo = photo_at(background, condition.megapixels)
    drawn = label(condition.fmt, digits, condition.module, rng, condition.contrast)
    code = warped(drawn, condition, rng)
    if code.width >= photo.width or code.height >= photo.height:
        code.thumbnail((photo.width - 2, photo.height - 2))  # never at the sizes above; kept safe
    x = rng.randrange(0, photo.width - code.width + 1)
    y = rng.randrange(0, photo.height - code.height + 1)
    photo.paste(code, (x, y), code)
    image = finish(photo, condition.blur, condition.quality)
    return Sample(image, condition.fmt, digits, expected_gtin(condition.fmt, digits))


_PLAIN = zxing_formats(DEFAULT_FORMATS)


@dataclass(frozen=True)
class Outcome:
    gtins: list[str | None]  # one per code read (None: a code with no GTIN)
    texts: list[str]
    ms: float
    cpu_ms: float
    gate: bool | None = None  # the reader's gate: passed, refused, not asked


Read = Callable[[Image.Image], Outcome]


def with_reader(reader: BarcodeReader) -> Read:
    def read(image: Image.Image) -> Outcome:
        stats = ReadStats()
        codes = reader.read(image, stats)
        texts = [f"{c.format.value} {c.text}" for c in codes]
        return Outcome([c.gtin for c in codes], texts, stats.ms, stats.cpu_ms, stats.gate)

    return read


def zxing_alone(image: Image.Image) -> Outcome:
    """The floor: one zxing-cpp call with its defaults (13-digit texts for EAN-13/UPC)."""
    started, started_cpu = time.perf_counter(), time.thread_time()
    texts = [b.text for b in zxingcpp.read_barcodes(image, formats=_PLAIN)]
    ms = (time.perf_counter() - started) * 1000
    cpu_ms = (time.thread_time() - started_cpu) * 1000
    gtins: list[str | None] = []
    for text in texts:
        try:
            gtins.append(normalise_gtin(text))
        except ValueError:
            gtins.append(None)
    return Outcome(gtins, texts, ms, cpu_ms)


@dataclass
class Tally:
    n: int = 0
    read: int = 0
    wrong: int = 0
    ms: list[float] = field(default_factory=list)  # CPU ms
    refused: list[bool] = field(default_factory=list)  # per photo: the gate stopped the read

    def add(self, outcome: Outcome, gtin: str) -> list[str]:
        """Counts the outcome; returns the wrong reads' texts."""
        self.n += 1
        self.read += gtin in outcome.gtins
        self.ms.append(outcome.cpu_ms)
        self.refused.append(outcome.gate is False)
        wrong = [t for g, t in zip(outcome.gtins, outcome.texts, strict=True) if g != gtin]
        self.wrong += len(wrong)
        return wrong

    @property
    def rate(self) -> str:
        return pct(self.read, self.n)

    @property
    def p50(self) -> float:
        return statistics.median(self.ms) if self.ms else 0.0


def evaluate(
    condition: Condition,
    pool: list[Path],
    n: int,
    seed: int,
    reads: dict[str, Read],
    wrong_log: list[str],
) -> dict[str, Tally]:
    """Every read on the same `n` photos of `condition` (made one at a time: 12 MP photos
    are 36 MB each)."""
    rng = random.Random(f"{seed}:{condition.group}:{condition.name}")
    tallies = {name: Tally() for name in reads}
    lost = Tally()  # read without the gate, refused by it (when both are among `reads`)
    for _ in range(n):
        sample = make_sample(condition, rng.choice(pool), rng)
        outcomes = {name: read(sample.image) for name, read in reads.items()}
        for name, outcome in outcomes.items():
            for text in tallies[name].add(outcome, sample.gtin):
                pasted = f"{sample.fmt.value} {sample.digits}"
                wrong_log.append(f"{name}, {condition.name}: pasted {pasted}, read {text}")
        if "reader" in outcomes and "without gate" in outcomes:
            lost.n += 1
            lost.read += outcomes["reader"].gate is False and sample.gtin in (
                outcomes["without gate"].gtins
            )
    return {**tallies, "lost": lost}


def pct(a: int, b: int) -> str:
    return f"{100 * a / b:.0f}%" if b else "-"


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("| --- | --- |" + " ---: |" * (len(header) - 2))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def conditions_table(results: list[tuple[Condition, dict[str, Tally]]]) -> None:
    rows = []
    names = ("reader", "without gate", "zxing-cpp alone")
    total = {name: Tally() for name in names}
    total_refused = total_lost = 0
    for condition, t in results:
        r, u, z = (t[name] for name in names)
        refused, lost_here = sum(r.refused), t["lost"].read
        total_refused += refused
        total_lost += lost_here
        ours = [str(r.n), r.rate, str(r.wrong), f"{r.p50:.0f}", f"{refused} / {lost_here}"]
        ungated = [u.rate, str(u.wrong), f"{u.p50:.0f}"]
        rows.append([condition.group, condition.name, *ours, *ungated, z.rate, str(z.wrong)])
        for name in names:
            total[name].n += t[name].n
            total[name].read += t[name].read
            total[name].wrong += t[name].wrong
    r, u, z = (total[name] for name in names)
    gate = f"{total_refused} / {total_lost}"
    ours = [str(r.n), r.rate, str(r.wrong), "", gate]
    rows.append(["all", "", *ours, u.rate, str(u.wrong), "", z.rate, str(z.wrong)])
    header = ["group", "condition", "photos", "read", "wrong", "CPU ms p50"]
    header += ["gate refused / lost", "without gate: read", "wrong", "CPU ms p50"]
    table([*header, "zxing-cpp alone: read", "wrong"], rows)
    print(
        f"\nThe gate refused {total_refused} of {r.n} photos with a code "
        f"({100 * total_refused / max(r.n, 1):.1f}%: the first view read nothing and no run of "
        f"bars was found); {total_lost} of them were read without the gate "
        f"({100 * total_lost / max(r.n, 1):.2f}% of the photos). Read rate "
        f"{100 * r.read / max(r.n, 1):.1f}% with the gate, {100 * u.read / max(u.n, 1):.1f}% "
        f"without; wrong reads {r.wrong} and {u.wrong}."
    )


def variants_table(
    title: str, results: list[tuple[Condition, dict[str, Tally]]], names: list[str]
) -> None:
    print(f"\n{title}")
    rows = []
    for condition, t in results:
        rows.append([condition.group, condition.name] + [t[name].rate for name in names])
    reads = [sum(t[name].read for _, t in results) for name in names]
    n = sum(next(iter(t.values())).n for _, t in results)
    wrong = [sum(t[name].wrong for _, t in results) for name in names]
    rows.append(["all", f"{n} photos"] + [pct(r, n) for r in reads])
    rows.append(["wrong reads", ""] + [str(w) for w in wrong])
    table(["group", "condition", *names], rows)


def draw(image: Image.Image, codes: list[ReadCode], path: Path) -> None:
    drawn = image.copy()
    pen = ImageDraw.Draw(drawn)
    for c in codes:
        pen.rectangle(c.box, outline=(255, 0, 0), width=3)
        pen.text((c.box[0], max(0, c.box[1] - 12)), f"{c.format.value} {c.text}", fill=(255, 0, 0))
    drawn.save(path)


def bare_photos(reader: BarcodeReader, photos: list[Path], draw_dir: Path | None) -> None:
    found: list[tuple[Path, list[ReadCode]]] = []
    floor: list[tuple[Path, list[str]]] = []
    ms: list[float] = []
    passed = 0
    for path in tqdm(photos, desc="Grocery Store test photos as they are", leave=False):
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        stats = ReadStats()
        codes = reader.read(image, stats)
        ms.append(stats.cpu_ms)
        passed += stats.gate is not False
        if codes:
            found.append((path, codes))
            if draw_dir is not None:
                draw(image, codes, draw_dir / f"bare-{path.stem}.png")
        alone = zxing_alone(image)
        if alone.texts:
            floor.append((path, alone.texts))
    print(
        f"\nGrocery Store test photos as they are (no code pasted): {len(photos)} photos at their "
        f"size (348 px wide), {len(found)} with a read (CPU ms p50 {statistics.median(ms):.1f}; "
        f"the gate let {passed} through); zxing-cpp alone: {len(floor)} with a read"
    )
    for path, codes in found:
        where = ", ".join(f"{c.format.value} {c.text} at {c.box}" for c in codes)
        print(f"  {path.relative_to(GROCERY)}: {where}")
    for path, texts in floor:
        print(f"  zxing-cpp alone, {path.relative_to(GROCERY)}: {', '.join(texts)}")


def served(data: bytes) -> Image.Image:
    """The upload as the service decodes it for reading (app/runtime/code_reading.py)."""
    return decode_photo(data, 10**9, lambda w, h: max(w, h) // READ_SIDE).image


def without_code_sets(quick: bool, seed: int) -> dict[str, Callable[[], list[Image.Image]]]:
    """Photos without a code, by set: each a function making its photos (one set in memory at
    a time: the shelf photos are 36 MB each)."""
    every = [p for p, _ in queries(DATA, "test")]
    rng = random.Random(f"{seed}:without code")
    few = sorted(rng.sample(every, 40 if quick else 500), key=str)
    fewer = sorted(rng.sample(every, 10 if quick else 100), key=str)
    shelves = sorted(CORNERSHOP.glob("*.jpg"))[: 4 if quick else None]

    def stored() -> list[Image.Image]:
        return [served(p.read_bytes()) for p in few]

    def at(long_side: int, paths: list[Path]) -> Callable[[], list[Image.Image]]:
        return lambda: [served(scaled(cropped_4_3(p), long_side)) for p in paths]

    def shelf(full: bool) -> Callable[[], list[Image.Image]]:
        if full:
            return lambda: [photo_at(p, 12) for p in shelves]
        return lambda: [served(p.read_bytes()) for p in shelves]

    return {
        "Grocery Store test photos as stored (0.12-0.16 MP)": stored,
        "the same, 1 MP 4:3 (1155x866, JPEG 90)": at(1155, few),
        "the same, 12 MP 4:3 (4000x3000, JPEG 90) decoded at 1/2 (2000x1500)": at(4000, fewer),
        "cornershop shelf photos (12 MP) decoded at 1/2, as served": shelf(False),
        "cornershop shelf photos at full size (4032x3024)": shelf(True),
    }


def gate_table(reader: BarcodeReader, ungated: BarcodeReader, quick: bool, seed: int) -> None:
    """The gate on photos without a code: how many it lets through (and reads: none is right),
    CPU ms with and without it."""
    rows = []
    for name, make in without_code_sets(quick, seed).items():
        images = make()
        gated, plain = [ReadStats() for _ in images], [ReadStats() for _ in images]
        reads = 0
        for image, g, u in tqdm(list(zip(images, gated, plain, strict=True)), desc=name[:30]):
            reads += len(reader.read(image, g)) + len(ungated.read(image, u))
        passed = sum(g.gate is not False for g in gated)
        size = "x".join(str(side) for side in images[0].size)
        rows.append(
            [
                name,
                size,
                str(len(images)),
                f"{passed} ({100 * passed / len(images):.1f}%)",
                str(reads),
                *spread([g.cpu_ms for g in gated])[:2],
                *spread([u.cpu_ms for u in plain])[:2],
            ]
        )
        del images
    print(
        "\nThe gate on photos without a code (BarcodeReader.read on the decoded photo, budget "
        f"{reader.budget_ms:g} ms; CPU ms of the reading thread, load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    header = ["photos", "size read", "photos", "gate passed", "reads", "CPU p50", "CPU p90"]
    table([*header, "without gate: CPU p50", "CPU p90"], rows)


def timings(
    reader: BarcodeReader,
    ungated: BarcodeReader,
    pools: dict[float, list[Path]],
    n: int,
    seed: int,
) -> None:
    """ms per photo without a code and with an EAN-13 (2-3 px/module, any angle), per size;
    each photo read with the gate and without it, in turn."""
    rng = random.Random(f"{seed}:timing")
    rows = []
    for mp, pool in pools.items():
        for with_code in (False, True):
            stats: list[ReadStats] = []
            plain: list[ReadStats] = []
            what = "EAN-13" if with_code else "no code"
            for _ in tqdm(range(n), desc=f"timing {mp:g} MP, {what}", leave=False):
                background = rng.choice(pool)
                if with_code:
                    cond = replace(BASE, megapixels=mp, module=rng.choice((2, 3)), angle=None)
                    image = make_sample(cond, background, rng).image
                else:
                    image = photo_at(background, mp)
                stats.append(ReadStats())
                reader.read(image, stats[-1])
                plain.append(ReadStats())
                ungated.read(image, plain[-1])
            size = "x".join(str(side) for side in image.size)
            cpu = spread([s.cpu_ms for s in stats])
            wall = spread([s.ms for s in stats])
            views = statistics.mean(s.views_read for s in stats)
            skipped = statistics.mean(s.views_skipped for s in stats)
            passed = sum(s.gate is not False for s in stats)
            before = spread([s.cpu_ms for s in plain])[:2]
            done = [f"{views:.1f}", f"{skipped:.1f}", f"{passed}/{n}"]
            rows.append([f"{mp:g} MP ({size})", what, str(n), *cpu, *wall, *done, *before])
    print(
        f"\nms per photo: BarcodeReader.read on a decoded RGB photo, grey conversion included "
        f"(budget {reader.budget_ms:g} ms, work side {reader.work_side} px). CPU: this thread's "
        f"CPU time; wall: elapsed, with the load average at {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs"
    )
    header = ["photo", "code", "photos", "CPU p50", "CPU p90", "CPU max"]
    header += ["wall p50", "wall p90", "wall max", "views read", "views skipped", "gate passed"]
    table([*header, "without gate: CPU p50", "CPU p90"], rows)


def spread(values: list[float]) -> list[str]:
    """p50, p90 and max, formatted."""
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return [f"{statistics.median(ordered):.1f}", f"{p90:.1f}", f"{ordered[-1]:.1f}"]


# The conditions the view and budget tables are run on.
def view_conditions() -> list[Condition]:
    return [
        BASE,
        replace(BASE, group="module", name="1.5 px/module", module=1.5),
        replace(BASE, group="rotation", name="any angle", angle=None),
        replace(BASE, group="blur", name="Gaussian r=1 px", blur=1.0),
        replace(BASE, group="perspective", name="up to 20%", perspective=0.2, angle=None),
        replace(BASE, group="jpeg", name="quality 25", quality=25),
        replace(
            BASE,
            group="size",
            name="0.3 MP, 1.5 px/module, any angle",
            megapixels=0.3,
            module=1.5,
            angle=None,
        ),
        replace(BASE, group="mixed", name="everything at random (1 MP)", mixed=True),
    ]


def budget_conditions() -> list[Condition]:
    return [
        replace(
            BASE,
            group="size",
            name=f"12 MP shelf, {m} px/module, any angle",
            megapixels=12,
            module=m,
            angle=None,
        )
        for m in (2, 3, 4)
    ] + [
        replace(
            BASE,
            group="mixed",
            name="everything at random (12 MP shelf)",
            mixed=True,
            megapixels=12,
        ),
        replace(BASE, group="mixed", name="everything at random (1 MP)", mixed=True),
    ]


VIEW_SETS: dict[str, tuple[Kind, ...]] = {
    "upright": ("upright",),
    "+ threshold": ("upright", "threshold"),
    "+ 45 deg": ("upright", "threshold", "diagonal"),
    "+ half pixel (all)": ("upright", "threshold", "diagonal", "shifted"),
}
BUDGETS = (25.0, 50.0, 100.0, 200.0, 400.0)
UNLIMITED = 60_000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few photos per condition")
    parser.add_argument("--per-condition", type=int, default=40)
    parser.add_argument("--budget-ms", type=float, default=DEFAULT_BUDGET_MS)
    parser.add_argument("--work-side", type=int, default=DEFAULT_WORK_SIDE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--draw", type=Path, default=None, help="folder (outside the repository) for bare reads"
    )
    args = parser.parse_args(argv)
    n = 6 if args.quick else args.per_condition
    small_n = 4 if args.quick else args.per_condition // 2
    reader = BarcodeReader(budget_ms=args.budget_ms, work_side=args.work_side)
    if args.draw is not None:
        args.draw.mkdir(parents=True, exist_ok=True)
    grocery = sorted((GROCERY / "test/Packages").rglob("*.jpg")) + sorted(
        (GROCERY / "iconic-images-and-descriptions/Packages").rglob("*.jpg")
    )
    shelves = sorted(CORNERSHOP.glob("*.jpg"))

    def pool(condition: Condition) -> list[Path]:
        return shelves if condition.megapixels >= 12 else grocery

    started = time.perf_counter()
    wrong_log: list[str] = []
    print(
        f"zxing-cpp {version('zxing-cpp')}; reader: formats "
        f"{', '.join(sorted(f.value for f in reader.formats))}, budget {reader.budget_ms:g} ms, "
        f"work side {reader.work_side} px; seed {args.seed}; {n} photos per condition\n"
    )
    ungated = BarcodeReader(budget_ms=args.budget_ms, work_side=args.work_side, gate=False)
    main_reads = {
        "reader": with_reader(reader),
        "without gate": with_reader(ungated),
        "zxing-cpp alone": zxing_alone,
    }
    results = [
        (c, evaluate(c, pool(c), n, args.seed, main_reads, wrong_log))
        for c in tqdm(conditions(), desc="conditions")
    ]
    conditions_table(results)

    views = {
        name: with_reader(BarcodeReader(budget_ms=UNLIMITED, work_side=args.work_side, kinds=kinds))
        for name, kinds in VIEW_SETS.items()
    }
    results = [
        (c, evaluate(c, pool(c), small_n, args.seed + 1, views, wrong_log))
        for c in tqdm(view_conditions(), desc="views")
    ]
    variants_table(
        f"What each view adds (read rate, no time budget; {small_n} photos per condition)",
        results,
        list(views),
    )

    budgets = {
        f"{b:g} ms": with_reader(BarcodeReader(budget_ms=b, work_side=args.work_side))
        for b in BUDGETS
    }
    results = [
        (c, evaluate(c, pool(c), small_n, args.seed + 2, budgets, wrong_log))
        for c in tqdm(budget_conditions(), desc="budgets")
    ]
    variants_table(
        f"Read rate by time budget ({small_n} photos per condition)", results, list(budgets)
    )
    for line in wrong_log:
        print("  WRONG", line)

    every = sorted((GROCERY / "test").rglob("*.jpg"))
    bare = sorted(random.Random(args.seed).sample(every, 150)) if args.quick else every
    bare_photos(reader, bare, args.draw)
    gate_table(reader, ungated, args.quick, args.seed)
    pools = {0.3: grocery, 1.0: grocery, 3.0: shelves, 12.0: shelves}
    timings(reader, ungated, pools, 6 if args.quick else 30, args.seed)
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
