"""Datasets and the tf.data input pipeline.

Names are imported on first use, so ``import seglab.data`` is cheap (no TensorFlow until the
pipeline is needed) and a dataset module that fails to import breaks only its own names.
"""

import importlib
import importlib.util

# The function `check` shares its name with its module: importing it here binds the name to
# the function before anything imports the module (which would bind it to the module).
from seglab.data.check import check  # noqa: F401  (numpy and PIL only, no TensorFlow)

_EXPORTS = {
    "seglab.data.sets": (
        "DataError",
        "Problem",
        "SegmentationSet",
        "TensorSource",
        "pair_by_stem",
    ),
    "seglab.data.pipeline": (
        "Augment",
        "add_sample_weights",
        "class_frequencies",
        "decode_image",
        "decode_mask",
        "load_pair",
        "make_dataset",
        "resize_image",
    ),
    "seglab.data.check": (
        "CheckReport",
        "LAYOUTS",
        "check_folder",
        "detect_layout",
        "read_mask",
    ),
    "seglab.data.paddleseg": ("load_list_file", "load_paddleseg", "write_split"),
    "seglab.data.folders": ("load_paired_folder",),
    "seglab.data.synthetic": ("make_synthetic_multiclass", "make_synthetic_salient"),
    "seglab.data.download": (
        "download_and_extract",
        "download_mirror",
        "register_file_hash",
        "set_download_mirror",
    ),
    "seglab.data.bbbc038": ("BBBC038_CLASS_NAMES", "load_bbbc038", "prepare_bbbc038"),
    "seglab.data.pets": ("load_oxford_pets", "load_oxford_pets_tfds"),
    "seglab.data.duts": ("download_duts_te", "load_duts_te"),
    "seglab.data.cihp": ("CIHP_CLASS_NAMES", "download_cihp", "load_cihp", "load_cihp_colormap"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

# `from seglab.data import *` takes only names whose module is present.
__all__ = sorted(
    [name for name, module in _MODULE_OF.items() if importlib.util.find_spec(module)] + ["check"]
)


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'seglab.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF))
