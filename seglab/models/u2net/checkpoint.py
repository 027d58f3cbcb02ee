"""The official U²-Net / U²-NetP PyTorch checkpoints, read and loaded without PyTorch.

The authors publish ``u2net.pth`` (176.3 MB, U²-Net) and ``u2netp.pth`` (4.7 MB, U²-NetP),
linked from the README of https://github.com/xuebinqin/U-2-Net (the official code expects
them in ``saved_models/u2net/`` and ``saved_models/u2netp/``). Both are the state dict of the
salient-object model (``U2NET(3, 1)`` / ``U2NETP(3, 1)``), saved with ``torch.save``.

- :func:`read_torch_checkpoint` (``seglab.models.torch_checkpoint``) reads a state dict into
  NumPy arrays, without PyTorch and without running code from the file.
- :func:`load_official_weights` puts the arrays into a ``seglab.models.u2net`` / ``u2netp``
  model. The body (the eleven RSU stages) must match exactly. The head (``side1`` …
  ``side6``, ``outconv``) is loaded when the model has the paper's head (``head="salient"``,
  one class); a model with another head (``head="multiclass"``, or other ``num_classes``)
  gets the body only and keeps its freshly initialised head, with a warning: that is
  fine-tuning the official weights on new classes.
- :func:`is_torch_checkpoint` tells a PyTorch checkpoint from Keras weight files, so
  ``u2net(weights="u2net.pth")`` can route it here.

Preprocessing: the official test script (``u2net_test.py``) resizes the image to 320×320,
divides it by the image's maximum, then subtracts the ImageNet mean (0.485, 0.456, 0.406) and
divides by the ImageNet std (0.229, 0.224, 0.225). The models' ``normalization=
"u2net_official"`` does the same inside the model, so feed 0..255 images resized to 320×320.
The script keeps the first output (the fused map) and rescales it to [0, 1] per image
(min-max) before saving it.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping

import numpy as np

from seglab.models.torch_checkpoint import (
    is_torch_checkpoint,
    read_torch_checkpoint,
    unwrap_state_dict,
)
from seglab.models.u2net.rsu import RSU

__all__ = ["read_torch_checkpoint", "is_torch_checkpoint", "load_official_weights"]

# Official REBNCONV parameter -> (seglab sublayer, variable) of ConvBNReLU.
_UNIT_VARIABLES = {
    "conv_s1.weight": ("conv", "kernel"),
    "conv_s1.bias": ("conv", "bias"),
    "bn_s1.weight": ("bn", "gamma"),
    "bn_s1.bias": ("bn", "beta"),
    "bn_s1.running_mean": ("bn", "moving_mean"),
    "bn_s1.running_var": ("bn", "moving_variance"),
}
_SIDE_CONV = re.compile(r"side([1-6])_conv")
_HEAD_KEY = re.compile(r"(side[1-6]|outconv)\.")


def _official_targets(model):
    """{official key: Keras variable} for the body and for the head of a seglab U²-Net."""
    body, head = {}, {}
    for layer in model.layers:
        if isinstance(layer, RSU):
            for unit in (layer.input_unit, *layer.encoder_units, *layer.decoder_units):
                # seglab conv_in / conv3 / conv3d are REBNCONV rebnconvin / rebnconv3 / ...3d.
                unit_key = "rebnconvin" if unit is layer.input_unit else f"rebn{unit.name}"
                for parameter, (sublayer, variable) in _UNIT_VARIABLES.items():
                    key = f"{layer.name}.{unit_key}.{parameter}"
                    body[key] = getattr(getattr(unit, sublayer), variable)
            continue
        side = _SIDE_CONV.fullmatch(layer.name)
        if side or layer.name == "fuse_conv":
            module = f"side{side.group(1)}" if side else "outconv"
            head[f"{module}.weight"] = layer.kernel
            head[f"{module}.bias"] = layer.bias
    return body, head


def _to_keras(key, array):
    """PyTorch layout to Keras layout: conv weights (out, in, kh, kw) -> (kh, kw, in, out)."""
    array = np.asarray(array)
    if array.ndim == 4 and key.endswith(".weight"):
        return array.transpose(2, 3, 1, 0)
    return array


def _describe_variant(width):
    return {32: "U²-Net (u2net.pth)", 16: "U²-NetP (u2netp.pth)"}.get(
        width, f"an RSU network with {width} mid channels"
    )


def _shape_mismatches(targets, state):
    """'key: checkpoint (shape), model (shape)' for each differing shape, in PyTorch layout."""
    problems = []
    for key, variable in targets.items():
        if key not in state or _to_keras(key, state[key]).shape == tuple(variable.shape):
            continue
        model_shape = tuple(variable.shape)
        if len(model_shape) == 4:  # show both in PyTorch's (out, in, kh, kw)
            model_shape = tuple(model_shape[i] for i in (3, 2, 0, 1))
        problems.append(f"{key}: checkpoint {np.shape(state[key])}, model {model_shape}")
    return problems


def _list(items, limit=8):
    shown = "; ".join(items[:limit])
    return shown + (f"; … and {len(items) - limit} more" if len(items) > limit else "")


def load_official_weights(model, checkpoint, *, load_head=None):
    """Loads an official U²-Net / U²-NetP checkpoint into a seglab ``u2net`` / ``u2netp``.

    Args:
        model: a model from ``seglab.models.u2net`` or ``u2netp`` (any input size).
        checkpoint: a checkpoint file (``u2net.pth``, ``u2netp.pth``, either PyTorch format)
            or a state dict already read (``{name: array}`` in PyTorch's layout).
        load_head: whether the side convolutions and the fusion conv are loaded too.
            ``None`` (default): when the model's head has the checkpoint's shapes (the
            salient head with one class); otherwise the body alone is loaded and a warning
            names the head layers left as initialised, ready to be fine-tuned on new classes
            (e.g. ``head="multiclass", num_classes=2``). ``True``: the head must match, else
            ``ValueError``. ``False``: never load the head (no warning).

    Returns:
        The model, its weights replaced (nothing changes when an error is raised).

    Raises:
        ValueError: the checkpoint does not fit the model: keys the model lacks, model
            weights the checkpoint lacks, or shapes that differ (e.g. ``u2net.pth`` into a
            ``u2netp``); the message names the keys.
    """
    source = checkpoint if isinstance(checkpoint, Mapping) else None
    if source is None:
        state = read_torch_checkpoint(checkpoint)
        source = os.fspath(checkpoint)
    else:
        arrays = {key: np.asarray(value) for key, value in checkpoint.items()}
        state = unwrap_state_dict(arrays, "the state dict")
        source = "the state dict"
    body, head = _official_targets(model)
    if not body:
        raise ValueError(
            f"model {model.name!r} has no RSU stages: official U²-Net weights load into "
            "seglab.models.u2net / u2netp models only"
        )
    covered = {id(variable) for variable in (*body.values(), *head.values())}
    unset = [v.path for v in model.weights if id(v) not in covered]
    if unset:
        raise ValueError(
            f"model {model.name!r} has weights the official checkpoint cannot set: "
            f"{_list(unset)}; is it a seglab U²-Net?"
        )

    # num_batches_tracked only counts training steps; Keras keeps no such counter.
    loaded = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}
    checkpoint_head = {k for k in loaded if _HEAD_KEY.match(k)}
    unexpected = sorted(set(loaded) - set(body) - checkpoint_head)
    missing = sorted(set(body) - set(loaded))
    problems = [f"Keys the model does not have: {_list(unexpected)}."] if unexpected else []
    if missing:
        problems.append(f"Model weights missing from the checkpoint: {_list(missing)}.")
    mismatched = _shape_mismatches(body, loaded)
    if mismatched:
        problems.append(f"Shapes that differ ({len(mismatched)}): {_list(mismatched)}.")
    if problems:
        hint = ""
        checkpoint_width = np.shape(loaded.get("stage1.rebnconv1.conv_s1.weight", ()))[:1]
        model_key = "stage1.rebnconv1.conv_s1.weight"
        if checkpoint_width and model_key in body:
            model_width = body[model_key].shape[-1]
            if checkpoint_width[0] != model_width:
                hint = (
                    f" The checkpoint is {_describe_variant(checkpoint_width[0])} but the model "
                    f"is {_describe_variant(model_width)}: build the matching model "
                    "(seglab.models.u2net for u2net.pth, u2netp for u2netp.pth)."
                )
        raise ValueError(f"{source} does not fit model {model.name!r}.{hint} " + " ".join(problems))

    assignments = dict(body)
    if load_head is not False:
        head_problems = (
            [f"{key} not in the checkpoint" for key in sorted(set(head) - checkpoint_head)]
            + [f"{key} not in the model" for key in sorted(checkpoint_head - set(head))]
            + _shape_mismatches(head, loaded)
        )
        if not head_problems:
            assignments.update(head)
        elif load_head:
            raise ValueError(
                f"{source}: the head does not fit model {model.name!r} (it fits a salient "
                f"head with one class): {_list(head_problems)}"
            )
        else:
            warnings.warn(
                f"{source}: loaded the body of {model.name!r} only; its head (side1_conv … "
                "side6_conv, fuse_conv) differs from the checkpoint's one-class salient head "
                f"({_list(head_problems, limit=2)}) and keeps its fresh initialisation, to be "
                "trained (fine-tuning). Pass load_head=False to silence this warning.",
                UserWarning,
                stacklevel=2,
            )
    for key, variable in assignments.items():
        variable.assign(_to_keras(key, loaded[key]).astype(variable.dtype))
    return model
