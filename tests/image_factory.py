"""Bytes of good and bad images for tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image


def jpeg(path: Path) -> tuple[str, bytes, str]:
    """A photo on disk as an httpx upload: (file name, bytes, content type)."""
    return (path.name, path.read_bytes(), "image/jpeg")


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def truncated_jpeg(source: bytes) -> bytes:
    return source[: len(source) // 2]


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A tiny PNG whose header claims a huge image (CRC fixed so the header is valid)."""
    data = bytearray(image_bytes("PNG", (8, 8)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A complete 16 x 16 JPEG (end marker and all) whose frame header claims `width` x
    `height`: libjpeg would fill the missing scan with grey and only warn."""
    data = bytearray(image_bytes("JPEG", (16, 16), "blue"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def zero_png(width: int, height: int) -> bytes:
    """A real, complete all-black PNG: a few hundred KB that decode to width x height x 4 bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
