"""Figures as text: percentiles and Markdown tables (the drills' reports, bench/'s output)."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def table(headers: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (it reads as plain text too, and pastes into the README)."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
