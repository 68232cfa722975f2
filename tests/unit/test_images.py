"""Upload decoding: every kind of bad input is refused with its 4xx code and message."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.api.errors import DECODE_REFUSALS
from app.encoder.decode import ImageDecodeError, decode_photo
from tests.image_factory import image_bytes, png_bomb, truncated_jpeg


def test_good_images_decode_to_rgb(grocery: Path) -> None:
    photo = next((grocery / "test/Fruit/Banana").glob("*.jpg")).read_bytes()
    decoded = decode_photo(photo, 40_000_000)
    assert decoded.image_format == "JPEG" and decoded.image.mode == "RGB"
    decoded = decode_photo(image_bytes("PNG"), 40_000_000)
    assert decoded.image_format == "PNG" and decoded.image.size == (64, 48)


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"", 400, "empty file"),
        (b"this is not an image", 400, "file is not a decodable image"),
        (truncated_jpeg(image_bytes("JPEG", (400, 300))), 400, "image is truncated or corrupt"),
        (png_bomb(), 422, "image has too many pixels"),
        (png_bomb(7000, 7000), 422, "image has too many pixels"),  # under PIL's limit, over ours
        (image_bytes("TIFF"), 415, "unsupported image format: TIFF"),
        (image_bytes("PNG", (4000, 1)), 422, "image aspect ratio is over 20:1"),
        (png_bomb(200_000, 1), 422, "image aspect ratio is over 20:1"),
    ],
    ids=["empty", "text", "truncated", "bomb", "over-limit", "tiff", "strip", "strip-bomb"],
)
def test_bad_uploads_are_refused(data: bytes, status: int, message: str) -> None:
    with pytest.raises(ImageDecodeError) as info:
        decode_photo(data, max_pixels=40_000_000)
    answered, text = DECODE_REFUSALS[info.value.reason]  # how the API words it
    assert (answered, text.format(format=info.value.image_format)) == (status, message)


def test_broken_exif_keeps_the_photo_unrotated(grocery: Path) -> None:
    photo = next((grocery / "test/Fruit/Banana").glob("*.jpg")).read_bytes()
    with Image.open(io.BytesIO(photo)) as source:
        buffer = io.BytesIO()
        # A fuzzed EXIF block on which Pillow's exif_transpose raises (found by fuzzing).
        exif = bytes.fromhex(
            "4578696600004d4d002a000000080002014e000200000007000000260112000300000001"
            "000600000000000043026d6572360000"
        )
        source.save(buffer, format="JPEG", exif=exif)
    decoded = decode_photo(buffer.getvalue(), 40_000_000)
    assert decoded.image_format == "JPEG" and decoded.image.size == source.size


def test_exif_orientation_is_applied() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.new("RGB", (80, 40), "blue").save(buffer, format="JPEG", exif=exif)
    decoded = decode_photo(buffer.getvalue(), 40_000_000)
    assert decoded.image.size == (40, 80) and (decoded.width, decoded.height) == (40, 80)


@pytest.mark.parametrize("factor", [1, 2])
def test_grey_decodes_the_luma_upright_at_the_same_scale(grocery: Path, factor: int) -> None:
    # Barcode reading decodes grey: a JPEG's luma alone, EXIF orientation applied as for RGB.
    with Image.open(next((grocery / "test/Fruit/Banana").glob("*.jpg"))) as source:
        buffer = io.BytesIO()
        exif = Image.Exif()
        exif[0x0112] = 6
        wide = source.convert("RGB").crop((0, 0, source.width, source.width * 3 // 4))
        wide.save(buffer, format="JPEG", quality=95, exif=exif)
    data = buffer.getvalue()
    rgb = decode_photo(data, 40_000_000, lambda w, h: factor)
    grey = decode_photo(data, 40_000_000, lambda w, h: factor, grey=True)
    assert grey.image.mode == "L" and grey.image.size == rgb.image.size
    assert (grey.width, grey.height) == (rgb.width, rgb.height)
    assert rgb.image.height > rgb.image.width  # stored wide, turned upright
    difference = np.abs(
        np.asarray(grey.image, np.int16) - np.asarray(rgb.image.convert("L"), np.int16)
    )
    assert difference.mean() < 1.5  # the same grey levels, up to libjpeg's rounding
    png = decode_photo(image_bytes("PNG"), 40_000_000, grey=True)
    assert png.image.mode == "L" and png.image.size == (64, 48)
