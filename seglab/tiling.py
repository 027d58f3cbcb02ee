"""Large-image inference: overlapping tiles blended smoothly, and flip test-time augmentation.

    probabilities = predict_tiled(model, image, tile_size=320, overlap=0.25, flip=True)

``image`` is float32 RGB with values 0..255 of any size ``(H, W, 3)`` (seglab models normalise
inside themselves, so nothing here normalises). Windows of ``tile_size`` lie on a regular grid
whose last window is flush with the image border; the model sees ``batch_size`` windows at a
time, never the whole image, so memory grows with the image only through the input and the
``(H, W, C)`` result. Each window's output is weighted by a separable raised-cosine ramp across
the overlap (weights never reach 0; sides on the image border are not ramped) and the sum is
divided by the summed weights, so no seams show.

The model's output is blended as it is: logits give a weighted mean of logits, probabilities a
weighted mean of probabilities; both are fine to threshold or argmax afterwards.

Only NumPy is used here, and the model is called through ``predict_on_batch`` (or called
directly when it is a plain function), so this runs on any Keras backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# Axes of a (B, H, W, C) batch to reverse for each flip mode; () is the image as it is.
FLIP_MODES = {
    False: ((),),
    "horizontal": ((), (2,)),
    "vertical": ((), (1,)),
    "both": ((), (2,), (1,), (1, 2)),
}


def flip_axes(flip: bool | str) -> tuple[tuple[int, ...], ...]:
    """The batch axes to reverse for each pass of a flip mode (``True`` means horizontal)."""
    key = "horizontal" if flip is True else flip
    if key not in FLIP_MODES:
        raise ValueError(
            f"flip must be False, True (= 'horizontal'), 'horizontal', 'vertical' or 'both'; "
            f"got {flip!r}"
        )
    return FLIP_MODES[key]


def _run_model(model, batch: np.ndarray, output_index: int) -> np.ndarray:
    """One model call on a batch: output ``output_index`` as float32 ``(B, H, W, C)``."""
    predict = getattr(model, "predict_on_batch", None)
    outputs = predict(batch) if predict is not None else model(batch)
    if isinstance(outputs, list | tuple):
        if not -len(outputs) <= output_index < len(outputs):
            raise ValueError(
                f"output_index {output_index} is out of range: the model has {len(outputs)} outputs"
            )
        outputs = outputs[output_index]
    elif output_index != 0:
        raise ValueError(f"output_index {output_index} given, but the model has a single output")
    outputs = np.asarray(outputs, dtype=np.float32)
    if outputs.ndim != 4 or outputs.shape[:3] != batch.shape[:3]:
        raise ValueError(
            f"the model's output must have the size of its input, (batch, height, width, "
            f"channels) = {batch.shape[:3]} + (C,); got {outputs.shape}"
        )
    return outputs


def _run_with_flips(model, batch, flips, output_index) -> np.ndarray:
    """Mean of the model's outputs over the flipped copies of ``batch``, each flipped back."""
    total = None
    for axes in flips:
        flipped = np.ascontiguousarray(np.flip(batch, axes)) if axes else batch
        outputs = _run_model(model, flipped, output_index)
        if axes:
            outputs = np.flip(outputs, axes)
        if total is None:
            total = outputs.copy() if len(flips) > 1 else outputs
        else:
            total += outputs
    if len(flips) > 1:
        total /= len(flips)
    return total


def predict_flip_tta(
    model, images, flip: bool | str = "horizontal", output_index: int = 0
) -> np.ndarray:
    """The model's output averaged over flipped copies of the input, each flipped back.

    Args:
        model: a Keras model (or a function of a ``(B, H, W, 3)`` array); with several
            outputs, ``output_index`` chooses one.
        images: float32 0..255 RGB, one image ``(H, W, 3)`` or a batch ``(B, H, W, 3)``, of a
            size the model accepts. The whole batch goes through the model at once; for large
            images use ``predict_tiled(..., flip=...)``.
        flip: ``"horizontal"`` (or ``True``): 2 passes; ``"vertical"``: 2 passes;
            ``"both"``: 4 passes (as is, left-right, up-down, both); ``False``: 1 pass.

    Returns:
        float32 ``(H, W, C)`` or ``(B, H, W, C)``: the mean of the passes.
    """
    flips = flip_axes(flip)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be (H, W, 3) or (B, H, W, 3); got shape {images.shape}")
    batch = images[None] if images.ndim == 3 else images
    outputs = _run_with_flips(model, batch, flips, output_index)
    return outputs[0] if images.ndim == 3 else outputs


