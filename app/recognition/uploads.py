"""Uploaded photos, as the use cases take them: every upload of a request decodes, or the
request is refused naming the one that did not (`images[1]`), before anything is embedded,
searched or written."""

from __future__ import annotations

from app.encoder.decode import ImageDecodeError


class UploadRejected(ValueError):
    """Upload `position` of the request field `field` (None: the field holds one photo) is not
    a usable image, for `error.reason`."""

    def __init__(self, field: str, position: int | None, error: ImageDecodeError) -> None:
        super().__init__(field, position, error.reason)
        self.field = field
        self.position = position
        self.error = error

    @property
    def label(self) -> str:
        """How the client named the upload: `image`, `images[1]`."""
        return self.field if self.position is None else f"{self.field}[{self.position}]"


def first_rejected(field: str, results: list[object], indexed: bool = True) -> None:
    """Raise for the first failed upload among `asyncio.gather(..., return_exceptions=True)`
    results: UploadRejected for one that did not decode, the error itself for anything else."""
    for position, result in enumerate(results):
        if isinstance(result, ImageDecodeError):
            raise UploadRejected(field, position if indexed else None, result)
        if isinstance(result, BaseException):
            raise result
