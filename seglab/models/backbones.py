"""keras.applications backbones, with an offline-friendly error for ImageNet weights.

``build_backbone("mobilenetv2", input_shape=(128, 128, 3), weights="imagenet")`` returns the
headless ``keras.applications`` model. ``weights`` is ``"imagenet"``, ``None`` (random
initialisation) or the path of a weights file.

For ``"imagenet"`` the weights file is fetched here, with ``keras.utils.get_file`` into the same
cache Keras uses (``~/.keras/models/<file name>``, or ``$KERAS_HOME/models``), before the model is
built. A file already in the cache is used without a download, so on a machine with no internet
the file can be copied there by hand. When the download fails, ``WeightsDownloadError`` says
which file was wanted, where to put it, and that ``weights=None`` trains from scratch.
"""

import os

import keras

from seglab.errors import SeglabError, SettingError

# Same files, addresses and hashes as keras.applications uses for the headless models.
_MOBILENET_V2_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
_RESNET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# keras.applications.MobileNetV2 has ImageNet weights for these square sizes; any other size
# gets the 224 file (the convolutions do not depend on the input size).
_MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)


class WeightsDownloadError(SeglabError, RuntimeError):
    """The pretrained weights of a backbone could not be downloaded."""


_CONSTRUCTORS = {
    "mobilenetv2": keras.applications.MobileNetV2,
    "resnet50": keras.applications.ResNet50,
}
BACKBONES = tuple(_CONSTRUCTORS)

# (base address, md5 hash or None) of the ImageNet files, as in keras.applications.
_IMAGENET_SOURCES = {
    "mobilenetv2": (_MOBILENET_V2_URL, None),
    "resnet50": (_RESNET_URL, "4d473c1dd8becc155b73f8504c6f6626"),
}


def _imagenet_file_name(key, input_shape, alpha=1.0):
    if key == "mobilenetv2":
        rows, cols = input_shape[0], input_shape[1]
        size = rows if rows == cols and rows in _MOBILENET_V2_SIZES else 224
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{size}_no_top.h5"
    return f"{key}_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _keras_cache_dir():
    """The folder ``keras.utils.get_file`` caches into (it falls back to /tmp if unwritable)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    if not os.access(home, os.W_OK):
        home = os.path.join("/tmp", ".keras")
    return home


def backbone_key(name, supported=BACKBONES):
    """Normalise a backbone name ("MobileNetV2", "mobilenet_v2" -> "mobilenetv2") or raise."""
    key = str(name).lower().replace("_", "").replace("-", "")
    if key not in supported:
        raise ValueError(f"Unknown backbone {name!r}. Supported backbones: {', '.join(supported)}.")
    return key


def imagenet_weights_path(name, input_shape, alpha=1.0):
    """Return the local path of the ImageNet weights of backbone ``name`` (MobileNetV2: of
    width ``alpha``), downloading if needed.

    Raises ``WeightsDownloadError`` (naming the file and the cache folder) when the file is not
    cached and cannot be downloaded.
    """
    key = backbone_key(name)
    base_url, file_hash = _IMAGENET_SOURCES[key]
    file_name = _imagenet_file_name(key, input_shape, alpha)
    cache_dir = _keras_cache_dir()
    target = os.path.join(cache_dir, "models", file_name)
    # The download mirror and pinned hashes of seglab.data apply to weights files too.
    from seglab.data.download import resolve_download

    source = resolve_download(base_url + file_name, file_name=file_name, file_hash=file_hash)
    try:
        return keras.utils.get_file(
            file_name,
            source.url,
            cache_subdir="models",
            file_hash=source.file_hash,
            cache_dir=cache_dir,
        )
    except Exception as error:  # get_file raises a bare Exception for network failures
        raise WeightsDownloadError(
            f"Could not download the ImageNet weights of the {key} backbone "
            f"({source.url}): {error}\n"
            f"Keras caches this file as {target}. On a machine without internet, download it "
            "elsewhere and copy it there by hand (the folder is $KERAS_HOME/models when "
            "KERAS_HOME is set); a copy whose checksum differs from the official file is "
            "deleted unless its hash is registered (seglab.data.register_file_hash). Or pass "
            "encoder_weights=None to train the backbone from scratch, or "
            "encoder_weights='/path/to/file.h5' to load a local file."
        ) from error


def build_backbone(name, *, input_shape=None, input_tensor=None, weights="imagenet", alpha=1.0):
    """Build the headless (``include_top=False``) keras.applications model ``name``.

    Args:
        name: ``"mobilenetv2"`` or ``"resnet50"`` (case-insensitive).
        input_shape: ``(height, width, channels)``; taken from ``input_tensor`` when omitted.
        input_tensor: optional ``keras.Input`` the backbone is built on.
        weights: ``"imagenet"``, ``None`` (random initialisation) or the path of a weights file.
        alpha: MobileNetV2's width multiplier (``keras.applications.MobileNetV2(alpha=...)``;
            ImageNet weights exist for 0.35, 0.5, 0.75, 1.0, 1.3 and 1.4). Other backbones: 1.0.

    Raises:
        ValueError: unknown backbone, or ``weights`` is neither ``"imagenet"``, ``None`` nor a
            path.
        FileNotFoundError: ``weights`` is a path that does not exist.
        WeightsDownloadError: ImageNet weights not cached and not downloadable.
    """
    key = backbone_key(name)
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    if input_shape is None:
        raise ValueError("build_backbone needs input_shape or input_tensor.")
    input_shape = tuple(input_shape)
    options = {}
    if key == "mobilenetv2":
        options["alpha"] = float(alpha)
    elif alpha != 1.0:
        raise ValueError(
            f"alpha (width multiplier) is for mobilenetv2 only; got {alpha!r} for {key}."
        )

    if weights == "imagenet":
        weights = imagenet_weights_path(key, input_shape, alpha)
    elif weights is not None:
        if not isinstance(weights, (str, os.PathLike)):
            raise ValueError(
                f"weights must be 'imagenet', None or the path of a weights file; got {weights!r}."
            )
        weights = os.fspath(weights)
        if not os.path.isfile(weights):
            raise FileNotFoundError(
                f"Weights file for the {key} backbone not found: {weights} (weights must be "
                "'imagenet', None or the path of a weights file)."
            )

    return _CONSTRUCTORS[key](
        include_top=False,
        weights=weights,
        input_shape=input_shape,
        input_tensor=input_tensor,
        **options,
    )


def check_input_shape(input_shape, multiple_of, model_name):
    """Check ``(height, width, channels)``: sides ``None`` or positive multiples of ``multiple_of``.

    The encoders halve the image ``log2(multiple_of)`` times and the decoders concatenate
    feature maps of matching sizes, so other sizes fail deep inside the graph; say so up front.
    """
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise SettingError(
            f"{model_name}: input_shape must be (height, width, channels); got {input_shape!r}."
        )
    height, width, channels = shape
    if channels is None or int(channels) < 1:
        raise SettingError(
            f"{model_name}: the number of channels must be given; got {input_shape!r}."
        )
    for side in (height, width):
        if side is not None and (int(side) < multiple_of or int(side) % multiple_of):
            raise SettingError(
                f"{model_name}: input height and width must be multiples of {multiple_of} "
                f"(the encoder's output stride); got input_shape={input_shape!r}. Resize or pad "
                f"the images, e.g. to {max(multiple_of, round(int(side) / multiple_of) * multiple_of)}."
            )
    return shape