def fixed_input_size(model) -> tuple[int | None, int | None]:
    """``(height, width)`` of the model's input; ``None`` where it takes any size."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return (None, None)
    shape = tuple(inputs[0].shape)
    return (shape[1], shape[2]) if len(shape) == 4 else (None, None)


def _pair(value, name) -> tuple[int, int]:
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(pair) != 2 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in pair
    ):
        raise ValueError(f"{name} must be a positive integer or (height, width); got {value!r}")
    return (int(pair[0]), int(pair[1]))


def window_step(tile: int, overlap: float, multiple: int = 1) -> int:
    """Pixels between the starts of neighbouring windows on one axis.

    ``tile * (1 - overlap)`` rounded, then down to a multiple of ``multiple`` (so the windows
    share the model's downsampling grid), and at least ``multiple``.
    """
    if isinstance(overlap, bool) or not 0.0 <= overlap < 1.0:
        raise ValueError(
            f"overlap is the fraction of the tile shared by neighbouring windows, in [0, 1), "
            f"e.g. 0.25; got {overlap!r}"
        )
    step = tile - int(round(overlap * tile))
    if step < 1:
        raise ValueError(
            f"overlap {overlap} of a {tile}-pixel tile leaves no step between windows: "
            f"use a smaller overlap or a larger tile"
        )
    if multiple > 1:
        step = max(multiple, step // multiple * multiple)
    return step


def window_starts(length: int, tile: int, step: int) -> list[int]:
    """Starts of the windows covering ``length`` pixels: every ``step``, the last flush with
    the end (one window at 0 when ``length <= tile``: the image is padded to the tile)."""
    if length <= tile:
        return [0]
    return [*range(0, length - tile, step), length - tile]


def _raised_cosine_ramp(width: int) -> np.ndarray:
    """``width`` weights rising from near 0 to near 1, never 0; a ramp and its mirror image
    sum to exactly 1, so two windows overlapping by ``width`` add up to 1 everywhere."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)).astype(np.float32)


def _axis_windows(length: int, tile: int, step: int) -> tuple[list, np.ndarray]:
    """``[(start, weights (tile,))]`` for one axis, and the summed weights ``(length,)``."""
    starts = window_starts(length, tile, step)
    # Without overlap (or with one window) there is nothing to fade.
    ramp = _raised_cosine_ramp(tile - step) if len(starts) > 1 and tile > step else None
    windows, weight_sum = [], np.zeros(max(length, tile), np.float32)
    for start in starts:
        weights = np.ones(tile, np.float32)
        if ramp is not None:
            if start > 0:  # a cut inside the image, not the image border: fade in
                weights[: len(ramp)] = np.minimum(weights[: len(ramp)], ramp)
            if start + tile < length:
                weights[-len(ramp) :] = np.minimum(weights[-len(ramp) :], ramp[::-1])
        windows.append((start, weights))
        weight_sum[start : start + tile] += weights
    return windows, weight_sum


def predict_tiled(
    model,
    image,
    tile_size: int | Sequence[int] | None = None,
    *,
    overlap: float = 0.25,
    batch_size: int = 4,
    flip: bool | str = False,
    output_index: int = 0,
    multiple: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The model's output for an image of any size, from overlapping windows blended smoothly.

    Args:
        model: a Keras model (or a function of a ``(B, h, w, 3)`` array) whose output has the
            size of its input; with several outputs, ``output_index`` chooses one.
        image: float32 RGB ``(H, W, 3)`` with values 0..255, any size. A dimension smaller
            than the tile is padded by reflection to the tile and cropped back.
        tile_size: window size, an int or ``(height, width)``. ``None``: the model's fixed
            input size. A model with a fixed input size accepts only that size.
        overlap: fraction of the tile shared by neighbouring windows, in ``[0, 1)`` (0.25 of a
            256-pixel tile: 64 pixels). The blending ramps span the overlap. A pixel that
            every window covering it sees farther than the model's receptive field from the
            window's cut edges gets the whole-image output exactly; elsewhere the ramps give
            little weight to a window's edge (an overlap of at least twice the receptive
            field leaves every pixel one window that sees it exactly).
        batch_size: windows per model call (memory on the accelerator grows with it).
        flip: flip test-time augmentation per window (see :func:`predict_flip_tta`):
            ``False``, ``True``/``"horizontal"``, ``"vertical"`` or ``"both"``. Each pass is one
            model call of at most ``batch_size`` windows.
        output_index: which output of a multi-output model (0: the prediction).
        multiple: the model's total stride (32 for U-Net, DeepLabV3+ and BASNet; 1 for U²-Net,
            which takes any size): ``tile_size`` must be a multiple of it, and the step
            between windows is rounded down to one so the windows (but the last, flush with
            the border) share the model's grid.
        progress: called as ``progress(windows_done, windows_total)`` after each batch.

    Returns:
        float32 ``(H, W, C)``: the blended output (logits or probabilities, as the model gives).

    Raises:
        ValueError: a bad tile, overlap, batch size or image shape, or a tile the model does
            not accept (the message says which).
    """
    fixed = fixed_input_size(model)
    if tile_size is None:
        if None in fixed:
            raise ValueError("the model takes any input size: give tile_size")
        tile_size = fixed
    tile_h, tile_w = _pair(tile_size, "tile_size")
    for tile, size, axis in ((tile_h, fixed[0], "height"), (tile_w, fixed[1], "width")):
        if size is not None and tile != size:
            raise ValueError(
                f"the model takes inputs of {axis} {size} only, so the tile {axis} must be "
                f"{size} (got {tile}); or build the model with input_shape=(None, None, 3)"
            )
    if isinstance(multiple, bool) or not isinstance(multiple, int | np.integer) or multiple < 1:
        raise ValueError(f"multiple must be a positive integer; got {multiple!r}")
    for tile in (tile_h, tile_w):
        if tile % multiple:
            below, above = tile // multiple * multiple, (tile // multiple + 1) * multiple
            hint = f"{below} or {above}" if below else str(above)
            raise ValueError(
                f"tile_size {tile} is not a multiple of {multiple}, the model's total stride: "
                f"use {hint}"
            )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    flips = flip_axes(flip)
    step_h = window_step(tile_h, overlap, multiple)
    step_w = window_step(tile_w, overlap, multiple)

    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or 0 in image.shape:
        raise ValueError(f"image must be (height, width, channels); got shape {image.shape}")
    height, width = image.shape[:2]
    # Pad a dimension smaller than the tile by reflection, centred, and crop back at the end.
    pad_h, pad_w = max(tile_h - height, 0), max(tile_w - width, 0)
    if pad_h or pad_w:
        top, left = pad_h // 2, pad_w // 2
        image = np.pad(image, ((top, pad_h - top), (left, pad_w - left), (0, 0)), mode="reflect")
    else:
        top = left = 0

    rows, row_weight_sum = _axis_windows(height + pad_h, tile_h, step_h)
    columns, column_weight_sum = _axis_windows(width + pad_w, tile_w, step_w)
    windows = [(row, column) for row in rows for column in columns]
    blended = None
    for first in range(0, len(windows), batch_size):
        chunk = windows[first : first + batch_size]
        batch = np.stack([image[y : y + tile_h, x : x + tile_w] for (y, _), (x, _) in chunk])
        outputs = _run_with_flips(model, batch, flips, output_index)
        if blended is None:
            blended = np.zeros((*image.shape[:2], outputs.shape[-1]), np.float32)
        for ((y, row_weights), (x, column_weights)), output in zip(chunk, outputs, strict=True):
            weights = np.outer(row_weights, column_weights)[..., None]
            blended[y : y + tile_h, x : x + tile_w] += output * weights
        if progress is not None:
            progress(first + len(chunk), len(windows))

    # The weights are separable and the windows form a grid, so their sum is an outer product.
    blended /= row_weight_sum[:, None, None]
    blended /= column_weight_sum[None, :, None]
    if pad_h or pad_w:
        return np.ascontiguousarray(blended[top : top + height, left : left + width])
    return blended
