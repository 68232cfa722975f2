"""bench/detector_ablation.sh, the renderer ablation: it refuses an unknown variant
before it renders anything, and a tiny run (2 photos, 2 steps, one boxed photo) goes through
render, train and the bench to a table with one row per variant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO, SHARED

SCRIPT = REPO / "bench/detector_ablation.sh"
CORNERSHOP = SHARED / "data/cornershop-dev/photos"


def test_an_unknown_variant_is_refused_before_any_work(tmp_path: Path) -> None:
    work = tmp_path / "work"
    proc = subprocess.run(
        [str(SCRIPT), str(work), "1", "1", "full", "no-shelves"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "unknown variant 'no-shelves'" in proc.stderr
    assert not work.exists()


def test_a_tiny_run_gives_one_row_per_variant(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for suffix in (".jpg", ".xml"):
        (photos / f"p1{suffix}").symlink_to(CORNERSHOP / f"p1{suffix}")
    work = tmp_path / "work"
    env = {
        **os.environ,
        "VENV": sys.prefix,  # the venv running the tests
        "CORNERSHOP": str(photos),
        "VAL_COUNT": "2",
        "THREADS": "1",
    }
    proc = subprocess.run(
        [str(SCRIPT), str(work), "2", "2", "no-glass"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((work / "ablation.json").read_text())
    assert [row["name"].split(" ")[0] for row in rows] == ["no-glass"]
    assert 0.0 <= rows[0]["recall50"] <= 1.0
    assert (work / "no-glass/run/state.pt").exists()  # the resumable state of the run
