"""`retailklip render-shelves --preview` writes a PNG grid."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.support.paths import GROCERY
from training.cli import main


def test_render_shelves_writes_a_preview_and_a_folder(tmp_path: Path) -> None:
    if not (GROCERY / "classes.csv").is_file():
        pytest.skip(f"Grocery Store set not at {GROCERY}")
    preview, out = tmp_path / "preview.png", tmp_path / "shelves"
    argv = ["render-shelves", "--grocery", str(GROCERY), "--preview", str(preview)]
    argv += ["--preview-count", "4", "--out", str(out), "--count", "2", "--long-side", "384"]
    argv += ["--photos", "40"]
    assert main(argv) == 0
    with Image.open(preview) as image:
        assert image.format == "PNG" and image.width == 4 * 384
    names = sorted(p.name for p in out.iterdir())
    assert names == ["000000.jpg", "000000.json", "000001.jpg", "000001.json", "render.json"]
