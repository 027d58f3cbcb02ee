"""Small synthetic datasets written to disk, for offline demos and tests.

Objects are random shapes on textured backgrounds. Each object is brighter and more saturated
than the muted background, so a small network learns them in a few epochs. The same seed
always writes the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from seglab.data.sets import SegmentationSet

_SUPERSAMPLE = 4  # masks are drawn 4x larger and shrunk: soft, anti-aliased edges
SHAPES = ("ellipse", "rectangle", "triangle", "pentagon", "diamond")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Muted colour, smooth blotches, faint stripes and grain: float (size, size, 3) in 0..255."""
    coarse = rng.uniform(0, 1, (5, 5, 3)).astype(np.float32)
    blotches = np.asarray(
        Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC),
        np.float32,
    )
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 20)
    stripes = 12 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    base = rng.uniform(60, 130, 3)
    image = base + 0.35 * (blotches - 128) + stripes[..., None] + rng.normal(0, 6, (size, size, 3))
    return np.clip(image, 0, 255)


def _shape_outline(rng: np.random.Generator, shape: str, size: int, scale: int):
    """(kind, xy) for ImageDraw at ``scale`` times the image size; about 15-45 % of a side."""
    radius = rng.uniform(0.15, 0.3) * size * scale
    cx, cy = (rng.uniform(0.3, 0.7, 2) * size * scale).tolist()
    if shape == "ellipse":
        rx, ry = radius, radius * rng.uniform(0.6, 1.0)
        return "ellipse", [cx - rx, cy - ry, cx + rx, cy + ry]
    if shape == "rectangle":
        rx, ry = radius, radius * rng.uniform(0.5, 1.0)
        return "polygon", [
            (cx - rx, cy - ry),
            (cx + rx, cy - ry),
            (cx + rx, cy + ry),
            (cx - rx, cy + ry),
        ]
    corners = {"triangle": 3, "pentagon": 5, "diamond": 4}[shape]
    start = rng.uniform(0, 2 * np.pi)
    angles = start + np.arange(corners) * 2 * np.pi / corners
    return "polygon", [(cx + radius * np.cos(a), cy + radius * np.sin(a)) for a in angles]


def _draw(kind: str, xy, size: int, scale: int) -> Image.Image:
    canvas = Image.new("L", (size * scale, size * scale), 0)
    getattr(ImageDraw.Draw(canvas), kind)(xy, fill=255)
    return canvas


def _object_texture(rng: np.random.Generator, size: int, colour) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    spots = 15 * np.sin(xx / rng.uniform(2, 4)) * np.cos(yy / rng.uniform(2, 4))
    return np.clip(np.asarray(colour, np.float32) + spots[..., None], 0, 255)


def make_synthetic_salient(
    root: str | os.PathLike, count: int = 32, size: int = 128, seed: int = 0
) -> SegmentationSet:
    """Write ``root/images/NNNN.jpg`` and ``root/masks/NNNN.png`` (0..255, soft edges).

    Returns the set as ``load_paired_folder(root)`` reads it.
    """
    from seglab.data.folders import load_paired_folder

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        shape = SHAPES[rng.integers(len(SHAPES))]
        kind, xy = _shape_outline(rng, shape, size, _SUPERSAMPLE)
        mask = _draw(kind, xy, size, _SUPERSAMPLE).resize((size, size), Image.BOX)
        alpha = np.asarray(mask, np.float32)[..., None] / 255.0
        colour = rng.uniform(170, 255, 3)
        colour[rng.integers(3)] = rng.uniform(0, 60)  # saturated: one channel low
        image = _background(rng, size) * (1 - alpha) + _object_texture(rng, size, colour) * alpha
        name = f"{index:04d}"
        Image.fromarray(image.round().astype(np.uint8)).save(
            root / "images" / f"{name}.jpg", quality=92
        )
        mask.save(root / "masks" / f"{name}.png")
    return load_paired_folder(root, name=f"synthetic_salient({root.name})")


# One distinct colour and shape per foreground class (cycled beyond five classes).
_CLASS_COLOURS = ((230, 60, 50), (60, 200, 70), (70, 90, 240), (240, 210, 40), (200, 60, 220))


def make_synthetic_multiclass(
    root: str | os.PathLike,
    count: int = 40,
    size: int = 128,
    num_classes: int = 3,
    seed: int = 0,
    val_fraction: float = 0.2,
) -> tuple[SegmentationSet, SegmentationSet]:
    """Write a PaddleSeg layout: ``images/*.jpg``, ``labels/*.png`` (class ids; 0 background,
    class ``k`` a shape with its own colour), ``train_list.txt`` and ``val_list.txt``.

    Returns ``(train, val)`` as ``load_paddleseg`` reads them.
    """
    from seglab.data.paddleseg import load_paddleseg, write_split

    if not 2 <= num_classes <= 256:
        raise ValueError(f"num_classes must be between 2 and 256, got {num_classes}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        image = _background(rng, size)
        label = Image.new("L", (size, size), 0)
        for _ in range(rng.integers(1, 4)):
            class_id = int(rng.integers(1, num_classes))
            shape = SHAPES[(class_id - 1) % len(SHAPES)]
            kind, xy = _shape_outline(rng, shape, size, 1)
            region = np.asarray(_draw(kind, xy, size, 1)) > 0
            colour = np.asarray(_CLASS_COLOURS[(class_id - 1) % len(_CLASS_COLOURS)], np.float32)
            image[region] = _object_texture(rng, size, colour + rng.uniform(-20, 20, 3))[region]
            getattr(ImageDraw.Draw(label), kind)(xy, fill=class_id)
        name = f"{index:04d}"
        Image.fromarray(image.round().astype(np.uint8)).save(
            root / "images" / f"{name}.jpg", quality=92
        )
        label.save(root / "labels" / f"{name}.png")
    write_split(root, val_fraction=val_fraction, seed=seed, overwrite=True)
    train, val = load_paddleseg(root, num_classes=num_classes)
    return train, val
