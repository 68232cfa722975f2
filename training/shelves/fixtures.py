"""Everything on a shelf photo that is not a product: walls, shelf boards, price rails and tags,
fridge frames, glass, reflections, glare and signs. All of it occludes or sits behind products,
and none of it is boxed, so the detector learns what a product is not.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from training.shelves.canvas import Canvas
from training.shelves.sources import SourceBank, Sprite, random_patch
from training.shelves.textures import font, random_colour, resize


def smooth_noise(h: int, w: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Low-frequency noise in [-1, 1] (gaussian-blurred white noise on a coarse grid)."""
    gh, gw = max(2, int(h / scale)), max(2, int(w / scale))
    coarse = ndimage.gaussian_filter(rng.standard_normal((gh, gw)).astype(np.float32), 1.0)
    coarse /= max(1e-6, float(np.abs(coarse).max()))
    return np.asarray(
        Image.fromarray(coarse).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32
    )


def wall(canvas: Canvas, bank: SourceBank, rng: np.random.Generator, dark: bool) -> None:
    h, w = canvas.height, canvas.width
    if not dark and bank.produce and rng.random() < 0.15:  # the store behind, out of focus
        patch = resize(
            random_patch(bank.produce[int(rng.integers(len(bank.produce)))], rng), (w, h)
        )
        blurred = Image.fromarray(patch).filter(ImageFilter.GaussianBlur(rng.uniform(3, 12)))
        canvas.fill(np.asarray(blurred, np.float32) * rng.uniform(0.4, 0.9))
        return
    # Shop fittings are mostly grey, white, black or wood; now and then a brand colour.
    base = np.array(random_colour(rng, vivid=rng.random() < 0.15), np.float32)
    if rng.random() < 0.25:
        base = np.array([rng.uniform(120, 200), rng.uniform(80, 140), rng.uniform(40, 90)])
    if dark:
        base *= rng.uniform(0.05, 0.35)
    texture = smooth_noise(h, w, rng, rng.uniform(20, 200))[..., None]
    canvas.fill(np.clip(base * (1 + 0.25 * texture), 0, 255))
    if rng.random() < 0.4:  # pegboard or back-panel holes
        step = int(rng.integers(10, 30))
        canvas.rgb[step // 2 :: step, step // 2 :: step] *= 0.4


def board(canvas: Canvas, y: int, thickness: int, rng: np.random.Generator, wire: bool) -> None:
    """A shelf board at y (the products' floor) with its front rail, as an occluder."""
    w = canvas.width
    if wire:  # fridge wire shelf: a few thin bars
        colour = np.array(random_colour(rng, vivid=False), np.float32)
        for k in range(int(rng.integers(1, 4))):
            yy = y + k * max(2, thickness // 3)
            bar = max(1, thickness // 6)
            canvas.paint((0, yy, w, yy + bar), colour, np.ones((bar, w), np.float32))
        return
    colour = np.array(random_colour(rng, vivid=rng.random() < 0.25), np.float32)
    shade = np.linspace(1.1, 0.7, thickness, dtype=np.float32)[:, None, None]
    rgb = np.clip(np.broadcast_to(colour, (thickness, w, 3)) * shade, 0, 255)
    canvas.paint((0, y, w, y + thickness), rgb, np.ones((thickness, w), np.float32))


def price_rail(
    canvas: Canvas, y: int, height: int, rng: np.random.Generator, tag_every: float
) -> None:
    """The label strip on the board's front edge, with its price tags."""
    w = canvas.width
    if height < 3:
        return
    strip = np.array(random_colour(rng, vivid=rng.random() < 0.3), np.float32)
    canvas.paint((0, y, w, y + height), strip, np.ones((height, w), np.float32))
    style = str(rng.choice(["esl", "paper", "mixed"], p=[0.45, 0.35, 0.2]))
    x = rng.uniform(0, tag_every)
    while x < w:
        th = max(4, int(height * rng.uniform(0.7, 1.8)))
        tw = max(6, int(th * rng.uniform(1.3, 2.6)))
        kind = style if style != "mixed" else str(rng.choice(["esl", "paper", "promo"]))
        top = y + int((height - th) * rng.uniform(0.0, 0.6))
        canvas.paint(
            (int(x), top, int(x) + tw, top + th),
            price_tag(tw, th, kind, rng),
            np.ones((th, tw), np.float32),
        )
        x += tag_every * rng.uniform(0.6, 1.6)


def price_tag(w: int, h: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A price tag as float RGB: an electronic shelf label (grey e-paper in a dark frame, small
    print and a price), a paper card, or a yellow or red promotion tag."""
    paper = {"esl": (212, 214, 210), "paper": (250, 250, 242), "promo": (250, 215, 50)}.get(
        kind, (230, 40, 40)
    )
    shade = rng.uniform(0.8, 1.05)
    tag = Image.new("RGB", (w, h), tuple(int(c * shade) for c in paper))
    draw = ImageDraw.Draw(tag)
    ink = (25, 25, 25)
    if kind == "esl":
        frame = int(rng.uniform(25, 90))
        draw.rectangle((0, 0, w - 1, h - 1), outline=(frame, frame, frame), width=max(1, h // 12))
    for k in range(int(rng.integers(1, 4))):  # product name and small print
        ly = h * (0.12 + 0.14 * k)
        draw.line(
            [(w * 0.08, ly), (w * rng.uniform(0.3, 0.9), ly)], fill=ink, width=max(1, h // 20)
        )
    price = f"{rng.integers(0, 9)},{rng.integers(10, 99)}"
    draw.text((w * rng.uniform(0.3, 0.55), h * 0.4), price, fill=ink, font=font(max(6, h // 2)))
    for k in range(int(rng.integers(0, 10))):  # a bar code
        bx = int(w * 0.08 + k * max(1, w // 40))
        draw.line([(bx, h * 0.65), (bx, h * 0.9)], fill=ink)
    return np.asarray(tag, np.float32)


def furniture(canvas: Canvas, rng: np.random.Generator) -> None:
    """What stands beside and below shelves: a cabinet side or door panel, the floor, a bin."""
    h, w = canvas.height, canvas.width
    r = rng.random()
    colour = np.array(
        [rng.uniform(110, 200), rng.uniform(70, 140), rng.uniform(30, 90)]
        if rng.random() < 0.4
        else random_colour(rng, vivid=False),
        np.float32,
    )
    if r < 0.5:  # a panel at the left or right edge
        pw = int(w * rng.uniform(0.08, 0.35))
        x0 = 0 if rng.random() < 0.5 else w - pw
        grain = 1 + 0.12 * smooth_noise(h, pw, rng, rng.uniform(10, 80))[..., None]
        canvas.paint(
            (x0, 0, x0 + pw, h), np.clip(colour * grain, 0, 255), np.ones((h, pw), np.float32)
        )
    elif r < 0.8:  # the floor
        fh = int(h * rng.uniform(0.08, 0.25))
        tiles = np.ones((fh, w, 1), np.float32)
        step = max(4, int(rng.uniform(0.05, 0.2) * w))
        tiles[:, ::step] = 0.7
        canvas.paint(
            (0, h - fh, w, h), np.clip(colour * tiles, 0, 255), np.ones((fh, w), np.float32)
        )
    else:  # a bin or a pillar: a big plain cylinder
        bw, bh = int(w * rng.uniform(0.1, 0.3)), int(h * rng.uniform(0.2, 0.6))
        x0, y0 = int(rng.uniform(0, w - bw)), h - bh
        xs = (np.arange(bw, dtype=np.float32) + 0.5) / bw * 2 - 1
        shade = (0.5 + 0.5 * np.sqrt(np.clip(1 - xs**2, 0, 1)))[None, :, None]
        canvas.paint(
            (x0, y0, x0 + bw, y0 + bh),
            np.clip(np.broadcast_to(colour * shade, (bh, bw, 3)), 0, 255),
            np.ones((bh, bw), np.float32),
        )


def sign(canvas: Canvas, rng: np.random.Generator) -> None:
    """A promotion card, shelf header or shelf-talker: flat print on white, yellow or red, a
    big price and a line of text; wide, unshaded, not a product."""
    w = int(canvas.width * rng.uniform(0.08, 0.5))
    h = max(8, int(w / rng.uniform(1.2, 6)))
    paper = [(250, 250, 245), (250, 225, 40), (220, 30, 30), (255, 255, 255)][int(rng.integers(4))]
    card = Image.new("RGB", (w, h), paper)
    draw = ImageDraw.Draw(card)
    ink = (20, 20, 20) if sum(paper) > 500 else (250, 250, 250)
    price = f"{rng.integers(0, 9)},{rng.integers(10, 99)}"
    draw.text((w * rng.uniform(0.02, 0.4), h * 0.1), price, fill=ink, font=font(int(h * 0.6)))
    if rng.random() < 0.7:
        draw.text((w * 0.05, h * 0.75), "PROMO -20% 2+1 actie", fill=ink, font=font(max(6, h // 6)))
    x, y = int(rng.uniform(-0.1, 1) * canvas.width), int(rng.uniform(-0.05, 1) * canvas.height)
    canvas.paint((x, y, x + w, y + h), np.asarray(card, np.float32), np.ones((h, w), np.float32))


def ring(canvas: Canvas, rng: np.random.Generator, size: int) -> None:
    """A plastic price ring on a bottle neck (the grey donuts on fridge shelves)."""
    r = max(4, size)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float32)
    d = np.sqrt(xx**2 + yy**2) / r
    alpha = ((d < 1) & (d > rng.uniform(0.4, 0.6))).astype(np.float32)
    x, y = int(rng.uniform(0, canvas.width)), int(rng.uniform(0, canvas.height))
    grey = np.array(random_colour(rng, vivid=False), np.float32)
    canvas.paint((x - r, y - r, x + r + 1, y + r + 1), grey, alpha)


def glass_door(canvas: Canvas, bank: SourceBank, rng: np.random.Generator) -> None:
    """Fridge doors: frames and a mullion (occluders), then tinted glass with reflections, glare
    streaks and printed lettering over everything (products behind stay products)."""
    h, w = canvas.height, canvas.width
    doors = int(rng.integers(1, 4))
    frame = np.array(random_colour(rng, vivid=False), np.float32)
    bar = max(2, int(w * rng.uniform(0.01, 0.04)))
    for k in range(doors + 1):
        x = int(k * w / doors + rng.uniform(-0.08, 0.08) * w / doors)
        canvas.paint((x - bar // 2, 0, x + bar - bar // 2, h), frame, np.ones((h, bar), np.float32))
        if 0 < k < doors and rng.random() < 0.5:  # a handle beside the mullion
            hw = max(2, bar // 2)
            hx = x + bar * (1 if rng.random() < 0.5 else -2)
            hy0, hy1 = int(h * rng.uniform(0.2, 0.4)), int(h * rng.uniform(0.6, 0.8))
            canvas.paint((hx, hy0, hx + hw, hy1), frame * 0.6, np.ones((hy1 - hy0, hw), np.float32))
    tint = np.array(random_colour(rng, vivid=False), np.float32)
    haze = np.clip(rng.uniform(0.03, 0.2) + 0.1 * smooth_noise(h, w, rng, 300), 0, 1)
    canvas.paint((0, 0, w, h), tint, haze)
    if bank.produce and rng.random() < 0.6:  # the shop behind the photographer, mirrored
        patch = resize(
            random_patch(bank.produce[int(rng.integers(len(bank.produce)))], rng), (w, h)
        )
        mirror = np.asarray(
            Image.fromarray(patch).filter(ImageFilter.GaussianBlur(rng.uniform(2, 8)))
        )
        strength = np.clip(rng.uniform(0.05, 0.25) * (1 + smooth_noise(h, w, rng, 200)), 0, 0.5)
        canvas.paint((0, 0, w, h), mirror.astype(np.float32), strength)
    for _ in range(int(rng.integers(0, 6))):  # glare: lamps and windows in the glass
        glare(canvas, rng)
    if rng.random() < 0.3:  # lettering printed on the glass
        text = Image.new("L", (w, h), 0)
        ImageDraw.Draw(text).text(
            (rng.uniform(0, 0.5) * w, rng.uniform(0.1, 0.9) * h),
            "Klaar om te drinken"[: int(rng.integers(5, 20))],
            fill=255,
            font=font(int(h * rng.uniform(0.02, 0.06))),
        )
        alpha = np.asarray(text, np.float32) / 255 * rng.uniform(0.3, 0.8)
        canvas.paint((0, 0, w, h), np.array(random_colour(rng), np.float32), alpha)


def glare(canvas: Canvas, rng: np.random.Generator) -> None:
    h, w = canvas.height, canvas.width
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    sx, sy = rng.uniform(0.005, 0.08) * w, rng.uniform(0.01, 0.3) * h
    if rng.random() < 0.5:
        sx, sy = sy, sx
    x0, x1 = int(max(0, cx - 3 * sx)), int(min(w, cx + 3 * sx))
    y0, y1 = int(max(0, cy - 3 * sy)), int(min(h, cy + 3 * sy))
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    alpha = rng.uniform(0.3, 0.85) * np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2) / 2)
    canvas.paint((x0, y0, x1, y1), np.array([255.0, 255.0, 250.0]), alpha.astype(np.float32))


def distractor(canvas: Canvas, bank: SourceBank, rng: np.random.Generator, size: int) -> None:
    """Loose produce, a crate or a bin: real texture that is not a packaged product."""
    if not bank.produce:
        return
    patch = random_patch(bank.produce[int(rng.integers(len(bank.produce)))], rng, 0.3)
    w = max(8, int(size * rng.uniform(0.8, 3)))
    h = max(8, int(size * rng.uniform(0.5, 2)))
    sprite = Sprite(resize(patch, (w, h)), np.ones((h, w), np.float32))
    x, y = int(rng.uniform(-0.1, 1) * canvas.width), int(rng.uniform(-0.1, 1) * canvas.height)
    canvas.paste(sprite, x, y, None)
