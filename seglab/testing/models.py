"""The checks every model family's tests share: ``.keras`` round trip, mixed precision,
parameter counts and the JAX backend. Each family's test file calls them with its own model.

Forward passes are eager calls (``model(x, training=False)``): tracing ``predict``'s graph of
a deep model costs more than the test on a 2-core CPU.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable

import keras
import numpy as np


def random_images(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Random float32 RGB images with values 0..255, what every seglab model takes."""
    rng = np.random.default_rng(seed)
    return rng.random((count, height, width, 3), dtype=np.float32) * 255.0


def outputs_of(model, images, training: bool = False) -> list[np.ndarray]:
    """The model's outputs on ``images`` as a list of numpy arrays (one item for one output)."""
    outputs = model(images, training=training)
    if not isinstance(outputs, list | tuple):
        outputs = [outputs]
    return [keras.ops.convert_to_numpy(output) for output in outputs]


def small_segmentation_net(num_classes, input_shape, normalization="unit", weights=None):
    """Two convolutions with batch norm and seglab's input and output layers: a stand-in model
    constructor for training-loop tests and benchmarks (batch statistics included)."""
    from seglab.models.heads import SegmentationOutput
    from seglab.models.preprocessing import image_input

    inputs, x = image_input(input_shape, normalization)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(num_classes, 1)(x)
    return keras.Model(inputs, SegmentationOutput("linear")(x))


def count_parameters(variables) -> int:
    return sum(int(np.prod(variable.shape)) for variable in variables)


def check_parameter_counts(model, *, total=None, trainable=None, non_trainable=None) -> None:
    """The model's parameter counts are the reference's (``None``: not checked)."""
    found = {
        "total": model.count_params(),
        "trainable": count_parameters(model.trainable_weights),
        "non_trainable": count_parameters(model.non_trainable_weights),
    }
    expected = {"total": total, "trainable": trainable, "non_trainable": non_trainable}
    wrong = {k: (found[k], v) for k, v in expected.items() if v is not None and found[k] != v}
    assert not wrong, f"parameter counts (found, expected): {wrong}"


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy set to ``name`` inside the block, restored after it."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def check_keras_round_trip(model, images, path, *, rtol: float = 0.0, atol: float = 0.0):
    """Save ``model`` to ``path`` (``.keras``), load it back and compare: same outputs (exactly
    by default), output names, parameter counts and trainable flags. Returns the loaded model.

    Batch-norm statistics are moved off their initial values first (one training-mode call),
    so that they have to survive the trip too.
    """
    model(images, training=True)
    expected = outputs_of(model, images)
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.output_names == model.output_names
    assert count_parameters(restored.trainable_weights) == count_parameters(model.trainable_weights)
    assert restored.count_params() == model.count_params()
    got = outputs_of(restored, images)
    assert len(got) == len(expected)
    for index, (after, before) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_allclose(after, before, rtol=rtol, atol=atol, err_msg=f"output {index}")
    return restored


def check_mixed_precision(
    build: Callable[[], keras.Model], images, *, float16_layer: str, tolerance: float = 0.05
) -> None:
    """Built under ``mixed_float16``: ``float16_layer`` computes in float16, every output is
    float32, finite and within ``tolerance`` (of the largest output value, at least 1) of the
    same model computed in float32; the global dtype policy is restored afterwards."""
    before = keras.config.dtype_policy().name
    with dtype_policy("mixed_float16"):
        mixed = build()
    assert keras.config.dtype_policy().name == before
    assert mixed.get_layer(float16_layer).compute_dtype == "float16"
    assert [output.dtype for output in mixed.outputs] == ["float32"] * len(mixed.outputs)
    with dtype_policy("float32"):
        reference = build()
    reference.set_weights(mixed.get_weights())
    for index, (half, full) in enumerate(
        zip(outputs_of(mixed, images), outputs_of(reference, images), strict=True)
    ):
        assert half.dtype == np.float32, f"output {index} is {half.dtype}"
        assert np.isfinite(half).all(), f"output {index} is not finite"
        scale = max(1.0, float(np.abs(full).max()))
        np.testing.assert_allclose(half, full, atol=tolerance * scale, err_msg=f"output {index}")


