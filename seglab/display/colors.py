"""Class-id maps to colours, and colours over images (numpy only)."""

from __future__ import annotations

import numpy as np

__all__ = ["default_palette", "as_uint8_colormap", "decode_segmentation", "overlay"]


def default_palette(num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` uint8 colours, class 0 black, all distinct (up to 2**24 classes).

    The PASCAL VOC scheme: the bits of the class id are spread over the high bits of R, G
    and B, so the first colours differ strongly: (128, 0, 0), (0, 128, 0), (128, 128, 0)...
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    ids = np.arange(num_classes, dtype=np.int64)
    palette = np.zeros((num_classes, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            palette[:, channel] |= ((ids >> (3 * bit + channel)) & 1) << (7 - bit)
    return palette.astype(np.uint8)


def as_uint8_colormap(colormap) -> np.ndarray:
    """A ``(N, 3)`` colormap as uint8.

    Floats in [0, 1] are scaled by 256 and floored (clipped at 255): exact both for
    MATLAB colormaps that store ``k / 256`` (CIHP's ``human_colormap.mat``: 0.5 → 128,
    0.996 → 255) and for the usual ``k / 255``. The CIHP tutorial's ``colormap * 100``
    darkens every colour.
    """
    colormap = np.asarray(colormap)
    if colormap.ndim != 2 or colormap.shape[1] != 3:
        raise ValueError(f"a colormap has shape (num_classes, 3), got {colormap.shape}")
    if np.issubdtype(colormap.dtype, np.floating) and colormap.max(initial=0) <= 1.0:
        return np.clip(np.floor(colormap * 256.0), 0, 255).astype(np.uint8)
    if colormap.min(initial=0) < 0 or colormap.max(initial=0) > 255:
        raise ValueError("colormap values must be in [0, 1] (floats) or [0, 255]")
    return np.round(colormap).astype(np.uint8)


def decode_segmentation(mask_ids, colormap=None, num_classes: int | None = None) -> np.ndarray:
    """Class ids ``(..., H, W)`` or ``(..., H, W, 1)`` → RGB ``(..., H, W, 3)`` uint8.

    ``colormap``: ``(N, 3)`` colours (uint8, or floats in [0, 1]); by default
    ``default_palette(num_classes)``, ``num_classes`` defaulting to the largest id + 1.
    """
    ids = np.asarray(mask_ids)
    if ids.ndim >= 3 and ids.shape[-1] == 1:
        ids = ids[..., 0]
    if not np.issubdtype(ids.dtype, np.integer):
        if ids.size and not np.all(ids == np.round(ids)):
            raise ValueError(f"mask_ids must hold integer class ids, got {ids.dtype} values")
        ids = ids.astype(np.int64)
    if colormap is None:
        colormap = default_palette(num_classes or int(ids.max(initial=0)) + 1)
    colormap = as_uint8_colormap(colormap)
    if ids.size and (ids.min() < 0 or ids.max() >= len(colormap)):
        raise ValueError(
            f"mask has class id {int(ids.max() if ids.max() >= len(colormap) else ids.min())} "
            f"but the colormap has {len(colormap)} colours"
        )
    return colormap[ids]


def overlay(image, colored_mask, alpha: float = 0.5) -> np.ndarray:
    """Alpha-blend ``colored_mask`` over ``image``: ``(1 - alpha) * image + alpha * mask``.

    Both ``(H, W, 3)``, uint8 or floats in [0, 1]; returns uint8.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image, colored_mask = _to_uint8_rgb(image, "image"), _to_uint8_rgb(colored_mask, "colored_mask")
    if image.shape != colored_mask.shape:
        raise ValueError(f"image {image.shape} and colored_mask {colored_mask.shape} differ")
    blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colored_mask.astype(np.float64)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def _to_uint8_rgb(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"{name} must be RGB (H, W, 3), got {array.shape}")
    if array.dtype == np.uint8:
        return array
    if (
        np.issubdtype(array.dtype, np.floating)
        and array.min(initial=0) >= 0
        and array.max(initial=0) <= 1
    ):
        return np.round(array * 255.0).astype(np.uint8)
    raise ValueError(
        f"{name} must be uint8 or floats in [0, 1], got {array.dtype} "
        f"in [{array.min()}, {array.max()}]"
    )
