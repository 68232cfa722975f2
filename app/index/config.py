"""How a shard indexes its vectors (no FAISS here: settings read it without loading FAISS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

IndexKind = Literal["auto", "exact", "ivf"]
MIN_TRAIN = 1_000  # `ivf` kind: fewer vectors than this stay exact (k-means needs data)
CODECS = ("SQ8", "SQfp16", "SQ6", "SQ4", "Flat")  # and PQ<m>


@dataclass(frozen=True)
class IndexConfig:
    kind: IndexKind = "auto"
    threshold: int = 20_000  # auto: live vectors from which a shard gets an IVF index
    codec: str = "SQ8"  # FAISS codec of the IVF lists: SQ8, SQfp16, SQ6, SQ4, Flat, PQ<m>
    nlist: int = 0  # IVF lists; 0: about 4 * sqrt(vectors), a power of two
    nprobe: int = 16  # lists scanned per query
    delta_limit: int = 4096  # exact-searched vectors folded into the IVF index past this
    retrain_growth: float = 4.0  # retrain once live vectors reach this times the trained size

    def __post_init__(self) -> None:
        if self.codec not in CODECS and not (
            self.codec.startswith("PQ") and self.codec[2:].isdigit()
        ):
            raise ValueError(f"codec must be {', '.join(CODECS)} or PQ<m>, not {self.codec!r}")
        for name in ("threshold", "nprobe", "delta_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    def wants_ann(self, live: int) -> bool:
        if self.kind == "exact":
            return False
        return live >= (MIN_TRAIN if self.kind == "ivf" else max(self.threshold, MIN_TRAIN))

    def lists_for(self, n: int) -> int:
        if self.nlist:
            return self.nlist
        return int(min(65536, max(64, 2 ** round(np.log2(4 * np.sqrt(max(n, 1)))))))