# ----------------------------------------------------------------------------------------------
# JAX backend: one interpreter, started once for the whole test session (importing JAX, Keras
# and seglab costs more than each check), runs the code each family sends it.

_SERVER = r"""
import contextlib, io, json, sys, traceback
for line in sys.stdin:
    output, ok = io.StringIO(), True
    with contextlib.redirect_stdout(output):
        try:
            exec(compile(json.loads(line), "<jax check>", "exec"), {"__name__": "__jax_check__"})
        except BaseException:
            ok = False
            traceback.print_exc(file=output)
    sys.__stdout__.write("@@seglab-result " + json.dumps([ok, output.getvalue()]) + "\n")
    sys.__stdout__.flush()
"""

_interpreter: subprocess.Popen | None = None
_interpreter_log = None


def run_under_jax(code: str) -> str:
    """Run ``code`` in the session's JAX-backend interpreter (CPU); returns what it printed.
    An exception in ``code`` fails the calling test with the interpreter's traceback."""
    global _interpreter, _interpreter_log
    if _interpreter is None or _interpreter.poll() is not None:
        _interpreter_log = tempfile.TemporaryFile(mode="w+")
        env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
        _interpreter = subprocess.Popen(
            [sys.executable, "-u", "-c", _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=_interpreter_log,
            text=True,
            env=env,
        )
        atexit.register(_interpreter.kill)
    _interpreter.stdin.write(json.dumps(textwrap.dedent(code)) + "\n")
    _interpreter.stdin.flush()
    for line in _interpreter.stdout:
        if line.startswith("@@seglab-result "):
            ok, output = json.loads(line[len("@@seglab-result ") :])
            assert ok, output[-4000:]
            return output
    _interpreter_log.seek(0)
    raise AssertionError("the JAX interpreter stopped:\n" + _interpreter_log.read()[-4000:])


def check_under_jax(build: str, *, size: int = 64, train: bool = False) -> None:
    """``build`` (an expression using ``models``, i.e. ``seglab.models``) gives a model on the
    JAX backend that maps 0..255 images to outputs of the input size, float32 and finite, as
    declared (``output_info``); with ``train``, two optimiser steps give a finite loss."""
    out = run_under_jax(
        f"""
        import keras
        import numpy as np
        from seglab import losses, models

        assert keras.backend.backend() == "jax"
        model = {build}
        info = models.output_info(model)
        images = np.random.default_rng(0).random((2, {size}, {size}, 3), dtype=np.float32) * 255
        outputs = model(images, training=False)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        assert len(outputs) == info.num_outputs, (len(outputs), info)
        for output in outputs:
            output = np.asarray(output)
            assert output.shape == (2, {size}, {size}, info.num_classes), output.shape
            assert output.dtype == np.float32 and np.isfinite(output).all()
        if {train!r}:
            if info.num_classes == 1:
                targets = (images[..., :1] > 127).astype("float32")
                loss = keras.losses.BinaryCrossentropy(from_logits=info.kind == "logits")
            else:
                targets = (images[..., 0] * info.num_classes // 256).astype("int32")
                loss = keras.losses.SparseCategoricalCrossentropy(
                    from_logits=info.kind == "logits"
                )
            if info.num_outputs > 1:
                model.compile(optimizer="adam", **losses.deep_supervision_loss(loss, info.num_outputs))
                targets = (targets,) * info.num_outputs
            else:
                model.compile(optimizer="adam", loss=loss)
            history = model.fit(images, targets, epochs=2, verbose=0)
            assert np.isfinite(history.history["loss"]).all(), history.history
        print("JAX-OK", info.kind, info.num_outputs, info.num_classes)
        """
    )
    assert "JAX-OK" in out, out
