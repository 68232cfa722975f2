"""Shard files on disk: one `VectorIndex` file per shard, named by the log position it holds,
and `manifest.json` naming the position every file contains. Written atomically (temp file,
fsync, rename); anything missing, unreadable or of another index type reads as "no files", and
the shards are then rebuilt from SQL."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from app.index.config import IndexConfig
from app.index.vector_index import VectorIndex
from app.storage.files import atomic_write

# Bumped when what a shard file holds changes meaning (v2: vector ids instead of image ids;
# v3: log positions instead of per-shard versions, VectorIndex files), so files written by an
# older release are never loaded as if they were current.
LAYOUT = "v3"
MANIFEST = "manifest.json"

log = logging.getLogger(__name__)


@dataclass
class Shard:
    index: VectorIndex
    version: int  # log position of this shard's last change; names its file
    dirty: bool = False  # changed in memory since last written to disk


class ShardFiles:
    """The files of one model's shards under `shard_dir/LAYOUT/<model>`."""

    def __init__(self, shard_dir: Path, model_id: str, dim: int, config: IndexConfig) -> None:
        self.directory = shard_dir / LAYOUT / re.sub(r"[^A-Za-z0-9._-]", "_", model_id)
        self.dim = dim
        self.config = config

    def path(self, shard_no: int, version: int) -> Path:
        return self.directory / f"shard-{shard_no:06d}-v{version}.faiss"  # FAISS inside (npz)

    def write_shard(self, shard_no: int, version: int, blob: bytes) -> None:
        """The shard's file at `version`; its older files go."""
        path = self.path(shard_no, version)
        atomic_write(path, memoryview(blob))
        for old in self.directory.glob(f"shard-{shard_no:06d}-v*.faiss"):
            if old != path:
                old.unlink(missing_ok=True)

    def write_manifest(self, position: int, shard_nos: list[int]) -> None:
        manifest = {"position": position, "shards": shard_nos, "dim": self.dim}
        atomic_write(self.directory / MANIFEST, json.dumps(manifest).encode())

    def load(self) -> tuple[int, dict[int, Shard]] | None:
        """The position and shards of the last persist; None if anything is missing or odd."""
        try:
            manifest = json.loads((self.directory / MANIFEST).read_text())
            position, shard_nos = int(manifest["position"]), [int(n) for n in manifest["shards"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        loaded: dict[int, Shard] = {}
        for shard_no in shard_nos:
            files = sorted(
                self.directory.glob(f"shard-{shard_no:06d}-v*.faiss"),
                key=lambda p: int(p.stem.rsplit("-v", 1)[1]),
            )
            shard = self._load_file(files[-1]) if files else None
            if shard is None:
                return None
            loaded[shard_no] = shard
        return position, loaded

    def _load_file(self, path: Path) -> Shard | None:
        try:
            index = VectorIndex.from_bytes(path.read_bytes(), self.config)
        except (OSError, ValueError):
            log.warning("shard file %s unreadable; rebuilding from SQL", path)
            return None
        if not index.compatible(self.config):
            log.info("shard file %s has another index type than configured; rebuilding", path)
            return None
        if index.d != self.dim:
            log.warning("shard file %s has dimension %d, not %d", path, index.d, self.dim)
            return None
        return Shard(index=index, version=int(path.stem.rsplit("-v", 1)[1]))
