"""Decoding image and mask files by content, not by file extension: JPEG/PNG/GIF/BMP
images as RGB, class masks keeping their stored ids (palette indices, 16-bit values), soft
masks as grey levels."""

from __future__ import annotations

import io

import numpy as np
import tensorflow as tf

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE = 3  # IHDR colour type of a palette ("P" mode) PNG


# ----------------------------------------------------------------------------------------------
# Decoding (by content, not by file extension)


def decode_image(data: tf.Tensor) -> tf.Tensor:
    """Encoded bytes (JPEG, PNG, GIF, BMP, WebP) → ``uint8 (H, W, 3)``.

    Grayscale becomes RGB, alpha is dropped, 16-bit PNGs are scaled to 8 bits and an animated
    GIF gives its first frame. JPEGs use the accurate integer IDCT, as PIL does in
    ``seglab.predict.read_image``: TensorFlow's default (the fast one) differs from it by up to
    19 grey levels, so training and prediction would see different pixels; the cost is ~4 %.
    """
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False),
    )
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


def common_mask_encoding(mask_paths) -> str | None:
    """The encoding shared by all these class masks, or None when they differ (or are unreadable)."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            encodings = set(pool.map(mask_encoding, mask_paths))
    except OSError:
        return None
    return encodings.pop() if len(encodings) == 1 else None
