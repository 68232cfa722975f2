"""Vector ids: how a FAISS id names a reference image and one of its views.

A vector id is `image_id << VIEW_BITS | code`: code 0 is the image's own vector, codes 1-7 its
degraded views (app/encoder/views.py), so a hit maps back to its image without a lookup. This
module is the only place that knows the layout.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

VIEW_BITS = 3
MAX_VIEW_CODE = (1 << VIEW_BITS) - 1


def vector_id(image_id: int | np.ndarray, code: int | np.ndarray = 0) -> np.ndarray:
    """The FAISS id of an image's own vector (code 0) or of one of its degraded views."""
    return (np.asarray(image_id, dtype=np.int64) << VIEW_BITS) | np.asarray(code, dtype=np.int64)


def image_of(vector_ids: np.ndarray) -> np.ndarray:
    """Reference image id of each vector id (-1 stays -1: FAISS's "no result")."""
    ids = np.asarray(vector_ids, dtype=np.int64)
    return np.where(ids < 0, -1, ids >> VIEW_BITS)


def all_vector_ids(image_ids: Iterable[int]) -> np.ndarray:
    """Every id an image may own, views included: what a delete removes from the index."""
    images = np.fromiter(image_ids, dtype=np.int64)
    codes = np.arange(MAX_VIEW_CODE + 1, dtype=np.int64)
    return vector_id(images[:, None], codes[None, :]).ravel()


def allowed_bitmap(image_ids: np.ndarray) -> np.ndarray:
    """FAISS's IDSelectorBitmap tests bit (id & 7) of byte (id >> 3); with VIEW_BITS = 3, byte
    `image_id` set to 0xFF admits an image and every derived view of it."""
    assert VIEW_BITS == 3, "the bitmap layout relies on 8 view codes per image"
    bitmap = np.zeros(int(image_ids.max()) + 1, dtype=np.uint8)
    bitmap[image_ids] = 0xFF
    return bitmap
