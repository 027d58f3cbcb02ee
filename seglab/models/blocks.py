"""Small layers shared by several architectures."""

import keras
from keras import layers, ops


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
        shape = ops.shape(reference)
        return ops.image.resize(
            source, size=(shape[1], shape[2]), interpolation=self.interpolation
        )

    def compute_output_shape(self, input_shape):
        source_shape, reference_shape = input_shape
        return (source_shape[0], reference_shape[1], reference_shape[2], source_shape[-1])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}
