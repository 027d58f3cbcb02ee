"""The one input pipeline: decode, resize, augment, batch.

Files (``SegmentationSet``) are decoded by content; from there on, files and decoded tensors
(``TensorSource``, e.g. tensorflow-datasets) go through the same ``convert_mask``,
``crop_and_flip`` and ``resize_pair`` (``seglab.data.transforms``), so the same image gives the same tensors by either route.
Images stay RGB 0..255: every seglab model normalises its input itself
(``seglab.models.preprocessing``), and ``resize_image`` is also what ``seglab predict`` uses,
so training and prediction see the same pixels.
"""

from __future__ import annotations

import functools
import random
import warnings
from collections.abc import Sequence

import tensorflow as tf

from seglab.data.decoding import (  # noqa: F401  (public names of the pipeline, as before)
    common_mask_encoding,
    decode_image,
    decode_mask,
    load_pair,
    mask_encoding,
)
from seglab.data.sets import DataError, SegmentationSet, TensorSource
from seglab.data.transforms import (  # noqa: F401
    Augment,
    add_sample_weights,
    augment_options,
    class_frequencies,
    convert_mask,
    crop_and_flip,
    resize_image,
    resize_pair,
    size_pair,
)

AUTOTUNE = tf.data.AUTOTUNE

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
    size = size_pair(image_size)
    if batch_size < 1 or num_outputs < 1:
        raise ValueError(
            f"batch_size and num_outputs must be positive, got {batch_size}, {num_outputs}"
        )
    options = augment_options(augment)
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
            encoding = common_mask_encoding(source.mask_paths)
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

    def decoded(*example):
        return decode(*example) if decode else example

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

    def resize(image, mask):
        # The mask is converted after resizing: a 288 px mask has half the pixels of a photo.
        image, mask = resize_pair(image, mask, size, mask_kind)
        return image, convert_mask(mask, mask_kind, offset, ignore_label)

    def augment_and_resize(example, random=None):
        if random is None:
            return resize(*example)
        seed_pair = tf.stack([random, tf.constant(0, tf.int64)])
        return crop_and_flip(*example, seed_pair, options, resize=resize)

    def zoom_cached(image, mask):
        image, mask = resize_pair(image, mask, size, mask_kind, antialias=False)
        if mask_kind == "soft":  # float rounding may step past 1 by an ulp
            mask = tf.clip_by_value(mask, 0.0, 1.0)
        return image, mask

    def augment_cached(example, random):
        """After the cache examples have the output size: flipping needs no resampling, and
        zooming in needs no antialiasing."""
        seed_pair = tf.stack([random, tf.constant(0, tf.int64)])
        zoom = zoom_cached if options.scale[1] > 1.0 else None
        return crop_and_flip(*example, seed_pair, options, resize=zoom)

    if cache:
        # Cache the resized examples; augmentation then works at the output size, every epoch anew.
        dataset = dataset.map(
            lambda *example: resize(*decoded(*example)), num_parallel_calls=AUTOTUNE
        )
        dataset = shuffle_repeat_randomize(dataset.cache(cache if isinstance(cache, str) else ""))
        if options is not None:
            dataset = dataset.map(augment_cached, num_parallel_calls=AUTOTUNE)
    else:
        # One map from file to output: the zoom-crop is taken from the full-size image, so each
        # example is resized once, and the flip mirrors the resized pair.
        dataset = shuffle_repeat_randomize(dataset)
        if options is None:
            dataset = dataset.map(
                lambda *example: augment_and_resize(decoded(*example)), num_parallel_calls=AUTOTUNE
            )
        else:
            dataset = dataset.map(
                lambda example, random: augment_and_resize(decoded(*example), random),
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
