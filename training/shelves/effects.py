"""The camera: perspective and roll, then light, colour, blur, noise and JPEG.

The warp moves the owner map with the picture (nearest neighbour), so boxes are measured on
what the camera sees. Its four source corners lie inside the canvas, so no empty border is
ever pulled into view.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from training.shelves.fixtures import smooth_noise


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 H with H @ dst_point ~ src_point (what PIL's PERSPECTIVE transform wants)."""
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, _, vt = np.linalg.svd(np.asarray(rows, np.float64))
    h = vt[-1].reshape(3, 3)
    return h / h[2, 2]


def random_view(width: int, height: int, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A camera turned a little (yaw, pitch, roll): the farther side of the shelf looks smaller,
    so the output's edge there samples a longer stretch of the canvas. Corners are moved
    inwards only, then the quadrilateral is rolled and shrunk until it fits inside."""
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    inward = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float64)
    inset = rng.uniform(0, 0.03, size=(4, 2))
    yaw, pitch = rng.uniform(-1, 1, size=2) * strength
    inset[[0, 3] if yaw > 0 else [1, 2], 1] += abs(yaw)
    inset[[2, 3] if pitch > 0 else [0, 1], 0] += abs(pitch)
    src = corners + inset * inward * [width, height]
    roll = rng.uniform(-1, 1) * strength * 0.3
    centre = np.array([width / 2, height / 2])
    rot = np.array([[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]])
    src = (src - centre) @ rot.T
    fit = min(1.0, float(np.min(centre / np.maximum(np.abs(src), 1e-6))))
    return homography(src * fit + centre, corners)


def warp(rgb: np.ndarray, owner: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    coeffs = tuple((h.ravel() / h[2, 2])[:8])
    size = (rgb.shape[1], rgb.shape[0])
    picture = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).transform(
        size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR
    )
    ids = Image.fromarray(owner.astype(np.int32), "I").transform(
        size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.NEAREST
    )
    return np.asarray(picture, np.float32), np.asarray(ids, np.int32)


def source_pixels_per_output(h: np.ndarray, x: float, y: float) -> float:
    """Canvas pixels one output pixel covers near output point (x, y): |det| of the map's
    Jacobian there."""

    def f(px: float, py: float) -> np.ndarray:
        v = h @ np.array([px, py, 1.0])
        return v[:2] / v[2]

    jx, jy = f(x + 1, y) - f(x, y), f(x, y + 1) - f(x, y)
    return float(abs(jx[0] * jy[1] - jx[1] * jy[0]))


def camera(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light and sensor: returns uint8 RGB."""
    h, w = rgb.shape[:2]
    light = 1 + rng.uniform(0.1, 0.45) * smooth_noise(h, w, rng, rng.uniform(150, 600))
    if rng.random() < 0.5:  # vignetting
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) * 2
        light *= 1 - rng.uniform(0.1, 0.4) * r2
    gains = rng.uniform(0.88, 1.12, size=3) * rng.uniform(0.55, 1.25)
    out = rgb * light[..., None] * gains
    gamma = rng.uniform(0.75, 1.35)
    out = 255 * np.clip(out / 255, 0, 1) ** gamma
    picture = Image.fromarray(out.astype(np.uint8))
    r = rng.random()
    if r < 0.3:
        picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.6)))
    elif r < 0.4:  # hand shake
        k = 3 if rng.random() < 0.5 else 5  # PIL kernels are 3x3 or 5x5
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1 / k
        if rng.random() < 0.5:
            kernel = kernel.T
        picture = picture.filter(ImageFilter.Kernel((k, k), kernel.ravel().tolist(), 1))
    if rng.random() < 0.3:  # a cheaper camera, or a photo resized before upload
        f = rng.uniform(0.4, 0.8)
        small = picture.resize((max(8, int(w * f)), max(8, int(h * f))), Image.Resampling.BILINEAR)
        picture = small.resize((w, h), Image.Resampling.BILINEAR)
    pixels = np.asarray(picture, np.float32)
    sigma = rng.uniform(0, 8)
    pixels = pixels + rng.normal(0, sigma, size=pixels.shape).astype(np.float32)
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=int(rng.integers(35, 95)))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))
