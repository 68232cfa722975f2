"""A venv holding the serving install only (`pip install .`, no extras): no PyTorch.

Built once per pyproject.toml under ~/.cache/retailklip-ci/serving-<digest> (pip's own cache
makes a rebuild quick); the code it runs is the checkout's, from its working directory, so only
the dependencies come from the venv. Older serving venvs are removed when a new one is built.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

CACHE = Path.home() / ".cache/retailklip-ci"
TORCH_FAMILY = ("torch", "torchvision", "open_clip", "timm")


def serving_venv() -> Path:
    """The venv's python; builds the venv if this pyproject.toml has none yet."""
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:16]
    venv = CACHE / f"serving-{digest}"
    python = venv / "bin/python"
    if (venv / ".complete").is_file():
        return python
    for old in CACHE.glob("serving-*"):
        shutil.rmtree(old, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip", "setuptools>=69"], check=True)
    # A copy of the checkout without its venv and data: `pip install .` from it, as a user would.
    source = venv / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(".git", ".venv", "data", "runs", "*.egg-info", "__pycache__"),
    )
    subprocess.run([*pip, str(source)], check=True)
    shutil.rmtree(source)
    (venv / ".complete").touch()
    return python


def torch_family_installed(python: Path) -> list[str]:
    code = (
        "import importlib.util; "
        f"print(','.join(m for m in {TORCH_FAMILY!r} if importlib.util.find_spec(m)))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]
