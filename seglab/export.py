"""Export a trained model for serving: TensorFlow SavedModel, TFLite (LiteRT) or ONNX.

    result = export("runs/pets", "runs/pets/model.onnx", "onnx")
    print(result.summary())

Keras' own exporters write the files (``model.export(format="tf_saved_model" | "litert" |
"onnx")``). What seglab adds:

- The exported file has one input, ``images``: ``float32 (B, H, W, 3)`` RGB values 0..255
  (the model normalises them itself), any batch size, and a fixed height and width: the
  model's input size, or for a free-size model the run's ``image_size`` (or ``image_size=``).
- It has one output: the model's prediction (output 0; the side outputs of BASNet and U²-Net
  only serve deep supervision in training).
- A mixed-precision model is exported in float32 (ONNX requires it; CPUs and most mobile
  runtimes compute in float32 anyway).
- With ``check=True`` the written file is loaded by its own runtime (``tf.saved_model.load``,
  the LiteRT interpreter, onnxruntime) and its output is compared with the Keras model's.

Exporting needs the TensorFlow backend. ONNX needs ``tf2onnx`` and ``onnxruntime``, and the
LiteRT check prefers ``ai-edge-litert``: ``pip install "seglab[export]"``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from seglab.errors import PathNotFoundError, SeglabError

FORMATS = ("saved_model", "tflite", "onnx")
# seglab format name -> the name Keras' Model.export uses.
KERAS_FORMATS = {"saved_model": "tf_saved_model", "tflite": "litert", "onnx": "onnx"}
RUNTIMES = {
    "saved_model": "tf.saved_model.load",
    "tflite": "the LiteRT interpreter",
    "onnx": "onnxruntime",
}
INPUT_NAME = "images"
INSTALL_HINT = 'pip install "seglab[export]"'
# Largest difference to the Keras output accepted by check=True, relative to the output's
# magnitude (at least 1): float32 graphs rewritten by converters differ by rounding only.
CHECK_TOLERANCE = 1e-4


class MissingPackageError(SeglabError, ImportError):
    """A package needed to export (or check) a format is not installed."""


class ExportCheckError(ValueError):
    """The exported file, run by its runtime, does not give the Keras model's output."""


@dataclasses.dataclass
class ExportResult:
    """What ``export`` wrote.

    Attributes:
        path: the file (TFLite, ONNX) or folder (SavedModel).
        format: ``"saved_model"``, ``"tflite"`` or ``"onnx"``.
        input_shape: ``(None, H, W, 3)``; ``None`` is the free batch size.
        output_shape: ``(None, H, W, C)`` of the prediction.
        export_seconds: time spent by the exporter.
        max_abs_difference: largest difference between the runtime's and Keras' outputs on
            the check images (``None`` without a check).
        runtime: what ran the check.
        normalizes_input: ``False`` when the model has no preprocessing layer, so the file
            takes the input the network was trained on rather than pixels 0..255.
    """

    path: Path
    format: str
    input_shape: tuple
    output_shape: tuple
    export_seconds: float
    max_abs_difference: float | None = None
    runtime: str | None = None
    normalizes_input: bool = True

    def summary(self) -> str:
        lines = [
            f"Wrote {self.path} ({self.format}, {self.export_seconds:.1f} s): input "
            f"{INPUT_NAME!r} float32 {_shape_text(self.input_shape)}, output float32 "
            f"{_shape_text(self.output_shape)} (the prediction, output 0)"
        ]
        if not self.normalizes_input:
            lines.append(
                "Note: the model has no preprocessing layer; the file takes images normalised "
                "as in training, not pixel values 0..255"
            )
        if self.max_abs_difference is not None:
            lines.append(
                f"Checked with {self.runtime}: max |difference| to Keras = "
                f"{self.max_abs_difference:.2e}"
            )
        return "\n".join(lines)


def _shape_text(shape) -> str:
    return "(" + ", ".join("B" if size is None else str(size) for size in shape) + ")"


# ----------------------------------------------------------------------------------------------
# Packages


def _require(module: str, package: str, needed_for: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingPackageError(
            f"{needed_for} needs the {package!r} package, which is not installed: {INSTALL_HINT}"
        )


def _require_tensorflow_backend(format: str) -> None:
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"exporting to {format} needs the TensorFlow backend (KERAS_BACKEND=tensorflow); "
            f"this process uses {keras.backend.backend()!r}"
        )


# ----------------------------------------------------------------------------------------------
# The model that is exported


def _spatial_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int | np.integer):
        return int(image_size), int(image_size)
    height, width = (int(side) for side in image_size)
    return height, width


def _prediction_index(model) -> int:
    try:
        from seglab.models.heads import output_info

        return output_info(model).prediction_index
    except (ImportError, ValueError):
        return 0  # models that declare no outputs: output 0 is the prediction by convention


def _all_layers(layer):
    yield layer
    for child in getattr(layer, "layers", ()):
        yield from _all_layers(child)


