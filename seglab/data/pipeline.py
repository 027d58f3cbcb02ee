"""The one input pipeline: decode, resize, augment, batch.

Files (``SegmentationSet``) are decoded by content; from there on, files and decoded tensors
(``TensorSource``, e.g. tensorflow-datasets) go through the same ``_convert_mask``,
``_crop_and_flip`` and ``_resize``, so the same image gives the same tensors by either route.
Images stay RGB 0..255: every seglab model normalises its input itself
(``seglab.models.preprocessing``), and ``resize_image`` is also what ``seglab predict`` uses,
so training and prediction see the same pixels.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import random
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from seglab.data.sets import DataError, SegmentationSet, TensorSource

AUTOTUNE = tf.data.AUTOTUNE

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE = 3  # IHDR colour type of a palette ("P" mode) PNG


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


def _image_size(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    return size


def _augment_options(augment) -> Augment | None:
    if augment is False or augment is None:
        return None
    if augment is True:
        return Augment()
    if isinstance(augment, Augment):
        return augment if augment.active else None
    if isinstance(augment, dict):
        return _augment_options(Augment(**augment))
    raise TypeError(f"augment must be a bool, an Augment or a dict, got {augment!r}")


# ----------------------------------------------------------------------------------------------
# Decoding (by content, not by file extension)


def decode_image(data: tf.Tensor) -> tf.Tensor:
    """Encoded bytes (JPEG, PNG, GIF, BMP, WebP) → ``uint8 (H, W, 3)``.

    Grayscale becomes RGB, alpha is dropped, 16-bit PNGs are scaled to 8 bits and an animated
    GIF gives its first frame.
    """
    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _png_header_byte(data, offset):
    return tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, 1), tf.uint8)[0], tf.int32)


def _decode_palette_indices(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as mask:
        return np.asarray(mask, dtype=np.int32)[..., None]


def _decode_8bit(data):
    mask = tf.io.decode_image(data, dtype=tf.uint8, expand_animations=False)
    return tf.cast(mask[..., :1], tf.int32)


def _decode_16bit(data):
    return tf.cast(tf.io.decode_png(data, dtype=tf.uint16)[..., :1], tf.int32)


def _decode_low_bit(data, bit_depth):
    # libpng spreads 1/2/4-bit grey values over 0..255 (1 -> 255 at 1 bit): undo it.
    return _decode_8bit(data) // (255 // (tf.bitwise.left_shift(1, bit_depth) - 1))


def _decode_palette(data):
    indices = tf.numpy_function(_decode_palette_indices, [data], tf.int32, stateful=False)
    return tf.reshape(indices, tf.concat([tf.shape(indices)[:2], [1]], axis=0))


def mask_encoding(path: str) -> str:
    """How a class mask file must be decoded, from its first bytes: ``"16bit"``,
    ``"palette"``, ``"1bit"``/``"2bit"``/``"4bit"`` (grey PNGs) or ``"8bit"`` (anything else)."""
    with open(path, "rb") as file:
        header = file.read(26)
    if len(header) < 26 or not header.startswith(_PNG_SIGNATURE):
        return "8bit"
    bit_depth, colour_type = header[24], header[25]
    if bit_depth == 16:
        return "16bit"
    if colour_type == _PNG_PALETTE:
        return "palette"
    if colour_type == 0 and bit_depth < 8:
        return f"{bit_depth}bit"
    return "8bit"


_CLASS_MASK_DECODERS = {
    "8bit": _decode_8bit,
    "16bit": _decode_16bit,
    "palette": _decode_palette,
    "1bit": lambda data: _decode_low_bit(data, 1),
    "2bit": lambda data: _decode_low_bit(data, 2),
    "4bit": lambda data: _decode_low_bit(data, 4),
}


def decode_mask(
    data: tf.Tensor, mask_kind: str = "class", encoding: str | None = None
) -> tf.Tensor:
    """Encoded mask bytes → ``int32 (H, W, 1)``; a mask with several channels gives its first.

    Soft masks are grey levels: any bit depth is scaled to 0..255, as TensorFlow decodes them.
    Class masks keep the stored ids. TensorFlow's decoders would rescale between bit depths and
    expand palettes to colours, so the PNG header picks the decoder: 16-bit PNGs are read at
    16 bits, 1/2/4-bit grey PNGs are scaled back to their ids, palette PNGs give their indices
    (through PIL), anything else is read at 8 bits. ``encoding`` (see ``mask_encoding``) skips
    that choice when every mask of a set is stored alike, which is several times faster.
    """
    if mask_kind == "soft":
        mask = _decode_8bit(data)
    elif encoding is not None:
        mask = _CLASS_MASK_DECODERS[encoding](data)
    else:
        is_png = tf.logical_and(
            tf.strings.length(data) > 26, tf.strings.substr(data, 0, 8) == _PNG_SIGNATURE
        )

        def png():
            bit_depth = _png_header_byte(data, 24)
            colour_type = _png_header_byte(data, 25)
            return tf.case(
                [
                    (tf.equal(bit_depth, 16), lambda: _decode_16bit(data)),
                    (tf.equal(colour_type, _PNG_PALETTE), lambda: _decode_palette(data)),
                    (
                        tf.logical_and(tf.equal(colour_type, 0), bit_depth < 8),
                        lambda: _decode_low_bit(data, bit_depth),
                    ),
                ],
                default=lambda: _decode_8bit(data),
            )

        mask = tf.cond(is_png, png, lambda: _decode_8bit(data))
    mask.set_shape([None, None, 1])
    return mask


def load_pair(
    image_path: tf.Tensor,
    mask_path: tf.Tensor,
    mask_kind: str = "class",
    mask_encoding: str | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Read and decode one file pair: ``uint8 (H, W, 3)`` image, ``int32 (H, W, 1)`` mask."""
    image = decode_image(tf.io.read_file(image_path))
    return image, decode_mask(tf.io.read_file(mask_path), mask_kind, mask_encoding)


