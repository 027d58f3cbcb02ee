"""Stand-ins for keras.applications' ImageNet weight files, made from random initialisation.

The README's route for offline users is to copy the weights file into the Keras cache
(``$KERAS_HOME/models/<file name>``). The full-path rehearsal does the same with files of the
right format (legacy Keras HDF5 weights, as keras.applications publishes them) and the right
names, so the real loading code runs without the network. Their hashes differ from the
published ones: register them (``seglab.data.download.register_file_hash`` or
``SEGLAB_DOWNLOAD_HASHES``) so the hash check accepts them.
"""

from __future__ import annotations

import os
from pathlib import Path

# keras.applications' headless ("no top") file names (keras/src/applications/*.py).
_MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)


def imagenet_file_name(backbone: str, input_shape=(224, 224, 3)) -> str:
    """The name keras.applications (and seglab's backbones) look for in ``models/``."""
    if backbone == "mobilenetv2":
        rows, cols = input_shape[0], input_shape[1]
        size = rows if rows == cols and rows in _MOBILENET_V2_SIZES else 224
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"
    if backbone == "resnet50":
        return "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    raise ValueError(f"no stand-in for backbone {backbone!r}; known: mobilenetv2, resnet50")


def write_random_imagenet_weights(
    models_dir: str | os.PathLike, backbone: str, input_shape=(224, 224, 3), seed: int = 0
) -> Path:
    """Write the headless ``backbone``'s weights file, randomly initialised, into
    ``models_dir``; returns its path."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    constructors = {
        "mobilenetv2": keras.applications.MobileNetV2,
        "resnet50": keras.applications.ResNet50,
    }
    path = Path(models_dir) / imagenet_file_name(backbone, input_shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    model = constructors[backbone](include_top=False, weights=None, input_shape=tuple(input_shape))
    with h5py.File(path, "w") as file:
        # The layout keras.applications' own files have: weights only, by layer name.
        legacy_h5_format.save_weights_to_hdf5_group(file, model)
    return path
