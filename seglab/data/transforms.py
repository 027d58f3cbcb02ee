"""What happens to a decoded image and mask before batching, the same for files and decoded
tensors: mask values to class ids or soft values, resizing, joint augmentation (``Augment``),
and class-balance weights."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from seglab.data.sets import SegmentationSet, TensorSource


@dataclasses.dataclass(frozen=True)
class Augment:
    """Joint augmentation applied identically to an image and its mask.

    Attributes:
        flip: flip left-right with probability 1/2.
        scale: ``(low, high)`` zoom factor; a crop of ``1/scale`` of each side is taken at a
            random place and resized back to ``image_size``. ``(1.0, 1.0)`` turns it off.
    """

    flip: bool = True
    scale: tuple[float, float] = (1.0, 1.5)

    def __post_init__(self):
        low, high = self.scale
        if not 1.0 <= low <= high:
            raise ValueError(f"scale must be (low, high) with 1 <= low <= high, got {self.scale}")

    @property
    def active(self) -> bool:
        return self.flip or self.scale[1] > 1.0


def size_pair(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    return size


def augment_options(augment) -> Augment | None:
    if augment is False or augment is None:
        return None
    if augment is True:
        return Augment()
    if isinstance(augment, Augment):
        return augment if augment.active else None
    if isinstance(augment, dict):
        return augment_options(Augment(**augment))
    raise TypeError(f"augment must be a bool, an Augment or a dict, got {augment!r}")


# ----------------------------------------------------------------------------------------------
# Resize, augment, normalise: shared by files and decoded tensors


def convert_mask(mask, mask_kind, label_offset, ignore_label=None):
    """Stored values → class ids (``int32``, offset subtracted) or soft ``float32`` in [0, 1].

    Pixels storing ``ignore_label`` keep that value: the offset would turn 255 into 254.
    """
    if mask_kind == "class":
        ids = tf.cast(mask, tf.int32)
        if ignore_label is None or not label_offset:
            return ids - label_offset
        return tf.where(ids == ignore_label, ids, ids - label_offset)
    return tf.clip_by_value(tf.cast(mask, tf.float32) / 255.0, 0.0, 1.0)


def _bilinear(tensors, size, antialias):
    """Bilinear resize of same-sized tensors; antialiased only where it shrinks a side more
    than 2x, because below that aliasing is slight and the antialiasing kernel costs twice the
    time. The first tensor decides, once for all (one ``tf.cond`` per example, not one each)."""
    resize = tf.image.resize
    if not antialias:
        return tuple(resize(tensor, size, method="bilinear") for tensor in tensors)
    shape = tf.shape(tensors[0])
    shrinks_a_lot = tf.logical_or(shape[0] > 2 * size[0], shape[1] > 2 * size[1])
    return tf.cond(
        shrinks_a_lot,
        lambda: tuple(
            resize(tensor, size, method="bilinear", antialias=True) for tensor in tensors
        ),
        lambda: tuple(resize(tensor, size, method="bilinear") for tensor in tensors),
    )


def _rounded_uint8(image):
    # Bilinear weights, antialiased or not, are non-negative and sum to 1: the values stay in
    # 0..255 and need no clipping. Rounding back to uint8 costs at most half a grey level and
    # keeps a cache 4x smaller.
    return tf.cast(tf.round(image), tf.uint8)


def resize_image(image, size, antialias=True) -> tf.Tensor:
    """``uint8 (H, W, 3)`` → ``uint8`` of ``size`` ``(height, width)``: bilinear, antialiased
    when a side shrinks more than 2x. Training (``make_dataset``) and prediction
    (``seglab.predict``) both resize with this function's policy, so a model sees the same
    pixels in both."""
    (image,) = _bilinear((image,), size_pair(size), antialias)
    return _rounded_uint8(image)


def resize_pair(image, mask, size, mask_kind, antialias=True):
    """Image bilinearly to ``uint8``, as ``resize_image``; class masks with nearest neighbour
    (interpolating class ids would invent classes along the edges), soft masks bilinearly to
    ``float32`` with the image's antialiasing. Large reductions (a 500 px photo to 128 px) are
    antialiased; zooming in after the cache never needs it.

    The mask keeps its values' scale: resize stored values and ``convert_mask`` afterwards
    (fewer pixels to convert), or resize converted ones; ``convert_mask`` clips soft values.
    """
    size = size_pair(size)
    if mask_kind == "class":
        (image,) = _bilinear((image,), size, antialias)
        mask = tf.image.resize(mask, size, method="nearest")
    else:
        image, mask = _bilinear((image, mask), size, antialias)
    image = _rounded_uint8(image)
    image.set_shape([*size, 3])
    mask.set_shape([*size, 1])
    return image, mask


def flip_left_right(tensor) -> tf.Tensor:
    """Mirror an ``(H, W, C)`` tensor left-right.

    A one-channel tensor is mirrored as ``(H, W)``: TensorFlow's reverse copies a last axis of
    size 1 one element at a time (0.3 ms for a 288 px mask, against 0.03 ms in two dimensions).
    """
    if tensor.shape[-1] == 1:
        return tf.expand_dims(tf.reverse(tf.squeeze(tensor, -1), [1]), -1)
    return tf.reverse(tensor, [1])


def crop_and_flip(image, mask, seed, options: Augment, resize=None):
    """The same random zoom-crop and flip on image and mask, from one stateless seed.

    The crop keeps ``1/scale`` of each side at a random place; resizing it afterwards zooms in.
    ``resize`` (``(image, mask) -> (image, mask)``) runs between the crop and the flip, so the
    flip mirrors the resized pair, which is smaller than a full-size photo.
    """
    scale_seed, offset_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    if options.scale[1] > 1.0:
        shape = tf.shape(image)
        height, width = shape[0], shape[1]
        scale = tf.random.stateless_uniform(
            [], scale_seed, minval=options.scale[0], maxval=options.scale[1]
        )
        crop_h = tf.maximum(1, tf.cast(tf.round(tf.cast(height, tf.float32) / scale), tf.int32))
        crop_w = tf.maximum(1, tf.cast(tf.round(tf.cast(width, tf.float32) / scale), tf.int32))
        fraction = tf.random.stateless_uniform([2], offset_seed)
        top = tf.cast(fraction[0] * tf.cast(height - crop_h + 1, tf.float32), tf.int32)
        left = tf.cast(fraction[1] * tf.cast(width - crop_w + 1, tf.float32), tf.int32)
        top, left = tf.minimum(top, height - crop_h), tf.minimum(left, width - crop_w)
        image = image[top : top + crop_h, left : left + crop_w]
        mask = mask[top : top + crop_h, left : left + crop_w]
    if resize is not None:
        image, mask = resize(image, mask)
    if options.flip:
        flip = tf.random.stateless_uniform([], flip_seed) < 0.5
        image, mask = tf.cond(
            flip, lambda: (flip_left_right(image), flip_left_right(mask)), lambda: (image, mask)
        )
    return image, mask


# ----------------------------------------------------------------------------------------------
# Class balance


def _normalized_class_weights(class_weights: Sequence[float]) -> np.ndarray:
    weights = np.asarray(class_weights, dtype=np.float32).reshape(-1)
    if weights.size == 0 or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(
            f"class_weights must be non-negative with a positive sum, got {class_weights!r}"
        )
    return weights / weights.sum()


def add_sample_weights(class_weights: Sequence[float], ignore_label: int | None = None) -> Callable:
    """A ``Dataset.map`` function ``(images, masks) -> (images, masks, weights)``.

    As in the TensorFlow segmentation tutorial: the class weights are normalised to sum to 1
    and each pixel gets the weight of its label, ``float32`` with the mask's shape. The result
    can go straight to ``model.fit``, which multiplies each pixel's loss by its weight. Pixels
    labelled ``ignore_label`` get weight 0.
    """
    weights = tf.constant(_normalized_class_weights(class_weights))

    def add_weights(images, masks):
        labels = tf.cast(masks, tf.int32)
        if ignore_label is None:
            return images, masks, tf.gather(weights, labels)
        # tf.gather fails on CPU for an id past the table (and gives 0 on GPU): look up 0.
        ignored = labels == ignore_label
        pixel_weights = tf.gather(weights, tf.where(ignored, 0, labels))
        return images, masks, tf.where(ignored, 0.0, pixel_weights)

    return add_weights


def class_frequencies(
    source, num_classes: int | None = None, max_examples: int | None = None
) -> np.ndarray:
    """Pixel count per class (``int64``, one per class), to show the class balance.

    ``source`` is a ``SegmentationSet`` or ``TensorSource`` of class masks, counted at their
    stored size after ``label_offset``; or any iterable of masks or ``(images, masks, ...)``
    batches, such as a dataset from ``make_dataset`` (then ``num_classes`` is needed). Pixels
    outside ``[0, num_classes)`` are not counted, ignored ones (``ignore_label``, never a class
    id) among them.
    """
    offset = 0
    if isinstance(source, SegmentationSet | TensorSource):
        if source.mask_kind != "class":
            raise ValueError(f"{source.name}: class_frequencies needs class masks, not soft masks")
        num_classes, offset = num_classes or source.num_classes, source.label_offset
        if isinstance(source, SegmentationSet):
            from concurrent.futures import ThreadPoolExecutor

            from seglab.data.check import read_mask

            with ThreadPoolExecutor(max_workers=8) as pool:
                masks = list(pool.map(read_mask, source.take(max_examples).mask_paths))
        else:
            dataset = source.dataset.take(max_examples or -1)
            masks = (mask for _, mask in dataset.as_numpy_iterator())
    else:
        masks = (item[1] if isinstance(item, tuple | list) else item for item in source)
    if num_classes is None:
        raise ValueError("num_classes is needed when source is not a SegmentationSet/TensorSource")
    counts = np.zeros(num_classes, np.int64)
    for index, mask in enumerate(masks):
        if max_examples is not None and index >= max_examples:
            break
        labels = np.asarray(mask, dtype=np.int64).reshape(-1) - offset
        counts += np.bincount(labels[(labels >= 0) & (labels < num_classes)], minlength=num_classes)
    return counts
