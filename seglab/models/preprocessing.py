"""Image normalisation inside the model: every seglab model takes RGB pixels 0..255.

Keeping the normalisation in the model (as keras-hub's image converters do) means a saved
``.keras`` file, an exported SavedModel/TFLite/ONNX file and ``seglab predict`` all need
nothing but the model: no one has to remember how the training pipeline scaled the images.
"""

import keras
from keras import ops

# ImageNet statistics of torchvision (the official U²-Net test script uses them).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# keras.applications.resnet50.preprocess_input ("caffe"): RGB -> BGR, minus these means.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

NORMALIZATIONS = {
    "unit": "x / 255, in [0, 1]",
    "mobilenet": "x / 127.5 - 1, in [-1, 1] (keras.applications.mobilenet_v2)",
    "resnet": "RGB to BGR minus the ImageNet means (keras.applications.resnet50, 'caffe')",
    "imagenet": "(x / 255 - mean) / std with the ImageNet statistics (torchvision)",
    "u2net_official": "x / max(x) per image, then ImageNet mean/std (the official U²-Net test "
    "script)",
}


def check_normalization(mode):
    if mode not in NORMALIZATIONS:
        choices = ", ".join(repr(name) for name in NORMALIZATIONS)
        raise ValueError(f"normalization must be one of {choices} or None, got {mode!r}")
    return mode


@keras.saving.register_keras_serializable(package="seglab")
class ImagePreprocessing(keras.layers.Layer):
    """RGB pixel values 0..255 (any float or integer dtype) → the input a network expects.

    Args:
        mode: one of ``NORMALIZATIONS``.
    """

    def __init__(self, mode="unit", **kwargs):
        super().__init__(**kwargs)
        self.mode = check_normalization(mode)

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "mobilenet":
            return x / 127.5 - 1.0
        if self.mode == "resnet":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(CAFFE_MEAN_BGR, x.dtype)
        if self.mode == "u2net_official":
            # Divide by the image's own maximum (never 0: a black image stays black).
            top = ops.max(x, axis=(1, 2, 3), keepdims=True)
            x = x / ops.maximum(top, 1e-6)
        else:
            x = x / 255.0
        mean = ops.convert_to_tensor(IMAGENET_MEAN, x.dtype)
        std = ops.convert_to_tensor(IMAGENET_STD, x.dtype)
        return (x - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def preprocessing_of(model):
    """The model's ``ImagePreprocessing`` layer, or ``None`` when it takes normalised input."""
    for layer in model.layers:
        if isinstance(layer, ImagePreprocessing):
            return layer
    return None


def image_input(input_shape, normalization):
    """``(inputs, x)``: the model's 0..255 image input and the normalised tensor after it."""
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    if normalization is None:
        return inputs, inputs
    return inputs, ImagePreprocessing(check_normalization(normalization), name="preprocessing")(
        inputs
    )
