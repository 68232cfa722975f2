"""The detector's shell scripts in bench/ pass shellcheck (.ci/run installs it; a missing one
fails here rather than hiding the check)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.paths import REPO


@pytest.mark.parametrize("script", ["bench/gpu_detector.sh", "bench/detector_ablation.sh"])
def test_the_script_passes_shellcheck(script: str) -> None:
    assert shutil.which("shellcheck"), "shellcheck not installed (apt-get install shellcheck)"
    proc = subprocess.run(
        ["shellcheck", str(REPO / script)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout
