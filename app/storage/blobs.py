"""Original bytes of reference images, content-addressed, behind a small interface.

The interface is what an S3-compatible store would implement too; the service only ever calls
these methods.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from app.storage.files import atomic_write


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore(Protocol):
    def put(self, data: bytes) -> str:
        """Store durably and return the key (idempotent: same bytes, same key)."""

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def keys_older_than(self, seconds: float) -> Iterator[str]:
        """Keys written more than `seconds` ago (for garbage collection)."""

    def delete(self, key: str) -> None: ...


class FileBlobStore:
    """Files under `root/ab/cd/<sha256>`; written before the SQL row that refers to them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"invalid blob key {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        key = sha256_hex(data)
        path = self._path(key)
        if not path.exists():
            atomic_write(path, data)
        return key

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys_older_than(self, seconds: float) -> Iterator[str]:
        cutoff = time.time() - seconds
        for path in self._files():
            if path.stat().st_mtime < cutoff:
                yield path.name

    def keys(self) -> Iterator[str]:
        """Every stored key (a backup's blobs, say)."""
        for path in self._files():
            yield path.name

    def _files(self) -> Iterator[Path]:
        for path in self.root.glob("??/??/*"):
            if not path.name.startswith("."):  # a write in progress (app/storage/files.py)
                yield path

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
