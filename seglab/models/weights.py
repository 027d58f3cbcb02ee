"""``weights=`` of every constructor: what a whole trained model starts from.

One vocabulary for all families (as in segmentation_models): ``encoder_weights`` says how
the backbone starts (``"imagenet"``, ``None`` or a file), ``weights`` how the whole model
starts: ``None``, a ``.keras`` or ``.weights.h5`` file of a seglab model of the same
configuration, or what a family supports besides (the official U²-Net ``.pth`` checkpoints,
keras-hub's ``basnet_duts`` preset).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from seglab.errors import PathNotFoundError


def weights_loader(weights, converters: Mapping[str, tuple] | None = None) -> Callable:
    """Check ``weights`` now (before a large model is built) and return ``load(model)``,
    which loads them into the model and returns it.

    Args:
        weights: ``None`` (nothing to load), a ``.keras`` / ``.weights.h5`` file, or what one
            of ``converters`` accepts.
        converters: a family's own weights, ``{description: (accepts(text), load(model,
            text))}`` (see ``seglab.models.u2net`` and ``seglab.models.basnet``).
    """
    if weights is None:
        return lambda model: model
    converters = dict(converters or {})
    text = os.fspath(weights)
    for accepts, convert in converters.values():
        if accepts(text):
            return functools.partial(_load_converted, convert, text)
    path = Path(text).expanduser()
    if not text.endswith((".keras", ".weights.h5", ".h5")):
        known = ", ".join(converters) or "none"
        raise ValueError(
            f"unknown weights {text!r}: give None, a .keras or .weights.h5 file of the same "
            f"model, or one of this family's own weights ({known})"
        )
    if not path.is_file():
        raise PathNotFoundError(path, "weights file not found")

    def load_file(model):
        try:
            model.load_weights(path)
        except Exception as error:
            raise ValueError(
                f"{path}: cannot load these weights into {model.name} ({error}). The file must "
                "come from a model of the same family and configuration (classes, head, "
                "width)."
            ) from error
        return model

    return load_file


def _load_converted(convert, text, model):
    convert(model, text)
    return model
