"""What the four notebooks share: the install cell, the device, the smoke switch, the step cap
and where a lesson's data comes from."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from seglab.data.registry import DATASETS
from seglab.errors import SettingError

# The one place the repository's address is written. The notebooks' first cell (INSTALL_CELL)
# and the README's Colab links are checked against it by tests/test_install_cell.py.
REPOSITORY = "https://github.com/seglab/seglab"

# The first code cell of every notebook. It installs only what the course needs (no [dev]
# extra) and pins the TensorFlow Colab already has, so that pip picks the keras-hub and
# tensorflow-text that fit it instead of replacing it (keras-hub needs tensorflow-text, which
# requires one TensorFlow minor version). IPython expands {...} in the %pip line.
INSTALL_CELL = f"""\
# In Colab, install seglab (keeping Colab's TensorFlow); elsewhere this cell does nothing.
import sys
from importlib.metadata import version

if "google.colab" in sys.modules:
    %pip install -q "seglab @ git+{REPOSITORY}" "tensorflow=={{version('tensorflow')}}"
"""

MAX_STEPS_ENV = "SEGLAB_MAX_STEPS"
MAX_BATCH_ENV = "SEGLAB_MAX_BATCH_SIZE"

# The course's sample datasets (in the folder named by SEGLAB_SAMPLE_DATA), by recipe dataset.
SAMPLE_FOLDERS = {name: dataset.sample_folder for name, dataset in DATASETS.items()}


def smoke_mode() -> bool:
    """True when ``SEGLAB_SMOKE`` asks for the small configuration (the test suite sets it)."""
    return os.environ.get("SEGLAB_SMOKE", "").strip().lower() in {"1", "true", "yes", "on"}


def max_steps() -> int | None:
    """The cap that ``SEGLAB_MAX_STEPS`` sets on training and evaluation steps, or ``None``.

    A rehearsal of the full configuration (full-size model and images, real data pipeline)
    sets it to a few steps: at most that many training steps in all (one epoch) and at most
    that many batches in each validation, evaluation or prediction pass (``fit_limits``,
    ``cap_batches``).

    Raises:
        ValueError: the variable is set to something else than a positive whole number.
    """
    value = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not value:
        return None
    try:
        steps = int(value)
    except ValueError:
        steps = 0
    if steps < 1:
        raise SettingError(f"{MAX_STEPS_ENV}={value!r}: expected a positive whole number of steps")
    return steps


def max_batch_size() -> int | None:
    """The cap ``SEGLAB_MAX_BATCH_SIZE`` sets on a recipe's batch size, or ``None``.

    Only for rehearsing a full configuration on a machine too small for it: BASNet's batch of
    4 at 288 px needs about 27 GB on a CPU, more than CI's 24 GB.
    """
    value = os.environ.get(MAX_BATCH_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise SettingError(f"{MAX_BATCH_ENV}={value!r}: expected a positive whole number")
    return int(value)


def fit_limits(epochs: int, steps_per_epoch: int | None = None) -> dict:
    """``model.fit`` arguments ``epochs``, ``steps_per_epoch`` and ``validation_steps``, with
    ``max_steps()`` applied: unchanged without a cap; with a cap of N, one epoch of at most N
    steps (fewer when ``steps_per_epoch`` is smaller) and at most N validation batches."""
    cap = max_steps()
    if cap is None:
        return {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "validation_steps": None}
    return {
        "epochs": min(epochs, 1),
        "steps_per_epoch": min(cap, steps_per_epoch or cap),
        "validation_steps": cap,
    }


def cap_batches(batches):
    """``batches`` (a ``tf.data.Dataset`` or any iterable) cut to ``max_steps()`` batches;
    unchanged without a cap."""
    cap = max_steps()
    if cap is None:
        return batches
    if hasattr(batches, "take"):
        return batches.take(cap)
    return itertools.islice(batches, cap)


def describe_device(print_result: bool = True) -> str:
    """One paragraph on what this notebook will run on: the GPU(s), or, without one, a warning
    that the full configuration takes days on a CPU and that the smoke settings exist.

    Returns the text (and prints it unless ``print_result`` is False).
    """
    import keras

    from seglab.training import devices

    backend = keras.backend.backend()
    gpus = devices.gpu_names(backend)
    if gpus:
        text = (
            f"GPU: {', '.join(gpus)} (Keras backend {backend}). The full configuration runs "
            "here; training uses mixed precision on a GPU."
        )
    else:
        text = (
            f"No GPU found (Keras backend {backend}): this runs on the CPU. The full "
            "configuration of these lessons takes days on a CPU. For a quick run set SMOKE = True "
            "in the parameters cell (or SEGLAB_SMOKE=1 before starting Jupyter): small images, "
            "few pictures, one short epoch. In Colab, choose Runtime > Change runtime type > GPU."
        )
    if print_result:
        print(text)
    return text


def sample_folder(dataset: str) -> Path | None:
    """The course's sample of ``dataset`` when ``SEGLAB_SAMPLE_DATA`` points at it, else None."""
    root = os.environ.get("SEGLAB_SAMPLE_DATA")
    name = SAMPLE_FOLDERS.get(dataset)
    if not root or name is None:
        return None
    path = Path(root).expanduser() / name
    return path if path.is_dir() else None


def load_lesson_data(recipe, data_dir=None, smoke=False):
    """``(train_set, val_set)`` for a notebook, saying where they came from.

    ``data_dir`` wins when given. Otherwise a smoke run uses the course's real sample of the
    dataset when it is available and a synthetic set (on disk, in a temporary folder) when it
    is not; a full run downloads the real dataset (``recipe.load_data``).
    """
    if data_dir is not None:
        print(f"Data: {data_dir}")
        return recipe.load_data(data_dir)
    if smoke:
        sample = sample_folder(recipe.dataset)
        if sample is not None:
            print(f"Smoke run on the course's sample data: {sample}")
            return recipe.load_data(sample)
        print(
            "No dataset given and no sample data found (SEGLAB_SAMPLE_DATA): "
            "this smoke run uses a SYNTHETIC dataset, so the pictures below are made up."
        )
        return recipe.load_data(synthetic=True)
    return recipe.load_data(None, download=True)


def show_source(*objects):
    """Show the source code of seglab functions or classes in a notebook, highlighted (plain
    text elsewhere): the lessons read how their models are built from the code that builds
    them, so the notebook and the package never state an architecture twice."""
    import inspect

    text = "\n\n".join(inspect.getsource(obj).rstrip() for obj in objects)
    try:
        from IPython import get_ipython
        from IPython.display import Code, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Code(text, language="python"))
    else:
        print(text)