def _common_mask_encoding(mask_paths) -> str | None:
    """The encoding shared by all these class masks, or None when they differ (or are unreadable)."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            encodings = set(pool.map(mask_encoding, mask_paths))
    except OSError:
        return None
    return encodings.pop() if len(encodings) == 1 else None


# ----------------------------------------------------------------------------------------------
# Resize, augment, normalise: shared by files and decoded tensors


def _convert_mask(mask, mask_kind, label_offset, ignore_label=None):
    """Stored values → class ids (``int32``, offset subtracted) or soft ``float32`` in [0, 1].

    Pixels storing ``ignore_label`` keep that value: the offset would turn 255 into 254.
    """
    if mask_kind == "class":
        ids = tf.cast(mask, tf.int32)
        if ignore_label is None or not label_offset:
            return ids - label_offset
        return tf.where(ids == ignore_label, ids, ids - label_offset)
    return tf.clip_by_value(tf.cast(mask, tf.float32) / 255.0, 0.0, 1.0)


def _bilinear(images, size, antialias):
    """Bilinear resize; antialiased only where it shrinks a side more than 2x, because below
    that aliasing is slight and the antialiasing kernel costs twice the time."""
    if not antialias:
        return tf.image.resize(images, size, method="bilinear")
    shape = tf.shape(images)
    shrinks_a_lot = tf.logical_or(shape[0] > 2 * size[0], shape[1] > 2 * size[1])
    return tf.cond(
        shrinks_a_lot,
        lambda: tf.image.resize(images, size, method="bilinear", antialias=True),
        lambda: tf.image.resize(images, size, method="bilinear"),
    )


def resize_image(image, size, antialias=True) -> tf.Tensor:
    """``uint8 (H, W, 3)`` → ``uint8`` of ``size`` ``(height, width)``: bilinear, antialiased
    when a side shrinks more than 2x. Training (``make_dataset``) and prediction
    (``seglab.predict``) both resize with this function, so a model sees the same pixels in
    both."""
    image = _bilinear(image, _image_size(size), antialias)
    # Rounding back to uint8 costs at most half a grey level and keeps a cache 4x smaller.
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def _resize(image, mask, size, mask_kind, antialias=True):
    """Image bilinearly to ``uint8``; class masks with nearest neighbour (interpolating class
    ids would invent classes along the edges), soft masks bilinearly. Large reductions (a 500 px
    photo to 128 px) are antialiased; zooming in after the cache never needs it."""
    image = resize_image(image, size, antialias)
    if mask_kind == "class":
        mask = tf.image.resize(mask, size, method="nearest")
    else:
        # Soft masks are already in [0, 1]; antialiasing sums float weights, so clip its
        # rounding error (1.0000004) back into range.
        mask = tf.clip_by_value(_bilinear(mask, size, antialias), 0.0, 1.0)
    image.set_shape([*size, 3])
    mask.set_shape([*size, 1])
    return image, mask


def _crop_and_flip(image, mask, seed, options: Augment):
    """The same random zoom-crop and flip on image and mask, from one stateless seed.

    The crop keeps ``1/scale`` of each side at a random place; resizing it afterwards zooms in.
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
    if options.flip:
        flip = tf.random.stateless_uniform([], flip_seed) < 0.5
        image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
        mask = tf.cond(flip, lambda: tf.reverse(mask, [1]), lambda: mask)
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


