"""app/barcodes: GTIN check digits and normalisation, UPC-E expansion, and the reader on real
product photos with codes that zxing-cpp draws (speed is measured in bench/barcodes.py)."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zxingcpp
from PIL import Image, ImageFilter

from app.barcodes.confirm import confirmed
from app.barcodes.formats import DEFAULT_FORMATS, CodeFormat, parse_formats
from app.barcodes.gate import may_hold_code
from app.barcodes.gtin import (
    GtinError,
    check_digit,
    is_gtin,
    normalise_gtin,
    restricted_circulation,
    upce_to_upca,
    validate_gtin,
)
from app.barcodes.reader import BarcodeReader, ReadCode, ReadStats
from app.barcodes.views import apply, diagonal_lines
from tests.support.paths import GROCERY

PHOTO = GROCERY / "test/Packages/Juice/Bravo-Apple-Juice/Bravo-Apple-Juice_001.jpg"
PLAIN = GROCERY / "test/Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_001.jpg"

# --- GTINs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ("400638133393", "1"),  # EAN-13 4006381333931
        ("03600029145", "2"),  # UPC-A 036000291452
        ("9638507", "4"),  # EAN-8 96385074
        ("1001234567890", "2"),  # GTIN-14 10012345678902
        ("0000000", "0"),
    ],
)
def test_check_digit(body: str, check: str) -> None:
    assert check_digit(body) == check
    assert is_gtin(body + check)
    wrong = str((int(check) + 1) % 10)
    assert not is_gtin(body + wrong)


@pytest.mark.parametrize(
    ("text", "gtin14"),
    [
        ("4006381333931", "04006381333931"),
        ("036000291452", "00036000291452"),
        ("96385074", "00000096385074"),
        ("10012345678902", "10012345678902"),
    ],
)
def test_normalise_pads_every_length_to_gtin14(text: str, gtin14: str) -> None:
    assert normalise_gtin(text) == gtin14
    assert normalise_gtin(gtin14) == gtin14  # idempotent: stored codes normalise to themselves


def test_one_item_at_every_length_is_one_gtin() -> None:
    assert normalise_gtin("036000291452") == normalise_gtin("0036000291452")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("4006381333932", "check_digit"),
        ("96385075", "check_digit"),
        ("400638133393", "check_digit"),  # a 12-digit prefix is no UPC-A by luck
        ("40063813339", "length"),
        ("400638133393100", "length"),
        ("1234567", "length"),
        ("", "not_digits"),
        ("4006381 333931", "not_digits"),
        ("400638133393a", "not_digits"),
        ("٤٠٠٦٣٨١٣٣٣٩٣١", "not_digits"),  # Arabic-Indic digits pass str.isdigit()
        ("-4006381333931", "not_digits"),
    ],
)
def test_invalid_gtins_say_why(text: str, reason: str) -> None:
    with pytest.raises(GtinError) as caught:
        validate_gtin(text)
    assert (caught.value.text, caught.value.reason) == (text, reason)
    assert isinstance(caught.value, ValueError)
    assert not is_gtin(text)


@pytest.mark.parametrize(
    ("upce", "upca"),
    [
        ("01234565", "012345000065"),  # last digit 5-9: manufacturer d1-d5
        ("04252614", "042100005264"),  # last digit 0-2: manufacturer d1 d2 d6 0 0
        ("01234531", "012300000451"),  # 3: manufacturer d1-d3
        ("01234640", "012340000060"),  # 4: manufacturer d1-d4
        ("11234562", "112345000062"),  # number system 1
    ],
)
def test_upce_expands_to_the_upca_zxing_draws(upce: str, upca: str) -> None:
    assert upce_to_upca(upce) == upca
    assert is_gtin(upca)
    # zxing-cpp expands a UPC-E it draws to the same UPC-A (as a 13-digit EAN).
    drawn = zxingcpp.create_barcode(upce, zxingcpp.BarcodeFormat.UPCE)
    assert drawn.text == "0" + upca


@pytest.mark.parametrize(
    ("upce", "reason"),
    [
        ("01234566", "check_digit"),
        ("21234565", "number_system"),
        ("0123456", "length"),
        ("0123456a", "not_digits"),
    ],
)
def test_invalid_upce(upce: str, reason: str) -> None:
    with pytest.raises(GtinError) as caught:
        upce_to_upca(upce)
    assert caught.value.reason == reason


def _gtin(body: str) -> str:
    return normalise_gtin(body + check_digit(body))


def test_restricted_circulation_numbers() -> None:
    assert restricted_circulation(_gtin("200123456789"))  # in-store, GTIN-13 prefix 2x
    assert restricted_circulation(_gtin("20123456789"))  # UPC-A number system 2
    assert restricted_circulation(_gtin("40123456789"))  # UPC-A number system 4
    assert restricted_circulation(_gtin("0123456"))  # GTIN-8 starting with 0
    assert not restricted_circulation(_gtin("400638133393"))
    assert not restricted_circulation(_gtin("03600029145"))
    assert not restricted_circulation(_gtin("9638507"))
    assert not restricted_circulation(_gtin("1001234567890"))


def test_parse_formats() -> None:
    assert parse_formats(" EAN13, upca ,") == {CodeFormat.EAN13, CodeFormat.UPCA}
    assert parse_formats("qrcode,datamatrix,code128") == {
        CodeFormat.QR,
        CodeFormat.DATAMATRIX,
        CodeFormat.CODE128,
    }
    with pytest.raises(ValueError, match="ean-13"):
        parse_formats("ean13,ean-13")


# --- the reader --------------------------------------------------------------------------


def _photo(path: Path, long_side: int = 1000) -> Image.Image:
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    scale = long_side / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)))


def _paste(
    photo: Image.Image,
    digits: str,
    fmt: zxingcpp.BarcodeFormat,
    angle: float = 0.0,
    module: int = 3,
    at: tuple[int, int] = (250, 300),
    gs1: bool = False,
) -> tuple[Image.Image, tuple[int, int]]:
    """`photo` with the code on a white label, turned by `angle`, its top left at `at`; and
    the label's centre."""
    made = (
        zxingcpp.create_barcode(digits, fmt, gs1=True)
        if gs1
        else zxingcpp.create_barcode(digits, fmt)
    )
    drawn = Image.fromarray(np.asarray(made.to_image(scale=module)))
    drawn = drawn.resize((drawn.width, 60 * module), Image.Resampling.NEAREST)
    label = Image.new("L", (drawn.width + 4 * module, drawn.height + 4 * module), 255)
    label.paste(drawn, (2 * module, 2 * module))
    rgba = Image.merge("RGBA", (label, label, label, Image.new("L", label.size, 255)))
    rgba = rgba.rotate(angle, expand=True, resample=Image.Resampling.BILINEAR)
    out = photo.copy()
    out.paste(rgba, at, rgba)
    return out, (at[0] + rgba.width // 2, at[1] + rgba.height // 2)


@pytest.fixture(scope="module")
def reader() -> BarcodeReader:
    # What the reader finds, not how fast: a budget no busy machine exhausts.
    return BarcodeReader(budget_ms=5000)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return _photo(PHOTO)


def _inside(point: tuple[int, int], code: ReadCode) -> bool:
    x0, y0, x1, y1 = code.box
    return x0 <= point[0] <= x1 and y0 <= point[1] <= y1


@pytest.mark.parametrize("angle", [0, 30, 45, 90, 200])
def test_reads_an_ean13_on_a_real_photo_at_any_angle(
    reader: BarcodeReader, photo: Image.Image, angle: float
) -> None:
    image, centre = _paste(photo, "4006381333931", zxingcpp.BarcodeFormat.EAN13, angle)
    codes = reader.read(image)
    assert [(c.text, c.format, c.gtin) for c in codes] == [
        ("4006381333931", CodeFormat.EAN13, "04006381333931")
    ]
    assert _inside(centre, codes[0])


@pytest.mark.parametrize(
    ("digits", "fmt", "text", "read_as", "gtin"),
    [
        (
            "036000291452",
            zxingcpp.BarcodeFormat.UPCA,
            "036000291452",
            CodeFormat.UPCA,
            "00036000291452",
        ),
        ("96385074", zxingcpp.BarcodeFormat.EAN8, "96385074", CodeFormat.EAN8, "00000096385074"),
        ("01234565", zxingcpp.BarcodeFormat.UPCE, "01234565", CodeFormat.UPCE, "00012345000065"),
    ],
)
def test_reads_upca_ean8_and_upce_with_their_gtins(
    reader: BarcodeReader,
    photo: Image.Image,
    digits: str,
    fmt: zxingcpp.BarcodeFormat,
    text: str,
    read_as: CodeFormat,
    gtin: str,
) -> None:
    image, _ = _paste(photo, digits, fmt, angle=10)
    assert [(c.text, c.format, c.gtin) for c in reader.read(image)] == [(text, read_as, gtin)]


def test_box_is_in_the_given_images_pixels(reader: BarcodeReader) -> None:
    big = _photo(PHOTO, 3000)  # reduced for the first views: boxes must come back scaled
    image, centre = _paste(big, "4006381333931", zxingcpp.BarcodeFormat.EAN13, 20, 6, (1200, 1400))
    codes = reader.read(image)
    assert [c.text for c in codes] == ["4006381333931"]
    assert _inside(centre, codes[0])
    x0, y0, x1, y1 = codes[0].box
    assert 1200 <= x0 < x1 <= image.width and 1400 <= y0 < y1 <= image.height


def test_only_the_formats_asked_for(photo: Image.Image) -> None:
    image, _ = _paste(photo, "96385074", zxingcpp.BarcodeFormat.EAN8)
    assert BarcodeReader(formats={CodeFormat.EAN13, CodeFormat.UPCA}).read(image) == []
    qr, _ = _paste(photo, "https://example.com/p/1", zxingcpp.BarcodeFormat.QRCode, module=4)
    assert BarcodeReader().read(qr) == []
    codes = BarcodeReader(formats={CodeFormat.QR}, budget_ms=5000).read(qr)
    assert [(c.text, c.format, c.gtin) for c in codes] == [
        ("https://example.com/p/1", CodeFormat.QR, None)
    ]


def test_a_gs1_datamatrix_carries_its_gtin(photo: Image.Image) -> None:
    image, _ = _paste(
        photo, "(01)09506000134352", zxingcpp.BarcodeFormat.DataMatrix, module=5, gs1=True
    )
    codes = BarcodeReader(formats={CodeFormat.DATAMATRIX}, budget_ms=5000).read(image)
    assert [(c.format, c.gtin) for c in codes] == [(CodeFormat.DATAMATRIX, "09506000134352")]


def test_nothing_on_a_plain_product_photo_or_noise(reader: BarcodeReader) -> None:
    assert reader.read(_photo(PLAIN)) == []
    noise = np.random.default_rng(0).integers(0, 256, (900, 1200, 3), dtype=np.uint8)
    assert reader.read(Image.fromarray(noise)) == []
    stripes = np.zeros((600, 800), np.uint8)
    stripes[:, ::6] = 255  # bars without a code in them
    assert reader.read(Image.fromarray(stripes)) == []


def test_a_misread_or_a_piece_is_not_confirmed(reader: BarcodeReader, photo: Image.Image) -> None:
    image, _ = _paste(photo, "4006381333931", zxingcpp.BarcodeFormat.EAN13, 40)
    (code,) = reader.read(image)
    grey = np.asarray(image.convert("L"))
    assert confirmed(grey, code, DEFAULT_FORMATS) is not None
    misread = ReadCode("4006381333948", CodeFormat.EAN13, code.box, "04006381333948")
    assert confirmed(grey, misread, DEFAULT_FORMATS) is None
    x0, y0, x1, y1 = code.box  # a UPC-E "read" off the code's left half
    piece = ReadCode("01234565", CodeFormat.UPCE, (x0, y0, (x0 + x1) // 2, y1), "00012345000065")
    assert confirmed(grey, piece, DEFAULT_FORMATS) is None


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (1, 1)),
        Image.new("RGB", (0, 0)),
        Image.new("L", (20000, 3)),
        Image.new("L", (16, 8000), 255),
        Image.new("1", (300, 300)),
        Image.new("P", (300, 300)),
        Image.new("RGBA", (300, 300)),
        Image.new("CMYK", (300, 300)),
        Image.new("I;16", (300, 300)),
        Image.new("F", (300, 300)),
        Image.new("LA", (300, 300)),
    ],
    ids=lambda im: f"{im.mode}-{im.width}x{im.height}",
)
def test_never_raises(reader: BarcodeReader, image: Image.Image) -> None:
    assert reader.read(image) == []


