"""How the display functions read masks and predictions: a batch of maps, class ids or
soft (probability) values."""

from __future__ import annotations

import numpy as np


def as_batch(maps) -> np.ndarray | None:
    """Masks or predictions → ``(N, H, W, C)``. A list/tuple is a model's outputs: output 0."""
    if maps is None:
        return None
    if isinstance(maps, (list, tuple)):
        maps = maps[0]
    maps = np.asarray(maps)
    if maps.ndim == 2:
        maps = maps[None, ..., None]
    elif maps.ndim == 3:
        # (H, W, 1) is one map; (N, H, W) several.
        maps = maps[None] if maps.shape[-1] == 1 else maps[..., None]
    if maps.ndim != 4:
        raise ValueError(f"masks and predictions must be (N, H, W[, C]), got {maps.shape}")
    return maps


def is_class_map(maps: np.ndarray) -> bool:
    """Integer or boolean maps, and several channels (one per class), hold classes."""
    return (
        np.issubdtype(maps.dtype, np.integer)
        or np.issubdtype(maps.dtype, np.bool_)
        or maps.shape[-1] > 1
    )


def class_ids(maps: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` class ids: the arg-max of several channels, else the one channel."""
    if maps.shape[-1] > 1:
        return np.argmax(maps, axis=-1)
    return maps[..., 0].astype(np.int64)


def soft_values(maps: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` probabilities of one-channel maps; ValueError outside [0, 1]."""
    values = maps[..., 0].astype(np.float32)
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        raise ValueError(
            f"soft maps must be probabilities in [0, 1], got values in [{values.min():.3g}, "
            f"{values.max():.3g}]; turn a model's outputs into probabilities with "
            "seglab.models.to_probabilities(model, outputs)"
        )
    return values
