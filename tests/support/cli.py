"""`retailklip` commands of this checkout as subprocesses (`python -m app.cli`), for the tests
that check what a command does from outside: exit status, output, what it left in SQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from tests.support.paths import REPO


def retailklip(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run `retailklip ARGS` with this environment plus `env`; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