def test_a_huge_photo_keeps_roughly_to_the_budget() -> None:
    # Noise has no bars: the gate would stop the read after one view (tested below).
    reader = BarcodeReader(budget_ms=50, gate=False)
    huge = Image.fromarray(np.random.default_rng(1).integers(0, 256, (6000, 8000), dtype=np.uint8))
    stats = ReadStats()
    started = time.perf_counter()
    assert reader.read(huge, stats) == []
    elapsed = (time.perf_counter() - started) * 1000
    assert stats.views_skipped > 0  # the full-resolution tiles did not fit
    # The first view and the reduction before it always run; the margin is for them and a
    # busy machine, not a speed claim (bench/barcodes.py measures speed).
    assert elapsed < 50 + 2000


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        BarcodeReader(formats=[])
    with pytest.raises(ValueError):
        BarcodeReader(budget_ms=0)
    with pytest.raises(ValueError):
        BarcodeReader(work_side=100)


def test_one_reader_on_many_threads(reader: BarcodeReader, photo: Image.Image) -> None:
    images = [
        _paste(photo, "4006381333931", zxingcpp.BarcodeFormat.EAN13, 0)[0],
        _paste(photo, "96385074", zxingcpp.BarcodeFormat.EAN8, 90)[0],
        _photo(PLAIN),
    ]
    expected = [[c.text for c in reader.read(im)] for im in images]
    assert expected == [["4006381333931"], ["96385074"], []]
    results: dict[int, list[str]] = {}

    def work(i: int) -> None:
        results[i] = [c.text for c in reader.read(images[i % 3])]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(6)] == expected * 2


