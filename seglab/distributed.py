"""Training on several devices and several processes.

Two routes work with Keras 3, and ``seglab train`` takes both (``seglab.training.setup_device``):

- **Several GPUs in one machine, TensorFlow backend**: ``tf.distribute.MirroredStrategy``. The
  model is built, compiled and trained inside its scope; each replica gets its share of every
  batch, and batch normalisation uses the statistics of the whole batch so that the replicas
  stay equal. (On the JAX backend one process trains data-parallel over its devices.)
- **Several processes (machines, or processes on one machine), JAX backend**: Keras 3's
  distribution API. Every process calls ``jax.distributed.initialize`` with the coordinator's
  address (process 0), the number of processes and its own id (``Cluster``), then builds and
  trains the same model under ``keras.distribution.DataParallel`` over the devices of every
  process. Each process runs the same input pipeline (same seed) and feeds the model only its
  slice of every global batch (``shard_batches``), so the global batches, and the trained
  model, are those of one process with the same batch size. Only process 0 (the chief) writes
  the run folder; on resume it restores the backup and every process takes its weights and
  optimizer state (``sync_from_chief``) and starts at its epoch.

Not supported: ``TF_CONFIG`` with ``tf.distribute.MultiWorkerMirroredStrategy``. Keras 3's
``model.fit`` fails under it (keras-team/keras#20585, tensorflow/tensorflow#72388);
``setup_device`` stops with ``MULTI_WORKER_MESSAGE`` instead.

``SEGLAB_TRACE_DIR`` (a testing aid): when set, every process appends to
``SEGLAB_TRACE_DIR/process-<id>.jsonl`` one line per batch it fed the model (a fingerprint of
each image) and one per finished step (a hash of its weights, the time).

One module, not several: the cluster settings, the start-up, the input sharding and the
chief-to-all synchronisation are one protocol (every process must take the same steps in the
same order, see ``together``), and reading it in one place is how it is checked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from seglab.errors import SettingError

if TYPE_CHECKING:
    import numpy as np

ENV_COORDINATOR = "SEGLAB_COORDINATOR"
ENV_NUM_PROCESSES = "SEGLAB_NUM_PROCESSES"
ENV_PROCESS_ID = "SEGLAB_PROCESS_ID"
ENV_COORDINATOR_PORT = "SEGLAB_COORDINATOR_PORT"
ENV_TRACE_DIR = "SEGLAB_TRACE_DIR"
# Seconds a process waits for the others to connect (jax.distributed.initialize's default).
ENV_INIT_TIMEOUT = "SEGLAB_INIT_TIMEOUT"
DEFAULT_INIT_TIMEOUT = 300

MULTI_WORKER_MESSAGE = (
    "TF_CONFIG names {workers} workers, but training on several machines with TF_CONFIG "
    "(tf.distribute.MultiWorkerMirroredStrategy) does not work with Keras 3: model.fit fails "
    "with 'Attempt to convert a value (PerReplica...)' (keras-team/keras#20585, "
    "tensorflow/tensorflow#72388). Train on several machines with the JAX backend instead: on "
    "every machine run KERAS_BACKEND=jax seglab train ... --coordinator HOST:PORT "
    "--num-processes N --process-id I (README: 'Several GPUs, several machines'). Unset "
    "TF_CONFIG to train on this machine alone (several GPUs here are used with "
    "MirroredStrategy)."
)


@dataclasses.dataclass(frozen=True)
class Cluster:
    """One process of a multi-process run.

    Attributes:
        coordinator: ``HOST:PORT`` where process 0 listens; every process gives the same.
        num_processes: how many processes train together (at least 2).
        process_id: this process, ``0 .. num_processes - 1``; 0 is the chief.
        source: where the settings came from (for messages).
    """

    coordinator: str
    num_processes: int
    process_id: int
    source: str = "arguments"

    def __post_init__(self):
        if self.num_processes < 2:
            raise SettingError(f"a cluster has at least 2 processes, got {self.num_processes}")
        if not 0 <= self.process_id < self.num_processes:
            raise SettingError(
                f"process id {self.process_id} is not in 0..{self.num_processes - 1} "
                f"(from {self.source})"
            )
        host, _, port = self.coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingError(
                f"coordinator {self.coordinator!r} (from {self.source}) is not HOST:PORT, "
                "e.g. node01:23456"
            )

    @property
    def is_chief(self) -> bool:
        return self.process_id == 0

    def describe(self) -> str:
        return (
            f"process {self.process_id} of {self.num_processes} "
            f"(coordinator {self.coordinator}, from {self.source})"
        )


def first_slurm_host(nodelist: str) -> str:
    """The first host of a Slurm node list: ``"gpu[03-05,09],cpu1"`` gives ``"gpu03"``."""
    depth, end = 0, len(nodelist)
    for index, char in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            end = index
            break
    first = nodelist[:end].strip()
    # Each bracket group is a range list; its first entry starts the first host name.
    host = re.sub(r"\[([^\],-]+)[^\]]*\]", r"\1", first)
    if not host or "[" in host or "]" in host:
        raise SettingError(f"cannot read a host name from the Slurm node list {nodelist!r}")
    return host


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SettingError(f"{name} must be a whole number, got {text!r}") from None


def _slurm_settings(environ: Mapping[str, str]) -> dict:
    """Cluster settings of a Slurm job step started by ``srun`` (``SLURM_STEP_NUM_TASKS`` is set
    only there, so a batch script's own shell is not taken for one of several tasks)."""
    tasks = environ.get("SLURM_STEP_NUM_TASKS")
    if not tasks or environ.get("SLURM_PROCID") is None:
        return {}
    settings = {
        "num_processes": _int(tasks.split("(")[0], "SLURM_STEP_NUM_TASKS"),
        "process_id": _int(environ["SLURM_PROCID"], "SLURM_PROCID"),
    }
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
    if nodelist:
        # Every task of the job derives the same port; two jobs on one node get different ones.
        port = environ.get(ENV_COORDINATOR_PORT) or str(
            20000 + _int(environ.get("SLURM_JOB_ID", "0"), "SLURM_JOB_ID") % 20000
        )
        settings["coordinator"] = f"{first_slurm_host(nodelist)}:{port}"
    return settings


def cluster_from(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> Cluster | None:
    """The cluster this process belongs to, or ``None`` for a single-process run.

    Each setting comes from the argument, else ``SEGLAB_COORDINATOR`` /
    ``SEGLAB_NUM_PROCESSES`` / ``SEGLAB_PROCESS_ID``, else a Slurm job step (``srun``:
    ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` and the first host of ``SLURM_STEP_NODELIST``,
    port ``SEGLAB_COORDINATOR_PORT`` or one derived from ``SLURM_JOB_ID``).

    Raises:
        SettingError (a ValueError): some settings are missing or out of range; the message
            says which.
    """
    environ = os.environ if environ is None else environ
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    from_env = {
        "coordinator": environ.get(ENV_COORDINATOR) or None,
        "num_processes": environ.get(ENV_NUM_PROCESSES) or None,
        "process_id": environ.get(ENV_PROCESS_ID) or None,
    }
    slurm = _slurm_settings(environ)
    values, sources = {}, set()
    for key in given:
        if given[key] is not None:
            values[key], source = given[key], "arguments"
        elif from_env[key] is not None:
            values[key], source = from_env[key], "SEGLAB_* environment"
        elif key in slurm:
            values[key], source = slurm[key], "Slurm environment"
        else:
            continue
        sources.add(source)
    if not values:
        return None
    for key, name in (("num_processes", ENV_NUM_PROCESSES), ("process_id", ENV_PROCESS_ID)):
        if isinstance(values.get(key), str):
            values[key] = _int(values[key], name)
    if values.get("num_processes") == 1 and values.get("process_id", 0) == 0:
        return None
    missing = [key for key in given if key not in values]
    if missing:
        flags = {
            "coordinator": f"--coordinator HOST:PORT ({ENV_COORDINATOR})",
            "num_processes": f"--num-processes N ({ENV_NUM_PROCESSES})",
            "process_id": f"--process-id I ({ENV_PROCESS_ID})",
        }
        raise SettingError(
            "training with several processes needs the coordinator's address, the number of "
            "processes and this process's id; missing: " + ", ".join(flags[key] for key in missing)
        )
    return Cluster(
        coordinator=str(values["coordinator"]),
        num_processes=values["num_processes"],
        process_id=values["process_id"],
        source=" and ".join(sorted(sources)),
    )


# ----------------------------------------------------------------------------------------------
# Start-up


def initialize(cluster: Cluster) -> None:
    """Connect this process to the others (``jax.distributed.initialize``); JAX backend only.

    Must run before anything else uses JAX. Waits ``SEGLAB_INIT_TIMEOUT`` seconds (default
    300) for every process to connect.
    """
    import keras

    from seglab.training.errors import TrainingError

    if keras.backend.backend() != "jax":
        raise TrainingError(
            f"training with several processes ({cluster.describe()}) needs the JAX backend "
            f"(Keras 3's distribution API); this process runs {keras.backend.backend()}. Set "
            "KERAS_BACKEND=jax for every process."
        )
    import jax

    if jax.distributed.is_initialized():
        if jax.process_count() != cluster.num_processes or (
            jax.process_index() != cluster.process_id
        ):
            raise TrainingError(
                f"JAX is already connected as process {jax.process_index()} of "
                f"{jax.process_count()}, not as {cluster.describe()}"
            )
        return
    timeout = _int(os.environ.get(ENV_INIT_TIMEOUT, str(DEFAULT_INIT_TIMEOUT)), ENV_INIT_TIMEOUT)
    started = time.monotonic()
    if not cluster.is_chief:
        _wait_for_coordinator(cluster, timeout)
    try:
        jax.distributed.initialize(
            coordinator_address=cluster.coordinator,
            num_processes=cluster.num_processes,
            process_id=cluster.process_id,
            initialization_timeout=max(10, int(timeout - (time.monotonic() - started))),
        )
    except RuntimeError as error:
        text = str(error)
        if "must be called before" in text:
            raise TrainingError(
                f"{cluster.describe()}: JAX was already used in this Python process; start "
                "each training process fresh (the seglab command does)"
            ) from error
        raise TrainingError(
            f"{cluster.describe()}: could not connect to the other processes within "
            f"{timeout} s ({text.splitlines()[0] if text else type(error).__name__}). Check that "
            f"all {cluster.num_processes} processes were started with the same --coordinator, "
            "that process 0 runs on that host and that the port is free and reachable "
            f"(raise {ENV_INIT_TIMEOUT} for slow starts)."
        ) from error


def _wait_for_coordinator(cluster: Cluster, timeout: float) -> None:
    """Wait until process 0 listens at the coordinator address. JAX itself ends the process
    with a C++ stack trace when it cannot connect in time; this says what is wrong."""
    from seglab.training.errors import TrainingError

    host, _, port = cluster.coordinator.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise TrainingError(
                    f"{cluster.describe()}: could not connect to the other processes within "
                    f"{timeout:g} s: nothing answers at {cluster.coordinator} ({error}). Start "
                    "process 0 on that host with the same --coordinator (raise "
                    f"{ENV_INIT_TIMEOUT} for slow starts)."
                ) from None
            time.sleep(1)


def data_parallel():
    """``keras.distribution.DataParallel`` over the devices of every process.

    Batches are sharded by ``shard_batches``, not by Keras (``auto_shard_dataset=False``), so
    that a partial last batch can be dropped on every process alike."""
    import keras

    return keras.distribution.DataParallel(
        devices=keras.distribution.list_devices(), auto_shard_dataset=False
    )


def process_count() -> int:
    import keras

    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


def process_index() -> int:
    import keras

    if keras.backend.backend() != "jax":
        return 0
    import jax

    return jax.process_index()


def local_device_count() -> int:
    import jax

    return jax.local_device_count()


def broadcast_from_chief(values):
    """``values`` (a tree of NumPy arrays or numbers) as process 0 has them, on every process."""
    if process_count() == 1:
        return values
    from jax.experimental import multihost_utils

    return multihost_utils.broadcast_one_to_all(values)


def all_gather(values) -> np.ndarray:
    """One row per process: ``values`` (a 1-D list of numbers) of every process."""
    import numpy as np

    # int32: JAX without x64 would truncate anything wider.
    row = np.asarray(values, dtype=np.int32)
    if process_count() == 1:
        return row[None]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(row))


@contextlib.contextmanager
def together(what: str):
    """Run a step that may fail on some processes only (reading data, building the model):
    afterwards every process learns whether all succeeded, so none waits for a process that
    stopped. A process that failed raises its own error; the others raise ``TrainingError``
    naming it."""
    if process_count() == 1:
        yield
        return
    from seglab.training.errors import TrainingError

    try:
        yield
    except Exception:
        all_gather([1])
        raise
    failed = [index for index, (flag,) in enumerate(all_gather([0])) if flag]
    if failed:
        raise TrainingError(
            f"process(es) {', '.join(map(str, failed))} failed while {what}; see their messages"
        )


def settings_fingerprint(settings) -> int:
    """A number that differs when the settings differ (compared across processes)."""
    text = json.dumps(settings, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "big") >> 1


def check_same_settings(settings) -> None:
    """Raise ``TrainingError`` on every process when some process was started with other
    settings than process 0 (they would train different models or read different data)."""
    if process_count() == 1:
        return
    from seglab.training.errors import TrainingError

    rows = all_gather([settings_fingerprint(settings)])
    different = [index for index in range(len(rows)) if rows[index, 0] != rows[0, 0]]
    if different:
        raise TrainingError(
            f"process(es) {', '.join(map(str, different))} were started with other training "
            "settings than process 0 (recipe, options or seed); start every process with the "
            "same command, only --process-id differing"
        )


# ----------------------------------------------------------------------------------------------
# Data


def shard_batches(
    dataset,
    *,
    global_batch_size: int,
    num_processes: int,
    process_id: int,
    num_examples: int | None = None,
):
    """This process's share of every global batch of ``dataset``.

    Every process runs the same ``dataset`` (same seed); process ``i`` keeps rows
    ``[i * b, (i + 1) * b)`` of each batch, ``b = global_batch_size / num_processes``. Keras
    then joins the shares into one global batch spread over the devices. A last, partial
    batch is dropped (it cannot be split evenly). ``num_examples`` (the examples in one pass)
    declares the number of batches, so Keras knows the epoch's length.
    """
    import tensorflow as tf

    if global_batch_size % num_processes:
        raise SettingError(
            f"batch size {global_batch_size} does not split evenly over {num_processes} "
            f"processes; use a multiple of {num_processes}"
        )

    def is_full(*element):
        return tf.shape(tf.nest.flatten(element)[0])[0] == global_batch_size

    local = dataset.filter(is_full).rebatch(global_batch_size // num_processes)
    local = local.shard(num_processes, process_id)
    if num_examples is not None and dataset.cardinality() >= 0:
        local = local.apply(
            tf.data.experimental.assert_cardinality(num_examples // global_batch_size)
        )
    return local


def whole_batches_per_device(dataset, devices_per_process: int):
    """Validation batches that split evenly over this process's devices (every process
    evaluates the whole validation set, so the metrics are those of one process)."""
    if devices_per_process == 1:
        return dataset
    import tensorflow as tf

    def splits(*element):
        return tf.shape(tf.nest.flatten(element)[0])[0] % devices_per_process == 0

    return dataset.filter(splits)


def distribute_datasets(train_ds, val_ds, *, global_batch_size: int, num_examples=None):
    """``(train_ds, val_ds)`` for ``fit`` under ``data_parallel()``.

    Training: this process's share of every global batch (``shard_batches``). Validation:
    every process evaluates the whole validation set, so the metrics are those of one
    process (a batch whose size does not split over this process's devices is skipped)."""
    import jax

    devices = jax.device_count()
    if global_batch_size % devices:
        raise SettingError(
            f"batch size {global_batch_size} does not split evenly over {devices} devices "
            f"({jax.process_count()} process(es)); use a multiple of {devices} (--batch-size)"
        )
    train_ds = shard_batches(
        train_ds,
        global_batch_size=global_batch_size,
        num_processes=jax.process_count(),
        process_id=jax.process_index(),
        num_examples=num_examples,
    )
    return train_ds, whole_batches_per_device(val_ds, jax.local_device_count())


# ----------------------------------------------------------------------------------------------
# Callbacks


@contextlib.contextmanager
def without_distribution():
    """Create variables outside the Keras distribution (JAX): what only process 0 does, such
    as saving (which makes a throw-away optimizer) or reading a backup into a copy of the
    model, must not create variables spread over every process: that needs all of them."""
    import keras

    if keras.backend.backend() != "jax":
        yield
        return
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def sync_from_chief(restored_values=None):
    """A callback: at the start of ``fit``, every process takes process 0's weights and
    optimizer state (``fit(initial_epoch=...)`` gives them its epoch).

    ``restored_values`` (on process 0): the values read from its backup, in the order of
    ``model.weights + model.optimizer.variables``, or ``None`` to share the model's own.
    Process 0 cannot load the backup into the model itself: under the distribution, setting a
    variable is a collective step of every process."""
    import keras
    import numpy as np

    class SyncFromChief(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            model = self.model
            optimizer = model.optimizer
            if optimizer is not None and not optimizer.built:
                optimizer.build(model.trainable_variables)
            variables = list(model.weights) + (list(optimizer.variables) if optimizer else [])
            values = [keras.ops.convert_to_numpy(variable) for variable in variables]
            if restored_values is not None and process_index() == 0:
                shapes = [tuple(np.shape(value)) for value in restored_values]
                if shapes != [tuple(value.shape) for value in values]:
                    raise ValueError(
                        "the backup does not match the model: its variables have other shapes"
                    )
                values = restored_values
            values = broadcast_from_chief(values)
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)

    return SyncFromChief()


def weights_digest(model) -> str:
    """SHA-256 of the model's weights (the copy this process holds)."""
    import keras
    import numpy as np

    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return digest.hexdigest()


class Trace:
    """``SEGLAB_TRACE_DIR`` records of one process: the batches it fed the model and a hash of
    its weights at the start and after every step, one JSON object a line, in the order they
    happened. Put its callback first, so a step is recorded before it is backed up."""

    def __init__(self, trace_dir, process_id: int):
        self.path = Path(trace_dir) / f"process-{process_id}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")

    def wrap_dataset(self, dataset):
        """``dataset`` writing a fingerprint of each image it yields. Nothing is prefetched
        after the record, so a record is written when the model takes the batch."""
        import numpy as np
        import tensorflow as tf

        def record(images):
            fingerprints = [
                hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:16]
                for image in images.numpy()
            ]
            self.write({"batch": fingerprints})
            return np.int32(len(fingerprints))

        def traced(images, *rest):
            count = tf.py_function(record, [images], tf.int32)
            with tf.control_dependencies([count]):
                images = tf.identity(images)
            return (images, *rest)

        options = tf.data.Options()
        options.experimental_optimization.inject_prefetch = False
        return dataset.map(traced).with_options(options)

    def callback(self):
        import keras

        trace = self

        class _TraceSteps(keras.callbacks.Callback):
            epoch = None

            def on_epoch_begin(self, epoch, logs=None):
                if self.epoch is None:
                    # After every callback's on_train_begin (restore, sync): the start weights.
                    trace.write({"begin": weights_digest(self.model), "epoch": epoch})
                self.epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                trace.write(
                    {
                        "epoch": self.epoch,
                        "step": batch,
                        "loss": float((logs or {}).get("loss", float("nan"))),
                        "weights": weights_digest(self.model),
                        "time": time.time(),
                    }
                )

        return _TraceSteps()


def trace_from_environment(process_id: int) -> Trace | None:
    trace_dir = os.environ.get(ENV_TRACE_DIR)
    return Trace(trace_dir, process_id) if trace_dir else None
