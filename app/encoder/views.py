"""Degraded views of a reference image: extra vectors that look like shelf photos.

A catalogue shot is sharp, well lit and large; a shelf photo of the same product is small, blurred,
dark or re-compressed. Storing a few degraded copies of every reference as extra vectors moves the
gallery towards the queries. The views are deterministic, so `retailklip reindex` regenerates the
same vectors, and each has a fixed code (1-7) that becomes part of its vector id
(app/index/vector_ids.py).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

from PIL import Image, ImageEnhance, ImageFilter

# Codes 1-7: a vector id keeps three bits for the view (code 0 is the image itself).
MAX_VIEW_CODE = 7


def _thumbnail(longer_side: int) -> Callable[[Image.Image], Image.Image]:
    def view(image: Image.Image) -> Image.Image:
        w, h = image.size
        scale = longer_side / max(w, h)
        if scale >= 1:
            return image
        return image.resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR
        )

    return view


def _blur(image: Image.Image) -> Image.Image:
    # Relative to the image, so a 60 px and an 800 px catalogue shot are blurred alike.
    return image.filter(ImageFilter.GaussianBlur(radius=max(1.0, max(image.size) / 100)))


def _jpeg(quality: int) -> Callable[[Image.Image], Image.Image]:
    def view(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        return Image.open(buffer).convert("RGB")

    return view


def _dark(image: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(0.55)


# name -> (code, function). Codes are stored in vector ids: never renumber, only add.
VIEWS: dict[str, tuple[int, Callable[[Image.Image], Image.Image]]] = {
    "thumb48": (1, _thumbnail(48)),
    "thumb80": (2, _thumbnail(80)),
    "blur": (3, _blur),
    "jpeg25": (4, _jpeg(25)),
    "dark": (5, _dark),
}


def parse_views(value: str | Iterable[str]) -> tuple[str, ...]:
    """`thumb48,blur` / a list -> validated names in a canonical order; `none` or empty -> ()."""
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    names = [n for n in names if n and n != "none"]
    unknown = sorted(set(names) - set(VIEWS))
    if unknown:
        raise ValueError(f"unknown reference view(s) {unknown}: choose from {sorted(VIEWS)}")
    return tuple(sorted(set(names), key=lambda n: VIEWS[n][0]))


def view_code(name: str) -> int:
    return VIEWS[name][0]


def degraded_views(image: Image.Image, names: Iterable[str]) -> list[Image.Image]:
    return [VIEWS[name][1](image) for name in names]


def served_views(setting: str, recommended: tuple[str, ...]) -> tuple[str, ...]:
    """RETAILKLIP_REFERENCE_VIEWS resolved: `auto` takes what the model's checkpoint
    recommends (`recommended`), otherwise the named views (`none`: no views)."""
    return recommended if setting == "auto" else parse_views(setting)
