"""Reading the Dockerfiles under docker/ (for the compose and image-check tests)."""

from __future__ import annotations

from pathlib import Path

from tests.support.paths import REPO

FLAVOURS = ("cpu", "cuda")
DOCKERFILES = {flavour: REPO / "docker" / f"Dockerfile.{flavour}" for flavour in FLAVOURS}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: continuations joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).strip().partition(" ")
        pending = ""
        out.append((word.upper(), rest.strip()))
    return out