@pytest.mark.parametrize("slope", [1, -1])
def test_diagonal_views_map_back_to_their_pixels(slope: int) -> None:
    pixels = np.arange(10 * 12, dtype=np.uint8).reshape(10, 12)  # every value once, none 255
    out, back = diagonal_lines(pixels, slope)
    assert out.shape[1] == 2 * pixels.shape[1]
    seen = set()
    for r in range(out.shape[0]):
        for u in range(out.shape[1]):
            value = int(out[r, u])
            if value == 255:
                continue  # outside the photo
            y, x = divmod(value, 12)
            px, py = apply(back, u, r)
            assert abs(px - x) <= 1 and abs(py - y) <= 1
            seen.add(value)
    assert len(seen) > 0.9 * pixels.size  # every other line pair: nearly every pixel is used


# --- the gate ----------------------------------------------------------------------------


def _hard_code(
    photo: Image.Image,
    module: float,
    angle: float,
    blur: float = 0.0,
    quality: int = 90,
    perspective: float = 0.0,
) -> Image.Image:
    """An EAN-13 as the bench draws its hard cases: drawn at 4 px per module and box-filtered
    to `module` (a fraction of a pixel is grey, as a sensor averages), turned, in perspective
    (the top edge narrowed by `perspective` of the width), blurred and JPEG-compressed."""
    drawn = Image.fromarray(
        np.asarray(
            zxingcpp.create_barcode("4006381333931", zxingcpp.BarcodeFormat.EAN13).to_image(4)
        )
    )
    drawn = drawn.resize((drawn.width, 69 * 4), Image.Resampling.NEAREST)
    label = Image.new("L", (drawn.width + 32, drawn.height + 32), 255)
    label.paste(drawn, (16, 16))
    label = label.resize(
        (round(label.width * module / 4), round(label.height * module / 4)), Image.Resampling.BOX
    )
    rgba = Image.merge("RGBA", (label, label, label, Image.new("L", label.size, 255)))
    if perspective:
        w, h = rgba.size
        inset = perspective * w
        # Pillow's QUAD: the source quadrilateral (ul, ll, lr, ur) mapped onto the output.
        quad = (-inset, 0.0, 0.0, float(h), float(w), float(h), w + inset, 0.0)
        rgba = rgba.transform((w, h), Image.Transform.QUAD, quad, Image.Resampling.BILINEAR)
    rgba = rgba.rotate(angle, expand=True, resample=Image.Resampling.BILINEAR)
    out = photo.copy()
    out.paste(rgba, ((out.width - rgba.width) // 3, (out.height - rgba.height) // 3), rgba)
    if blur:
        out = out.filter(ImageFilter.GaussianBlur(blur))
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return decoded.convert("RGB")


def _grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"))


@pytest.mark.parametrize(
    "path",
    [
        PLAIN,
        PHOTO,
        GROCERY / "test/Packages/Yoghurt/Arla-Natural-Yoghurt/Arla-Natural-Yoghurt_002.jpg",
    ],
    ids=lambda p: p.stem,
)
@pytest.mark.parametrize("long_side", [348, 1155, 2000])
def test_the_gate_refuses_real_photos_without_a_code(path: Path, long_side: int) -> None:
    photo = _photo(path, long_side)
    assert not may_hold_code(_grey(photo))
    stats = ReadStats()
    assert BarcodeReader().read(photo, stats) == []
    assert stats.gate is False and stats.views_read == 1  # the upright read, then the gate


@pytest.mark.parametrize(
    ("module", "angle", "blur", "quality", "perspective"),
    [
        (1.5, 45, 0.0, 90, 0.0),  # the diagonal views' case: no upright scan line reads it
        (2.0, 135, 1.0, 90, 0.0),  # blurred by half a module
        (2.0, 30, 0.0, 10, 0.0),  # JPEG quality 10
        (2.0, 75, 0.0, 90, 0.25),  # in perspective
        (1.5, 100, 0.5, 50, 0.1),  # a bit of everything
        (4.0, 225, 0.0, 90, 0.0),  # large: wide bars, few edges per window
    ],
)
def test_the_gate_passes_codes_at_the_hard_conditions(
    photo: Image.Image, module: float, angle: float, blur: float, quality: int, perspective: float
) -> None:
    image = _hard_code(photo, module, angle, blur, quality, perspective)
    assert may_hold_code(_grey(image))
    assert not may_hold_code(_grey(photo))  # the same photo without the code is refused


def test_the_gate_passes_a_small_code_in_a_photo_read_in_tiles(photo: Image.Image) -> None:
    # 3000 px: the work view is reduced by 2, and the tiles read codes of 1.5-2 px per module.
    big = _photo(PHOTO, 3000)
    image = _hard_code(big, 2.0, 60)
    assert may_hold_code(_grey(image), scale=2)
    assert not may_hold_code(_grey(big), scale=2)


def test_what_the_gate_lets_through_is_still_read(photo: Image.Image) -> None:
    # 45 degrees at 2 px per module: the upright read finds nothing, the diagonal views do.
    image = _hard_code(photo, 2.0, 45)
    stats = ReadStats()
    codes = BarcodeReader(budget_ms=5000).read(image, stats)
    assert [c.text for c in codes] == ["4006381333931"]
    assert stats.gate is True


def test_the_gate_is_not_asked_for_2d_codes(photo: Image.Image) -> None:
    assert BarcodeReader().gate and not BarcodeReader(gate=False).gate
    assert not BarcodeReader(formats={CodeFormat.QR, CodeFormat.EAN13}).gate  # no bars to see
    qr, _ = _paste(photo, "https://example.com/p/1", zxingcpp.BarcodeFormat.QRCode, module=4)
    stats = ReadStats()
    codes = BarcodeReader(formats={CodeFormat.QR}, budget_ms=5000).read(qr, stats)
    assert [c.text for c in codes] == ["https://example.com/p/1"] and stats.gate is None


def test_the_gate_passes_images_too_small_to_judge() -> None:
    assert may_hold_code(np.full((30, 400), 255, np.uint8))
