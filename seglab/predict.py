"""Masks for image files of any size and mode, written at each image's original size.

    model = seglab.training.load_model("runs/pets/model.keras")
    result = predict_files(model, ["photo.jpg", "folder/"], "masks/")

The model is all that is needed: seglab models normalise their own 0..255 input and declare
their outputs (``seglab.models.output_info``). Each image is read (grayscale, palette, RGBA
and 16-bit files become RGB, as in training) and resized to the model's input with the
training pipeline's own ``resize_image``; the prediction is resized back to the original
size: class scores bilinearly, then argmax (``<stem>_mask.png``: 8-bit class ids); a
one-channel saliency map bilinearly (``<stem>_mask.png``: 0..255). With ``tile=`` a large
image is instead predicted at full resolution in overlapping windows (``seglab.tiling``).
``flip=True`` averages in the prediction of the mirror image; ``flip_pairs`` names the classes
a mirror swaps (a left arm becomes a right arm: ``seglab.data.cihp.CIHP_FLIP_PAIRS``), which
are swapped back in the mirrored prediction before averaging.
An overlay of the mask on the image is written as ``<stem>_overlay.png``. Files that cannot
be read are listed in ``result.failed`` instead of stopping the run.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from seglab.errors import SettingError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclasses.dataclass
class PredictionResult:
    """``written``: ``(image, mask_png, overlay_png)`` per image; ``failed``: ``(path, reason)``."""

    written: list[tuple[Path, Path, Path | None]] = dataclasses.field(default_factory=list)
    failed: list[tuple[Path, str]] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{len(self.written)} mask(s) written"]
        if self.failed:
            lines[0] += f", {len(self.failed)} file(s) failed:"
            lines += [f"  {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)


def collect_images(inputs: Iterable) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image files from files and folders (a folder's image files, sorted, not recursive).

    Returns ``(images, problems)``; a missing path or a folder with no images is a problem.
    """
    images, problems = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                problems.append(
                    (path, f"no image files in the folder (looked for {', '.join(IMAGE_SUFFIXES)})")
                )
            images += found
        elif path.is_file():
            images.append(path)
        else:
            problems.append((path, "file not found"))
    return images, problems


