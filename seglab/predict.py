"""Masks for image files of any size and mode, written at each image's original size.

    result = predict_files(model, ["photo.jpg", "folder/"], "masks/",
                           image_size=128, normalization="unit", task="multiclass")

Each image is read (grayscale, palette, RGBA and 16-bit files become RGB, as in training),
resized to the model's input, normalised as in training, and the model's output 0 is resized
back to the original size: class logits bilinearly, then argmax (``<stem>_mask.png``: 8-bit
class ids); saliency probabilities bilinearly (``<stem>_mask.png``: 0..255). An overlay of
the mask on the image is written as ``<stem>_overlay.png``. Files that cannot be read are
listed in ``result.failed`` instead of stopping the run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

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


def _prepare(image: np.ndarray, size, normalization):
    """Resize and normalise one image exactly as ``seglab.data.make_dataset`` does."""
    import tensorflow as tf

    from seglab.data.pipeline import normalize

    resized = tf.image.resize(image, size, method="bilinear")
    resized = tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)
    return normalize(resized, normalization).numpy()


def output_to_mask(output: np.ndarray, original_size, task: str) -> np.ndarray:
    """Model output 0 for one image ``(h, w, C)`` → ``uint8 (H, W)`` at ``original_size``:
    class ids (bilinear on the logits, then argmax) or saliency 0..255 (bilinear)."""
    import tensorflow as tf

    output = np.asarray(output, dtype=np.float32)
    resized = tf.image.resize(output, original_size, method="bilinear").numpy()
    if task == "multiclass":
        if resized.shape[-1] == 1:
            # A one-channel two-class output: class 1 at probability >= 0.5.
            return (resized[..., 0] >= 0.5).astype(np.uint8)
        return np.argmax(resized, axis=-1).astype(np.uint8)
    return np.clip(np.round(resized[..., 0] * 255.0), 0, 255).astype(np.uint8)


def palette(num_classes: int) -> np.ndarray:
    """``uint8 (num_classes, 3)`` distinct colours (matplotlib's tab20, repeated)."""
    from matplotlib import colormaps

    colours = np.asarray(colormaps["tab20"].colors)[:, :3]
    return np.round(colours[np.arange(num_classes) % len(colours)] * 255).astype(np.uint8)


def overlay(
    image: np.ndarray, mask: np.ndarray, task: str, num_classes: int = 2, alpha: float = 0.5
) -> np.ndarray:
    """The mask blended onto the image: one colour per class, or red for saliency."""
    image = image.astype(np.float32)
    if task == "multiclass":
        colours = palette(max(num_classes, int(mask.max()) + 1)).astype(np.float32)
        blended = (1 - alpha) * image + alpha * colours[mask]
    else:
        weight = alpha * (mask.astype(np.float32) / 255.0)[..., None]
        blended = (1 - weight) * image + weight * np.array([255.0, 0.0, 0.0])
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def predict_files(
    model,
    inputs: Iterable,
    out_dir,
    *,
    normalization: str,
    task: str,
    image_size: int | None = None,
    num_classes: int = 2,
    write_overlay: bool = True,
    log: Callable[[str], None] | None = None,
) -> PredictionResult:
    """Write a mask (and an overlay) for every image in ``inputs`` (files and folders).

    Args:
        model: a Keras model; with several outputs, output 0 is used.
        out_dir: created if needed.
        normalization, image_size, task, num_classes: as the model was trained (a run's
            ``config.json`` holds them).
    """
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size = model_input_size(model, image_size)
    images, problems = collect_images(inputs)
    result = PredictionResult(failed=list(problems))
    used_stems: set[str] = set()
    for path in images:
        try:
            image = read_image(path)
        except ValueError as error:
            result.failed.append((path, str(error)))
            continue
        batch = _prepare(image, size, normalization)[None]
        outputs = model.predict_on_batch(batch)
        if isinstance(outputs, list | tuple):
            outputs = outputs[0]
        mask = output_to_mask(np.asarray(outputs)[0], image.shape[:2], task)

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
            Image.fromarray(overlay(image, mask, task, num_classes)).save(overlay_path)
        result.written.append((path, mask_path, overlay_path))
        if log:
            log(f"{path} -> {mask_path}")
    return result
