"""Small layers shared by several architectures."""

import keras
from keras import layers, ops


def bilinear_resize(images, height, width):
    """Half-pixel bilinear resize of ``(B, H, W, C)`` to run-time ``height`` x ``width``.

    Same values as ``tf.image.resize`` (no antialiasing) and PyTorch's
    ``F.interpolate(..., mode="bilinear", align_corners=False)``. Keras 3.15's
    ``ops.image.resize`` checks the size in Python, which fails on sizes that a TensorFlow
    graph knows only at run time (keras-team/keras#22079), so free-size models use this.
    """
    shape = ops.shape(images)
    y0, y1, fy = _source_coordinates(height, shape[1], images.dtype)
    x0, x1, fx = _source_coordinates(width, shape[2], images.dtype)
    top, bottom = ops.take(images, y0, axis=1), ops.take(images, y1, axis=1)
    rows = top + (bottom - top) * ops.reshape(fy, (1, -1, 1, 1))
    left, right = ops.take(rows, x0, axis=2), ops.take(rows, x1, axis=2)
    return left + (right - left) * ops.reshape(fx, (1, 1, -1, 1))


def _source_coordinates(out_size, in_size, dtype):
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    source = (ops.cast(ops.arange(out_size), "float32") + 0.5) * scale - 0.5
    source = ops.maximum(source, 0.0)
    lower = ops.floor(source)
    fraction = ops.cast(source - lower, dtype)
    lower = ops.minimum(ops.cast(lower, "int32"), in_size - 1)
    upper = ops.minimum(lower + 1, in_size - 1)
    return lower, upper, fraction


@keras.saving.register_keras_serializable(package="seglab")
class ResizeLike(layers.Layer):
    """Resizes ``inputs[0]`` to the spatial size of ``inputs[1]`` (bilinear by default).

    Unlike ``keras.layers.Resizing`` the target size is read at run time, so models built
    with a free input size (``(None, None, 3)``) or with sides that are not multiples of 32
    upsample to exactly the skip connection's size. Bilinear resizing here uses half-pixel
    centres, which matches PyTorch's ``F.interpolate(..., align_corners=False)``.
    """

    def __init__(self, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        self.interpolation = interpolation

    def call(self, inputs):
        source, reference = inputs
        height, width = reference.shape[1], reference.shape[2]
        if height is not None and width is not None:
            return ops.image.resize(source, (height, width), interpolation=self.interpolation)
        shape = ops.shape(reference)  # known only at run time (free input size)
        if self.interpolation == "bilinear":
            return bilinear_resize(source, shape[1], shape[2])
        return ops.image.resize(source, (shape[1], shape[2]), interpolation=self.interpolation)

    def compute_output_shape(self, input_shape):
        source_shape, reference_shape = input_shape
        return (source_shape[0], reference_shape[1], reference_shape[2], source_shape[-1])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}