# ----------------------------------------------------------------------------------------------
# The pipeline


def make_dataset(
    source: SegmentationSet | TensorSource,
    *,
    image_size,
    batch_size: int,
    augment=False,
    shuffle: bool = False,
    seed: int | None = None,
    cache: bool | str = False,
    class_weights: Sequence[float] | None = None,
    num_outputs: int = 1,
    drop_remainder: bool = False,
    repeat: bool = False,
    validate: bool = True,
) -> tf.data.Dataset:
    """Build the batched ``tf.data.Dataset`` for ``model.fit`` / ``evaluate`` / ``predict``.

    Args:
        source: a ``SegmentationSet`` (files) or ``TensorSource`` (decoded tensors).
        image_size: ``int`` or ``(height, width)``; images are resized bilinearly, class masks
            with nearest neighbour, soft masks bilinearly.
        batch_size: examples per batch.
        augment: ``True`` (flip + zoom-crop in [1, 1.5]), an ``Augment`` or a dict of its fields.
            Different in every epoch, reproducible for a given ``seed``.
        shuffle: reshuffle the examples in every epoch.
        seed: seed of the shuffle and the augmentation; ``None`` draws one.
        cache: ``True`` keeps the decoded, resized examples in memory; a string caches them in
            that file. Augmentation comes after the cache, so it still changes every epoch
            (its zoom-crop is then taken from the resized image, not the full-size one).
        class_weights: one weight per class; adds per-pixel weights as a third element
            (0 for pixels labelled ``source.ignore_label``).
        num_outputs: for deep supervision, the mask is repeated as a tuple of this length.
        drop_remainder: drop the last, smaller batch.
        repeat: repeat forever (give ``steps_per_epoch`` to ``fit``).
        validate: check the files first (see ``seglab.data.check``) and raise a ``DataError``
            naming every bad file, instead of failing in the middle of training; the check's
            warnings (masks holding only 0 and 255) become ``UserWarning``s.

    Yields:
        ``(images, masks)`` or ``(images, masks, weights)``: images ``float32 (B, H, W, 3)``,
        RGB 0..255 (the models normalise their input themselves);
        masks ``int32 (B, H, W, 1)`` (class ids, and ``source.ignore_label`` where the stored
        mask holds it) or ``float32`` in [0, 1] (soft); weights
        ``float32 (B, H, W, 1)``. With ``num_outputs > 1`` masks (and weights) are tuples.
    """
    size = _image_size(image_size)
    if batch_size < 1 or num_outputs < 1:
        raise ValueError(
            f"batch_size and num_outputs must be positive, got {batch_size}, {num_outputs}"
        )
    options = _augment_options(augment)
    if class_weights is not None:
        if source.mask_kind != "class":
            raise ValueError(f"{source.name}: class_weights need class masks, not soft masks")
        if len(class_weights) != source.num_classes:
            raise ValueError(
                f"{source.name}: {len(class_weights)} class_weights for {source.num_classes} classes"
            )
    if seed is None and (shuffle or options is not None):
        seed = random.SystemRandom().randrange(2**31)

    if isinstance(source, SegmentationSet):
        if len(source) == 0:
            raise DataError(f"{source.root or source.name}: the dataset has no image/mask pairs")
        if validate:
            from seglab.data.check import check

            report = check(source)
            report.raise_if_problems()
            for warning in report.warnings:  # e.g. masks holding only 0 and 255
                warnings.warn(f"{source.name}: {warning}", UserWarning, stacklevel=2)
        count = len(source)
        dataset = tf.data.Dataset.from_tensor_slices(
            (list(source.image_paths), list(source.mask_paths))
        )
        encoding = None
        if source.mask_kind == "class":
            encoding = _common_mask_encoding(source.mask_paths)
        decode = functools.partial(load_pair, mask_kind=source.mask_kind, mask_encoding=encoding)
    elif isinstance(source, TensorSource):
        count = source.size
        dataset = source.dataset
        decode = None
    else:
        raise TypeError(
            f"source must be a SegmentationSet or TensorSource, got {type(source).__name__}"
        )

    mask_kind, offset, ignore_label = source.mask_kind, source.label_offset, source.ignore_label

    def prepare(*example):
        image, mask = decode(*example) if decode else example
        return image, _convert_mask(mask, mask_kind, offset, ignore_label)

    def shuffle_repeat_randomize(dataset):
        if shuffle:
            # File paths are shuffled before decoding, all in one buffer; decoded examples
            # (cached, or from a TensorSource) in a buffer of 1000, as the TF tutorials do.
            buffer = count if decode and not cache else min(count or 1000, 1000)
            dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            dataset = dataset.repeat()
        if options is None:
            return dataset
        # One random number per example, new in every epoch, the same for the same seed.
        randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        return tf.data.Dataset.zip(dataset, randoms)

    def augment_and_resize(example, random=None):
        image, mask = example
        if random is not None:
            seed_pair = tf.stack([random, tf.constant(0, tf.int64)])
            image, mask = _crop_and_flip(image, mask, seed_pair, options)
        return _resize(image, mask, size, mask_kind)

    def augment_cached(example, random):
        """After the cache examples have the output size: flipping needs no resampling, and
        zooming in needs no antialiasing."""
        image, mask = _crop_and_flip(
            *example, tf.stack([random, tf.constant(0, tf.int64)]), options
        )
        if options.scale[1] <= 1.0:
            return image, mask
        return _resize(image, mask, size, mask_kind, antialias=False)

    if cache:
        # Cache the resized examples; augmentation then works at the output size, every epoch anew.
        dataset = dataset.map(
            lambda *example: _resize(*prepare(*example), size, mask_kind),
            num_parallel_calls=AUTOTUNE,
        )
        dataset = shuffle_repeat_randomize(dataset.cache(cache if isinstance(cache, str) else ""))
        if options is not None:
            dataset = dataset.map(augment_cached, num_parallel_calls=AUTOTUNE)
    else:
        # One map from file to output: the zoom-crop is taken from the full-size image, so each
        # example is resized once.
        dataset = shuffle_repeat_randomize(dataset)
        if options is None:
            dataset = dataset.map(
                lambda *example: augment_and_resize(prepare(*example)), num_parallel_calls=AUTOTUNE
            )
        else:
            dataset = dataset.map(
                lambda example, random: augment_and_resize(prepare(*example), random),
                num_parallel_calls=AUTOTUNE,
            )

    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    weights = None
    if class_weights is not None:
        weights = add_sample_weights(class_weights, ignore_label)

    def finish(images, masks):
        images = tf.cast(images, tf.float32)
        extra = weights(images, masks)[2:] if weights else ()
        if num_outputs > 1:
            masks = (masks,) * num_outputs
            extra = tuple((w,) * num_outputs for w in extra)
        return (images, masks, *extra)

    dataset = dataset.map(finish, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
