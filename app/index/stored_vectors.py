"""Vectors as SQL stores them (little-endian float16 rows) and as the index searches them
(float32 unit rows): the one conversion every replica applies, so all hold the same vectors."""

from __future__ import annotations

import faiss
import numpy as np


def _unit(vectors: np.ndarray) -> np.ndarray:
    # float16 rounding moves a unit vector's length by up to ~1e-3 of itself; scaling back to
    # length 1 keeps scores cosines (an image's own photo scores 1.0, not 1.0001). In place,
    # multithreaded: several times faster than numpy's norm on a million rows.
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    faiss.normalize_L2(vectors)
    return vectors


def decode_vectors(blobs: list[bytes], dim: int) -> np.ndarray:
    """float16 rows from SQL, as the float32 unit vectors the index searches."""
    if not blobs:
        return np.zeros((0, dim), np.float32)
    raw = np.frombuffer(b"".join(blobs), dtype="<f2").reshape(-1, dim)
    return _unit(raw.astype(np.float32))


def decode_stacked(raw: np.ndarray) -> np.ndarray:
    """float16 rows already stacked into one array (a streamed read), as unit float32 rows."""
    return _unit(raw.astype(np.float32))


def encode_vector(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f2").tobytes()


def as_stored(vectors: np.ndarray) -> np.ndarray:
    """What a vector becomes once written to SQL and read back: local writes index exactly
    this, so every replica holds the same vectors whether it applied a write itself or read it."""
    return _unit(np.asarray(vectors, dtype="<f2").astype(np.float32))
