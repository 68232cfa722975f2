"""bench/gpu_detector.sh, the detector's one-go GPU run: it stops at once
with exit code 2 where no GPU answers (a stand-in `nvidia-smi` that fails, first on PATH)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.paths import REPO

SCRIPT = REPO / "bench/gpu_detector.sh"


def test_without_a_gpu_it_stops_at_once_and_says_why(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nexit 9\n")
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    work = tmp_path / "work"
    proc = subprocess.run(
        [str(SCRIPT), str(work)], capture_output=True, text=True, env=env, check=False, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "finds no GPU" in proc.stderr
    assert not work.exists()  # nothing rendered, nothing trained
