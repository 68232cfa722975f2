"""Where the repository and the shared data set are (RETAILKLIP_GROCERY_DIR overrides)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GROCERY = Path(os.environ.get("RETAILKLIP_GROCERY_DIR", REPO.parent / "shared/data/grocery-store"))