def _with_float32_policies(config):
    """``config`` with every mixed-precision dtype policy replaced by float32."""
    if isinstance(config, list):
        return [_with_float32_policies(value) for value in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "DTypePolicy" and str(
        config.get("config", {}).get("name", "")
    ).startswith("mixed_"):
        return {**config, "config": {**config["config"], "name": "float32"}}
    return {
        key: "float32"
        if key == "dtype" and isinstance(value, str) and value.startswith("mixed_")
        else _with_float32_policies(value)
        for key, value in config.items()
    }


def float32_model(model):
    """``model`` itself when it computes in float32, else a float32 copy with its weights."""
    if all(layer.dtype_policy.name == "float32" for layer in _all_layers(model)):
        return model
    config = _with_float32_policies(model.get_config())
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def prediction_model(model, image_size=None):
    """``(model_of_output_0, (height, width))``: what the exported file computes.

    Args:
        model: a seglab (functional) ``keras.Model``.
        image_size: ``int`` or ``(height, width)``; required when the model's input size is
            free, and must match it otherwise.

    Raises:
        ValueError: no size is known, or ``image_size`` contradicts the model's input.
    """
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise ValueError(
            f"model {model.name!r}: expected one image input (B, H, W, C), got "
            f"{[tuple(t.shape) for t in model.inputs]}"
        )
    _, height, width, channels = model.inputs[0].shape
    requested = _spatial_size(image_size)
    if height is not None and width is not None:
        if requested is not None and requested != (height, width):
            raise ValueError(
                f"model {model.name!r} takes {height}x{width} images; image_size "
                f"{requested[0]}x{requested[1]} does not match (leave it out)"
            )
        size = (height, width)
    elif requested is None:
        raise ValueError(
            f"model {model.name!r} takes images of any size: give the size to export "
            "(image_size=, or --image-size on the command line)"
        )
    else:
        size = requested
    model = float32_model(model)
    outputs = model.outputs
    output = outputs[_prediction_index(model)] if len(outputs) > 1 else outputs[0]
    single = keras.Model(model.inputs[0], output, name=f"{model.name}_prediction")
    return single, (*size, channels or 3)


# ----------------------------------------------------------------------------------------------
# Writing


def _prepare_destination(path: Path, format: str, overwrite: bool) -> None:
    if format == "tflite" and path.suffix != ".tflite":
        raise ValueError(f"{path}: a TFLite file name must end with .tflite")
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{path}: already exists; pass overwrite=True (--overwrite)")
    if not path.parent.exists():
        path.parent.mkdir(parents=True)


@contextlib.contextmanager
def _quiet_converters():
    """Silences the converters' chatter (tf2onnx logs every pass; Keras' NumPy 2 patch warns)."""
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "tensorflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_model(model, path, format, *, image_size=None, overwrite=False):
    """Write ``model``'s prediction as ``format`` to ``path`` with Keras' exporter.

    Returns:
        ``ExportResult`` (without a check; see ``export`` and ``check_export``).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    _require_tensorflow_backend(format)
    if format == "onnx":
        _require("tf2onnx", "tf2onnx", "ONNX export")
        _require("onnx", "onnx", "ONNX export")
    path = Path(path)
    _prepare_destination(path, format, overwrite)
    single, (height, width, channels) = prediction_model(model, image_size)

    import tensorflow as tf

    signature = [tf.TensorSpec((None, height, width, channels), tf.float32, name=INPUT_NAME)]
    # Written beside the destination and moved there at the end: a failed export leaves
    # neither a partial file nor a damaged previous one.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as scratch:
        written = Path(scratch) / path.name
        start = time.perf_counter()
        with _quiet_converters():
            single.export(
                str(written), format=KERAS_FORMATS[format], input_signature=signature, verbose=False
            )
        seconds = time.perf_counter() - start
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        os.replace(written, path)

    from seglab.models.preprocessing import preprocessing_of

    return ExportResult(
        path=path,
        format=format,
        input_shape=(None, height, width, channels),
        output_shape=(None, *single.outputs[0].shape[1:]),
        export_seconds=seconds,
        normalizes_input=preprocessing_of(model) is not None,
    )


# ----------------------------------------------------------------------------------------------
# Running an exported file


def load_exported(path, format) -> Callable[[np.ndarray], np.ndarray]:
    """A function ``images float32 (B, H, W, 3) 0..255 -> prediction`` that runs the file
    with its own runtime (no Keras involved)."""
    path = Path(path)
    if not path.exists():
        raise PathNotFoundError(path, "exported model not found")
    if format == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))

        def run_saved_model(images):
            # ``loaded`` stays referenced here: its variables die with it.
            return loaded.serve(tf.constant(images, tf.float32)).numpy()

        return run_saved_model
    if format == "tflite":
        interpreter = _tflite_interpreter(path)

        def run_tflite(images):
            images = np.asarray(images, np.float32)
            (input_detail,) = interpreter.get_input_details()
            if tuple(input_detail["shape"]) != images.shape:
                interpreter.resize_tensor_input(input_detail["index"], images.shape)
                interpreter.allocate_tensors()
            interpreter.set_tensor(input_detail["index"], images)
            interpreter.invoke()
            return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()

        return run_tflite
    if format == "onnx":
        _require("onnxruntime", "onnxruntime", "Running an ONNX file")
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name

        def run_onnx(images):
            return session.run(None, {input_name: np.asarray(images, np.float32)})[0]

        return run_onnx
    raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")


def _tflite_interpreter(path: Path):
    """The LiteRT interpreter (``ai-edge-litert``, what devices run), or TensorFlow's
    deprecated ``tf.lite.Interpreter`` when it is not installed."""
    if importlib.util.find_spec("ai_edge_litert") is not None:
        from ai_edge_litert.interpreter import Interpreter
    else:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tf.lite.Interpreter's deprecation
        interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


def tflite_runtime_name() -> str:
    if importlib.util.find_spec("ai_edge_litert") is not None:
        return "ai_edge_litert.interpreter"
    return "tf.lite.Interpreter"


def check_images(image_shape, count=2, seed=0) -> np.ndarray:
    """``count`` reproducible float32 images 0..255: smooth colour ramps plus noise, so every
    part of the network sees varied input."""
    height, width, channels = image_shape
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    cols = np.linspace(0.0, 1.0, width)[None, :, None]
    images = []
    for _ in range(count):
        weights = rng.uniform(0.0, 1.0, (2, channels))
        ramp = rows * weights[0] + cols * weights[1]
        noise = rng.uniform(-0.25, 0.25, (height, width, channels))
        images.append(np.clip((ramp / 2.0 + 0.25 + noise) * 255.0, 0.0, 255.0))
    return np.stack(images).astype(np.float32)


def check_export(model, result: ExportResult, images=None) -> float:
    """Runs ``result``'s file with its runtime on ``images`` (default: ``check_images``) and
    returns the largest absolute difference to ``model``'s prediction; also stored in
    ``result``.

    Raises:
        ExportCheckError: the difference exceeds ``CHECK_TOLERANCE`` times the output's
            magnitude (at least 1).
    """
    single, image_shape = prediction_model(model, result.input_shape[1:3])
    if images is None:
        images = check_images(image_shape)
    images = np.asarray(images, np.float32)
    expected = keras.ops.convert_to_numpy(single(images, training=False))
    actual = load_exported(result.path, result.format)(images)
    if actual.shape != expected.shape:
        raise ExportCheckError(
            f"{result.path}: {RUNTIMES[result.format]} returned shape {actual.shape}, "
            f"Keras {expected.shape}"
        )
    difference = float(np.max(np.abs(actual - expected)))
    result.max_abs_difference = difference
    result.runtime = tflite_runtime_name() if result.format == "tflite" else RUNTIMES[result.format]
    limit = CHECK_TOLERANCE * max(1.0, float(np.max(np.abs(expected))))
    if not difference <= limit:
        raise ExportCheckError(
            f"{result.path}: written, but {result.runtime} differs from the Keras model by up "
            f"to {difference:.3g} (limit {limit:.3g})"
        )
    return difference


# ----------------------------------------------------------------------------------------------
# Models, run folders and .keras files


def _image_size_from_config(config) -> int | list | None:
    if not config:
        return None
    if config.get("image_size") is not None:
        return config["image_size"]
    recipe = config.get("recipe") or {}
    return recipe.get("image_size")


def load_for_export(model_or_path):
    """``(model, run_image_size)`` from a model, a run folder or a ``.keras`` file."""
    if isinstance(model_or_path, keras.Model):
        return model_or_path, None
    path = Path(model_or_path)
    if not path.exists():
        raise PathNotFoundError(path, "model not found (expected a run folder or a .keras file)")
    from seglab import training

    if path.is_dir():
        model, config = training.load_run(path)
        return model, _image_size_from_config(config)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: expected a run folder or a .keras model file")
    config = None
    with contextlib.suppress(OSError, ValueError):
        config = json.loads((path.parent / training.CONFIG).read_text())
    return training.load_model(path), _image_size_from_config(config)


def export(model_or_path, path, format, *, image_size=None, overwrite=False, check=True):
    """Export a model, a run folder or a ``.keras`` file; see the module docstring.

    Args:
        model_or_path: a ``keras.Model``, a run folder or a ``.keras`` file.
        path: where to write: a folder for ``"saved_model"``, a file for the others (TFLite
            names end with ``.tflite``).
        format: ``"saved_model"``, ``"tflite"`` or ``"onnx"``.
        image_size: ``int`` or ``(height, width)`` for a model with a free input size
            (default: the run's ``image_size``).
        overwrite: replace an existing ``path``.
        check: run the written file with its runtime and compare with Keras.

    Returns:
        ``ExportResult``.

    Raises:
        FileNotFoundError: no such model. ``FileExistsError``: ``path`` exists.
        MissingPackageError: a converter or runtime is not installed (names the extra).
        ExportCheckError: the exported file does not compute what the model does.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    model, run_image_size = load_for_export(model_or_path)
    free_size = None in tuple(model.inputs[0].shape[1:3])
    size = image_size if image_size is not None else (run_image_size if free_size else None)
    if check and format == "onnx":
        _require("onnxruntime", "onnxruntime", "Checking an ONNX file")
    result = export_model(model, path, format, image_size=size, overwrite=overwrite)
    if check:
        check_export(model, result)
    return result
