"""Images for the drills and benchmarks: unique noise JPEGs, real shelf photos in place."""

from __future__ import annotations

import io
import random

from PIL import Image

from tests.support.paths import GROCERY


def noise_jpeg(rng: random.Random, side: int = 40) -> bytes:
    """A small JPEG whose bytes are (almost surely) unique: random pixels."""
    image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def grocery_photos(split: str = "test", limit: int = 64) -> list[bytes]:
    """Real shelf photos of the shared Grocery Store set, evenly spread, read in place."""
    paths = sorted((GROCERY / split).rglob("*.jpg"))
    if not paths:
        raise RuntimeError(f"no photos under {GROCERY / split} (set RETAILKLIP_GROCERY_DIR)")
    step = max(1, len(paths) // limit)
    return [p.read_bytes() for p in paths[::step][:limit]]
