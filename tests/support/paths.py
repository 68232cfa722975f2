"""Where the repository and the shared data are: `../shared` beside the checkout, or
RETAILKLIP_SHARED_DIR (RETAILKLIP_GROCERY_DIR overrides the Grocery Store set alone)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("RETAILKLIP_SHARED_DIR", REPO.parent / "shared"))
GROCERY = Path(os.environ.get("RETAILKLIP_GROCERY_DIR", SHARED / "data/grocery-store"))
GROZI = SHARED / "data/grozi120-dev"
