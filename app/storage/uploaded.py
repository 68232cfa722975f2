"""What every accepted upload carries, from decoding to storage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UploadedImage:
    """An upload's bytes and what decoding learned about them; the inference layer adds
    tensors to it (`DecodedImage`), the catalogue embeddings (`NewImage`)."""

    data: bytes
    sha256: str
    image_format: str
    width: int
    height: int
