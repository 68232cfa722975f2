"""JSON text from clients, parsed as RFC 8259 says: Python's `json` accepts NaN and Infinity,
which no other JSON reader does and no value here may hold."""

from __future__ import annotations

import json
from typing import Any


def loads_strict(raw: str) -> Any:
    """`json.loads` refusing NaN, Infinity and -Infinity; raises ValueError (a too-deep
    document's RecursionError included) for anything that is not JSON."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(raw, parse_constant=refuse)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