def read_image(path) -> np.ndarray:
    """``uint8 (H, W, 3)`` RGB from any file PIL reads: grayscale is repeated, alpha dropped
    (as ``tf.io.decode_image(channels=3)`` does in training), 16-bit scaled to 8 bits.

    Raises:
        ValueError: the file is not an image PIL can read (the message says why).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                values = np.asarray(image, dtype=np.float64)
                top = 65535.0 if values.max() > 255 or image.mode.startswith("I;16") else 255.0
                gray = np.clip(np.round(values * 255.0 / top), 0, 255).astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=-1)
            if image.mode == "F":
                gray = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=-1)
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise ValueError("not an image file PIL can read") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read the image: {error}") from None


def model_input_size(model, default: int | None = None) -> tuple[int, int]:
    """``(height, width)`` the model was built for, or ``default`` when its input is free."""
    shape = model.inputs[0].shape
    height, width = shape[1], shape[2]
    if height is None or width is None:
        if default is None:
            raise ValueError("the model takes any size: give image_size")
        return (int(default), int(default))
    return (int(height), int(width))


def prepare_image(image: np.ndarray, size) -> np.ndarray:
    """``uint8 (H, W, 3)`` → ``float32 (h, w, 3)``, 0..255, resized as ``make_dataset`` does."""
    from seglab.data.pipeline import resize_image

    return np.asarray(resize_image(image, size), dtype=np.float32)


def mirror_class_pairs(class_names) -> tuple[tuple[int, int], ...]:
    """Pairs of class ids whose names differ only by "left" and "right" ("Left-arm" and
    "Right-arm", "left_eye" and "right_eye"): the classes a mirror image swaps, for
    ``flip_pairs``. ``()`` when there are none."""
    lowered = [str(name).lower() for name in class_names or ()]
    pairs = []
    for left, name in enumerate(lowered):
        as_right = re.sub(r"(?<![a-z])left(?![a-z])", "right", name)
        if as_right != name and as_right in lowered:
            pairs.append((left, lowered.index(as_right)))
    return tuple(pairs)


def check_flip_pairs(flip_pairs, num_classes: int) -> tuple[tuple[int, int], ...]:
    """``flip_pairs`` as a tuple of ``(id, id)``, each a class of ``num_classes`` that appears
    once; raises ``SettingError`` otherwise."""
    pairs = tuple(tuple(pair) for pair in flip_pairs or ())
    ids = [class_id for pair in pairs for class_id in pair]
    problem = None
    if pairs and num_classes < 2:
        problem = f"the model predicts one channel ({num_classes} class): nothing to swap"
    elif any(len(pair) != 2 for pair in pairs):
        problem = "each item must be a pair of class ids"
    elif not all(isinstance(i, int | np.integer) and 0 <= i < num_classes for i in ids):
        problem = f"class ids must be whole numbers from 0 to {num_classes - 1}"
    elif len(set(ids)) != len(ids):
        problem = "a class appears in more than one place"
    if problem:
        raise SettingError(f"flip_pairs={flip_pairs!r}: {problem}")
    return tuple((int(a), int(b)) for a, b in pairs)


def swap_classes(probabilities: np.ndarray, flip_pairs) -> np.ndarray:
    """``probabilities (..., C)`` with the channels of each pair in ``flip_pairs`` exchanged."""
    if not flip_pairs:
        return probabilities
    order = np.arange(probabilities.shape[-1])
    for first, second in flip_pairs:
        order[first], order[second] = second, first
    return probabilities[..., order]


def _mirror_averaged(predict_batch, flip, flip_pairs):
    """A function of a ``(B, h, w, 3)`` batch: the mean of ``predict_batch`` over the flip
    mode's passes (``seglab.tiling.flip_axes``), each flipped back; a mirrored pass (an odd
    number of flipped axes) has its ``flip_pairs`` swapped first."""
    from seglab.tiling import flip_axes

    passes = flip_axes(flip)

    def predict(batch):
        total = None
        for axes in passes:
            flipped = np.ascontiguousarray(np.flip(batch, axes)) if axes else batch
            probabilities = predict_batch(flipped)
            if axes:
                probabilities = np.flip(probabilities, axes)
            if len(axes) % 2:
                probabilities = swap_classes(probabilities, flip_pairs)
            total = probabilities if total is None else total + probabilities
        return total / len(passes)

    return predict


def predict_image(
    model,
    image: np.ndarray,
    *,
    image_size=None,
    tile=None,
    overlap=0.25,
    flip=False,
    flip_pairs=(),
) -> np.ndarray:
    """The model's prediction for one ``uint8 (H, W, 3)`` image at its original size, as
    probabilities ``float32 (H, W, C)`` (``seglab.models.to_probabilities``).

    Without ``tile`` the image is resized to the model's input (``image_size`` for a model
    that takes any size), predicted, and the result resized back bilinearly. With ``tile`` it
    is predicted at its own resolution in overlapping ``tile``-pixel windows, blended (for
    images larger than the training size: micrographs, scans). ``flip`` averages the
    prediction of the image and of its mirror image (test-time augmentation; ``True`` or
    ``"horizontal"``, ``"vertical"``, ``"both"`` as in ``seglab.tiling``). ``flip_pairs``:
    pairs of class ids a mirror image swaps (a person's left and right arm), exchanged in the
    mirrored prediction before averaging; without them such classes average to a tie.
    """
    import tensorflow as tf

    from seglab.models.heads import output_info, to_probabilities

    flip_pairs = check_flip_pairs(flip_pairs, output_info(model).num_classes)
    predict = _mirror_averaged(
        lambda batch: to_probabilities(model, model.predict_on_batch(batch)), flip, flip_pairs
    )
    if tile is not None:
        from seglab.tiling import predict_tiled

        # Windows are blended as probabilities, whatever the model outputs. Tiles and steps
        # are multiples of 32, the largest stride of seglab's models.
        return predict_tiled(predict, image.astype(np.float32), tile, overlap=overlap, multiple=32)
    size = model_input_size(model, image_size)
    probabilities = predict(prepare_image(image, size)[None])[0]
    return tf.image.resize(probabilities, image.shape[:2], method="bilinear").numpy()


def probabilities_to_mask(probabilities: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` probabilities → ``uint8 (H, W)``: class ids (argmax) for several
    channels, saliency 0..255 for one."""
    if probabilities.shape[-1] > 1:
        return np.argmax(probabilities, axis=-1).astype(np.uint8)
    return np.clip(np.round(probabilities[..., 0] * 255.0), 0, 255).astype(np.uint8)


def overlay(
    image: np.ndarray, mask: np.ndarray, num_classes: int | None = None, alpha: float = 0.5
) -> np.ndarray:
    """The mask blended onto the image: class colours (``num_classes`` given, the palette of
    ``seglab.display``), or red with the opacity of a 0..255 saliency mask."""
    from seglab.display.colors import decode_segmentation
    from seglab.display.colors import overlay as blend

    if num_classes is not None:
        return blend(image, decode_segmentation(mask, num_classes=num_classes), alpha)
    weight = alpha * (mask.astype(np.float32) / 255.0)[..., None]
    blended = (1 - weight) * image.astype(np.float32) + weight * np.array([255.0, 0.0, 0.0])
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def predict_files(
    model,
    inputs: Iterable,
    out_dir,
    *,
    image_size: int | None = None,
    tile: int | None = None,
    overlap: float = 0.25,
    flip: bool | str = False,
    flip_pairs=(),
    write_overlay: bool = True,
    log: Callable[[str], None] | None = None,
) -> PredictionResult:
    """Write a mask (and an overlay) for every image in ``inputs`` (files and folders).

    Args:
        model: a seglab model (declared outputs; output 0 is used).
        out_dir: created if needed.
        image_size: the size to resize to when the model takes any size (a run's
            ``config.json`` holds the training size).
        tile, overlap, flip, flip_pairs: see ``predict_image``.
    """
    from PIL import Image

    from seglab.models.heads import output_info

    info = output_info(model)
    num_classes = info.num_classes if info.num_classes > 1 else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tile is None:
        model_input_size(model, image_size)  # fail before reading any file
    check_flip_pairs(flip_pairs, info.num_classes)
    images, problems = collect_images(inputs)
    result = PredictionResult(failed=list(problems))
    used_stems: set[str] = set()
    for path in images:
        try:
            image = read_image(path)
        except ValueError as error:
            result.failed.append((path, str(error)))
            continue
        probabilities = predict_image(
            model,
            image,
            image_size=image_size,
            tile=tile,
            overlap=overlap,
            flip=flip,
            flip_pairs=flip_pairs,
        )
        mask = probabilities_to_mask(probabilities)

        stem = path.stem
        count = 2
        while stem in used_stems:
            stem = f"{path.stem}-{count}"
            count += 1
        used_stems.add(stem)
        mask_path = out / f"{stem}_mask.png"
        Image.fromarray(mask).save(mask_path)  # 2-D uint8: an 8-bit grey PNG
        overlay_path = None
        if write_overlay:
            overlay_path = out / f"{stem}_overlay.png"
            Image.fromarray(overlay(image, mask, num_classes)).save(overlay_path)
        result.written.append((path, mask_path, overlay_path))
        if log:
            log(f"{path} -> {mask_path}")
    return result
