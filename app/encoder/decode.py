"""Upload bytes -> an upright RGB image, at the scale its use needs, within a memory budget.

A 12 MP phone photo is about 48 MB once decoded (Pillow keeps RGB as four bytes a pixel), and
the model looks at 224 pixels of it. So the caller says how far the image may be reduced
(`Reduction`: from the upright photo's full size to a factor of 1, 2, 4 or 8); a JPEG is then
decoded at that scale by libjpeg itself (`draft`: the DCT scaled while decoding, never the full
pixels), other formats are decoded whole and reduced at once. Decoding holds a `DecodeBudget`
for the pixels it materialises, so concurrent uploads cannot together decode more than the
budget: a PNG bomb under the pixel limit waits its turn rather than multiplying memory.

Every size and box the service shows refers to the upright photo at full size (`width`,
`height`), whatever scale it was decoded at.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageOps

# Formats a product photo realistically arrives in; anything else is refused (415).
# MPO is how Pillow names the multi-picture JPEGs many phones write; the first frame is used.
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF"})
# Resizing scales the shorter side to ~image size, so a 200000x1 strip would become gigapixels.
MAX_ASPECT_RATIO = 20
FACTORS = (8, 4, 2, 1)  # what libjpeg can scale by while decoding
ORIENTATION = 0x0112  # EXIF tag
SWAPS_SIDES = frozenset({5, 6, 7, 8})  # orientations that turn the photo by 90 degrees

# The photo's full (width, height) as stored, before EXIF orientation (a reduction must not
# care which side is which) -> the largest reduction factor the use can take.
Reduction = Callable[[int, int], int]


def full_size(width: int, height: int) -> int:
    return 1


DecodeReason = Literal[
    "empty", "not_an_image", "unsupported_format", "too_many_pixels", "aspect_ratio", "truncated"
]


class ImageDecodeError(ValueError):
    """Bytes that are not a usable image, and why (`image_format`: the refused format)."""

    def __init__(self, reason: DecodeReason, image_format: str | None = None) -> None:
        super().__init__(reason if image_format is None else f"{reason}: {image_format}")
        self.reason: DecodeReason = reason
        self.image_format = image_format


@dataclass(frozen=True)
class DecodedPhoto:
    image: Image.Image  # upright RGB (L when asked for grey), reduced by `factor`
    image_format: str  # JPEG, PNG, ...
    width: int  # the upright photo's full size: what boxes are given in
    height: int

    @property
    def scale(self) -> float:
        """Decoded pixels per full-size pixel (1, 1/2, 1/4 or 1/8, up to rounding)."""
        return self.image.width / self.width

    def region(self, box: tuple[int, int, int, int]) -> Image.Image:
        """A full-size pixel box of the photo, cut from the decoded image."""
        if self.image.size == (self.width, self.height):
            return self.image.crop(box)
        sx, sy = self.image.width / self.width, self.image.height / self.height
        x0, y0, x1, y1 = box
        return self.image.crop(
            (
                math.floor(x0 * sx),
                math.floor(y0 * sy),
                max(math.ceil(x1 * sx), math.floor(x0 * sx) + 1),
                max(math.ceil(y1 * sy), math.floor(y0 * sy) + 1),
            )
        )


class DecodeBudget:
    """Decoded pixels held at once across the process; a decode larger than the whole budget
    runs alone."""

    def __init__(self, max_pixels: int) -> None:
        self.capacity = max_pixels
        self._free = max_pixels
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        need = min(pixels, self.capacity)
        with self._changed:
            self._changed.wait_for(lambda: self._free >= need)
            self._free -= need
        try:
            yield
        finally:
            with self._changed:
                self._free += need
                self._changed.notify_all()


def _orientation(image: Image.Image) -> int:
    with contextlib.suppress(Exception):  # a broken EXIF block costs the rotation, not the photo
        return int(image.getexif().get(ORIENTATION, 1))
    return 1


def _factor(wanted: int) -> int:
    return next(f for f in FACTORS if f <= max(wanted, 1))


def _scan_too_short(data: bytes, width: int, height: int) -> bool:
    """A Huffman-coded JPEG spends at least one bit on every 8x8 block of its first component;
    fewer bytes than that cannot hold the pixels the header claims (libjpeg would fill the rest
    with grey and only warn)."""
    blocks = math.ceil(width / 8) * math.ceil(height / 8)
    return len(data) * 8 < blocks


def decode_photo(
    data: bytes,
    max_pixels: int,
    reduction: Reduction = full_size,
    budget: DecodeBudget | None = None,
    grey: bool = False,
) -> DecodedPhoto:
    """Decode upload bytes, refusing non-images, truncation and bombs (ImageDecodeError).
    `grey`: an upright L image instead of RGB (barcode reading): a JPEG is then decoded to its
    luma alone, libjpeg skipping the colour (half the time of an RGB decode)."""
    if not data:
        raise ImageDecodeError("empty")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_many_pixels") from exc
    except Exception as exc:  # PIL raises several types for unreadable bytes
        raise ImageDecodeError("not_an_image") from exc
    if image.format not in ALLOWED_FORMATS:
        raise ImageDecodeError("unsupported_format", str(image.format))
    # The header's size is checked before any pixel is decoded, so a bomb costs nothing.
    stored_w, stored_h = image.size
    if stored_w * stored_h > max_pixels:
        raise ImageDecodeError("too_many_pixels")
    if max(image.size) > MAX_ASPECT_RATIO * max(1, min(image.size)):
        raise ImageDecodeError("aspect_ratio")
    jpeg = image.format in ("JPEG", "MPO")
    if jpeg and _scan_too_short(data, stored_w, stored_h):
        raise ImageDecodeError("truncated")
    image_format = "JPEG" if jpeg else str(image.format)
    factor = _factor(reduction(stored_w, stored_h))
    mode = "L" if grey else "RGB"
    if jpeg and (factor > 1 or grey):
        image.draft(mode if grey else image.mode, (stored_w // factor, stored_h // factor))
    held = image.width * image.height
    with budget.hold(held) if budget is not None else contextlib.nullcontext():
        try:
            image.load()
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError("too_many_pixels") from exc
        except Exception as exc:
            raise ImageDecodeError("truncated") from exc
        # Read once the pixels are (PNG's reader loads them to find an eXIf chunk after them).
        orientation = _orientation(image)
        pixels: Image.Image = image
        if image.size == (stored_w, stored_h) and factor > 1:
            pixels = image.reduce(factor)  # formats decoded whole: drop the full pixels at once
        upright = pixels
        width, height = stored_w, stored_h
        if orientation != 1:
            try:
                upright = ImageOps.exif_transpose(pixels)
            except Exception:  # as above: keep the photo unrotated
                pass
            else:
                if orientation in SWAPS_SIDES:
                    width, height = stored_h, stored_w
        try:
            converted = upright.convert(mode)
        except Exception as exc:
            raise ImageDecodeError("truncated") from exc
    return DecodedPhoto(converted, image_format, width, height)


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """The whole photo at full size, upright RGB (training, evaluation, thumbnails)."""
    return decode_photo(data, max_pixels).image
