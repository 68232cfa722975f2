"""GTINs: check digits, normalisation to GTIN-14, and UPC-E expansion.

A GTIN is 8, 12, 13 or 14 digits, the last one a check digit (GS1 General Specifications
7.9.1: weights 3 and 1 alternating from the right, not counting the check digit). The same
item is one number whatever length it is printed at: the UPC-A 036000291452, the EAN-13
0036000291452 and the GTIN-14 00036000291452 are one product. So codes are kept normalised:
`normalise_gtin` left-pads with zeros to 14 digits, and that 14-digit string is what the
service stores, compares and serves.

UPC-E is not a GTIN of its own but a zero-suppressed UPC-A (GTIN-12): a photo's UPC-E
`01234565` is the product registered as `012345000065`, so it is expanded before it is
normalised (`upce_to_upca`).
"""

from __future__ import annotations

from typing import Literal

GTIN_LENGTHS = (8, 12, 13, 14)

GtinReason = Literal["not_digits", "length", "check_digit", "number_system"]


class GtinError(ValueError):
    """A text that is not a GTIN (or not a UPC-E), and why."""

    def __init__(self, text: str, reason: GtinReason) -> None:
        super().__init__(f"{reason}: {text!r}")
        self.text = text
        self.reason: GtinReason = reason


def _digits(text: str) -> bool:
    # str.isdigit alone accepts "²" and Arabic-Indic digits, which no scanner prints.
    return text.isascii() and text.isdigit()


def check_digit(body: str) -> str:
    """The GS1 check digit of `body` (a GTIN without its last digit)."""
    if not _digits(body):
        raise GtinError(body, "not_digits")
    # The digit next to the check digit weighs 3, the one before it 1, and so on.
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str(-total % 10)


def validate_gtin(text: str) -> None:
    """Raise `GtinError` unless `text` is a GTIN-8, -12, -13 or -14 with a valid check digit."""
    if not _digits(text):
        raise GtinError(text, "not_digits")
    if len(text) not in GTIN_LENGTHS:
        raise GtinError(text, "length")
    if check_digit(text[:-1]) != text[-1]:
        raise GtinError(text, "check_digit")


def is_gtin(text: str) -> bool:
    try:
        validate_gtin(text)
    except GtinError:
        return False
    return True


def normalise_gtin(text: str) -> str:
    """`text` as a GTIN-14 (zero-padded on the left); raises `GtinError` if it is no GTIN.

    The text must be digits only: a caller that accepts spaces or dashes strips them first.
    """
    validate_gtin(text)
    return text.zfill(14)


def upce_to_upca(code: str) -> str:
    """The 12-digit UPC-A that an 8-digit UPC-E stands for (number system 0 or 1).

    The sixth data digit says where the zeros were suppressed (GS1 General Specifications,
    UPC-E zero suppression); the check digit is the UPC-A's, so it is checked on the result.
    """
    if not _digits(code):
        raise GtinError(code, "not_digits")
    if len(code) != 8:
        raise GtinError(code, "length")
    system, d, check = code[0], code[1:7], code[7]
    if system not in "01":
        raise GtinError(code, "number_system")
    last = d[5]
    if last in "012":
        body = d[0:2] + last + "0000" + d[2:5]
    elif last == "3":
        body = d[0:3] + "00000" + d[3:5]
    elif last == "4":
        body = d[0:4] + "00000" + d[4]
    else:
        body = d[0:5] + "0000" + last
    upca = system + body + check
    if check_digit(upca[:-1]) != check:
        raise GtinError(code, "check_digit")
    return upca


def restricted_circulation(gtin14: str) -> bool:
    """Whether a normalised GTIN is a store-internal number: GTIN-13 prefixes 02, 04 and 20-29
    (UPC-A number systems 2 and 4 included) and GTIN-8s starting with 0 or 2. These are
    variable-measure or in-store items whose digits may carry a price or a weight, reused by
    every store, so they do not name one product the way a GTIN does."""
    if gtin14.startswith("000000"):  # a GTIN-8 (GTIN-12/13 prefixes 0000 0 are kept for them)
        return gtin14[6] in "02"
    gtin13 = gtin14[1:]
    return gtin14[0] == "0" and (gtin13[:2] in {"02", "04"} or gtin13[0] == "2")
