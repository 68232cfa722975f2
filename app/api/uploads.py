"""Reading the uploaded files of a request (the body is read here, in the event loop: the
multipart parser has spooled it already)."""

from __future__ import annotations

from fastapi import UploadFile

from app.api.errors import Invalid


async def read_all(files: list[UploadFile], field: str, limit: int) -> list[bytes]:
    if not files:
        raise Invalid(f"{field}: at least one image is required")
    if len(files) > limit:
        raise Invalid(f"{field}: at most {limit} images per request")
    return [await f.read() for f in files]
