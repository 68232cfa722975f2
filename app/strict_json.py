"""JSON text from clients: the one rule every JSON-valued field (`metadata`, `filter`, `boxes`)
is held to, so that what the API accepts it can store in either database and serve back equal.

RFC 8259 JSON, narrowed to what I-JSON (RFC 7493) guarantees every reader handles the same,
plus what the databases need:

- numbers must be finite and fit a float64 (Python would read `1e400` as infinity, which no
  JSON writer may write back); integers must fit a signed 64-bit integer (SQLite's JSON);
  NaN and Infinity are not JSON at all;
- strings and object keys must be Unicode text: no lone surrogate (`"\\ud800"` cannot be
  written as UTF-8) and no NUL (PostgreSQL's jsonb refuses `\\u0000`);
- no key twice in one object (which one would count?);
- at most `MAX_DEPTH` levels of nesting and `MAX_CHARS` characters of text.

Anything else raises `JsonRefused`, whose message says what is wrong and where (`at a.b[2]`),
for the caller to prefix with the field's name.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32
MAX_CHARS = 65_536
_INT64 = 2**63


class JsonRefused(ValueError):
    """The text is not JSON (`syntax`), or not JSON this service accepts; the message says why."""

    def __init__(self, reason: str, syntax: bool = False) -> None:
        super().__init__(reason)
        self.syntax = syntax

    def worded(self, field: str, not_json: str) -> str:
        """The client's message: `not_json` (the field's shape) for text that is not JSON,
        else `<field>: <reason>`."""
        return not_json if self.syntax else f"{field}: {self}"


def _refuse_constant(name: str) -> None:
    raise JsonRefused(f"{name} is not JSON", syntax=True)


def _checked_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused(f"the number {text[:40]} does not fit a 64-bit float")
    return value


def _checked_int(text: str) -> int:
    if len(text) > 20:  # no need to parse a thousand digits to refuse them
        raise JsonRefused(f"the integer {text[:40]}... does not fit 64 bits")
    value = int(text)
    if not -_INT64 <= value < _INT64:
        raise JsonRefused(f"the integer {text} does not fit 64 bits")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise JsonRefused(f"the key {json.dumps(key)[:80]} appears twice in one object")
        found[key] = value
    return found


def _check_text(text: str, what: str, where: str) -> None:
    if "\x00" in text:
        raise JsonRefused(f"{what}{where} holds a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonRefused(f"{what}{where} holds a lone surrogate (not Unicode text)") from None


def _at(path: str) -> str:
    return f" at {path}" if path else ""


def _walk(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise JsonRefused(f"nested deeper than {MAX_DEPTH} levels{_at(path)}")
    if isinstance(value, str):
        _check_text(value, "a string", _at(path))
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, "a key", _at(path))
            _walk(item, f"{path}.{key}" if path else key, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, f"{path}[{i}]", depth + 1)


def loads_strict(raw: str) -> Any:
    """The value of a client's JSON text; raises JsonRefused (a ValueError) naming the problem."""
    if len(raw) > MAX_CHARS:
        raise JsonRefused(f"longer than {MAX_CHARS} characters")
    try:
        value = json.loads(
            raw,
            parse_constant=_refuse_constant,
            parse_float=_checked_float,
            parse_int=_checked_int,
            object_pairs_hook=_unique_keys,
        )
    except JsonRefused:
        raise
    except RecursionError:
        raise JsonRefused(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # json.JSONDecodeError, and int() past its digit limit
        raise JsonRefused("not valid JSON", syntax=True) from exc
    _walk(value, "", 1)
    return value


__all__ = ["MAX_CHARS", "MAX_DEPTH", "JsonRefused", "loads_strict"]
