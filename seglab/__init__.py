"""seglab: the helper package of a notebook course on image segmentation with Keras 3.

Submodules are imported on demand so that, for example, ``import seglab.models`` does not
import TensorFlow (the models, losses and metrics run on any Keras 3 backend).
"""

import importlib

__version__ = "0.2.0"

_SUBMODULES = (
    "data",
    "models",
    "losses",
    "metrics",
    "display",
    "recipes",
    "training",
    "predict",
    "course",
    "cli",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'seglab' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
