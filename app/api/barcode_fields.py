"""Barcodes sent by clients: GTIN-8, -12, -13 or -14 with a valid check digit, stored and served
as GTIN-14 (zero-padded: the UPC-A 036000291452 and the EAN-13 0036000291452 are one product)."""

from __future__ import annotations

from app.api.errors import Invalid
from app.barcodes.gtin import GtinError, check_digit, normalise_gtin

MAX_BARCODES = 32  # per product, per request

REASONS = {
    "not_digits": "must be digits only",
    "length": "must be 8, 12, 13 or 14 digits",
}


def gtin_or_422(text: str, field: str) -> str:
    """The GTIN-14 of `text` (spaces and dashes between digits allowed); Invalid naming the
    field and what is wrong."""
    digits = text.strip().replace(" ", "").replace("-", "")
    try:
        return normalise_gtin(digits)
    except GtinError as exc:
        if exc.reason == "check_digit":
            expected = check_digit(digits[:-1])
            raise Invalid(f"{field}: check digit of {digits} must be {expected}") from exc
        raise Invalid(f"{field}: {REASONS.get(exc.reason, 'not a GTIN')}") from exc


def valid_barcodes(texts: list[str], field: str = "barcodes") -> list[str]:
    if len(texts) > MAX_BARCODES:
        raise Invalid(f"{field}: at most {MAX_BARCODES} per request")
    return sorted({gtin_or_422(text, f"{field}[{i}]") for i, text in enumerate(texts)})
