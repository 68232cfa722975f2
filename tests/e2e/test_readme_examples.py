"""The README's example sessions, run with curl against a real server (the shipped model, a
fresh data directory each), and their answers compared with the ones the README prints: an
example cannot go stale. Timestamps are compared by shape, scores to 1e-4 (the last printed
digit may differ between CPUs); everything else exactly.

`RETAILKLIP_README_WRITE=1` rewrites the README's answers from this run instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.barcode_photos import photo_with_code
from tests.support.paths import GROCERY, REPO, SHARED
from tests.support.servers import LiveServer, settings_env

README = REPO / "README.md"
URL = "http://127.0.0.1:8000"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@dataclass
class Session:
    commands: list[str]  # shell commands, one per printed answer
    answers: list[list[str]]  # each command's printed output lines
    spans: list[tuple[int, int]]  # where each answer stands in the README's lines


def _first_session(lines: list[str]) -> Session:
    """The `sh` block under "The API by example" and the `json` block of its answers."""
    start = lines.index("## The API by example")
    sh = lines.index("```sh", start)
    end = lines.index("```", sh + 1)
    setup, commands, current = [], [], ""
    for line in lines[sh + 1 : end]:
        if line.startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            (commands if current.startswith("curl") else setup).append(current.strip())
            current = ""
    js = lines.index("```json", end)
    close = lines.index("```", js + 1)
    answers = [[line] for line in lines[js + 1 : close]]
    spans = [(js + 1 + i, js + 2 + i) for i in range(len(answers))]
    return Session([" && ".join([*setup, c]) for c in commands], answers, spans)


def _dollar_session(lines: list[str], marker: str) -> Session:
    """A block of `$ command` lines, each followed by what it printed."""
    at = next(i for i, line in enumerate(lines) if line.startswith("$ ") and marker in line)
    start = max(i for i in range(at) if lines[i].startswith("```"))
    end = lines.index("```", at)
    commands, answers, spans = [], [], []
    for i in range(start + 1, end):
        if lines[i].startswith("$ "):
            commands.append(lines[i][2:])
            j = i + 1
            while j < end and not lines[j].startswith("$ "):
                j += 1
            answers.append([line for line in lines[i + 1 : j] if line])
            spans.append((i + 1, i + 1 + len(answers[-1])))
    return Session(commands, answers, spans)


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, str) and STAMP.match(value):
        return "<timestamp>"
    if isinstance(value, float):
        return round(value, 4)
    return value


def _same(printed: list[str], got: list[str]) -> bool:
    if len(printed) != len(got):
        return False
    for a, b in zip(printed, got, strict=True):
        try:
            left, right = json.loads(a), json.loads(b)
        except json.JSONDecodeError:
            if a != b:
                return False
            continue
        if _normal(left) != _normal(right) and not _close(left, right):
            return False
    return True


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-4
    if isinstance(a, str) and isinstance(b, str) and STAMP.match(a) and STAMP.match(b):
        return True
    return bool(a == b)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """README command 1's service: defaults (the shipped model, SQLite) in a fresh directory."""
    settings = {"data_dir": tmp_path / "data", "log_level": "warning"}
    with LiveServer(env=settings_env(settings), log_path=tmp_path / "server.log") as live:
        live.start()
        yield live


def run(session: Session, server: LiveServer, workdir: Path) -> list[list[str]]:
    two = workdir / "two-products.jpg"
    if not two.exists():
        left = Image.open(
            GROCERY / "test/Packages/Juice/Tropicana-Apple-Juice/Tropicana-Apple-Juice_001.jpg"
        ).convert("RGB")
        right = Image.open(GROCERY / "test/Fruit/Banana/Banana_001.jpg").convert("RGB")
        canvas = Image.new("RGB", (696, 348))
        canvas.paste(left.resize((348, 348)), (0, 0))
        canvas.paste(right.resize((348, 348)), (348, 0))
        canvas.save(two, quality=95)
    photos = GROCERY / "test"
    for name, photo, code, fmt in [
        (
            "coded-milk.jpg",
            "Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_001.jpg",
            "7310865004703",
            "ean13",
        ),
        ("new-code.jpg", "Fruit/Banana/Banana_001.jpg", "96385074", "ean8"),
    ]:
        if not (workdir / name).exists():
            coded, _ = photo_with_code(photos / photo, code, fmt)
            (workdir / name).write_bytes(coded)
    outputs = []
    for command in session.commands:
        command = command.replace(URL, server.url).replace("../shared", str(SHARED))
        done = subprocess.run(
            ["bash", "-c", command], cwd=workdir, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (command, done.stderr)
        outputs.append([line.rstrip("\r") for line in done.stdout.splitlines() if line.strip()])
    return outputs


SESSIONS = {
    "first": lambda lines: _first_session(lines),
    "catalogues": lambda lines: _dollar_session(lines, "sku=oatly-oat-milk"),
    "barcodes": lambda lines: _dollar_session(lines, "barcodes=7310865004703"),
}


@pytest.mark.parametrize("name", list(SESSIONS))
def test_the_readme_prints_what_the_service_answers(
    name: str, server: LiveServer, tmp_path: Path
) -> None:
    lines = README.read_text().splitlines()
    session = SESSIONS[name](lines)
    assert session.commands, f"no {name} session found in the README"
    got = run(session, server, tmp_path)
    if os.environ.get("RETAILKLIP_README_WRITE") == "1":
        for (begin, end), answer in reversed(list(zip(session.spans, got, strict=True))):
            lines[begin:end] = answer
        README.write_text("\n".join(lines) + "\n")
        return
    stale = [
        (command, printed, answer)
        for command, printed, answer in zip(session.commands, session.answers, got, strict=True)
        if not _same(printed, answer)
    ]
    assert not stale, "README answers are stale (RETAILKLIP_README_WRITE=1 rewrites them):\n" + (
        "\n".join(f"$ {c}\n  printed: {p}\n  answers: {a}" for c, p, a in stale)
    )
