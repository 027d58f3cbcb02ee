"""How training uses the machine: the GPUs, mixed precision, XLA and distribution.

``setup_device()`` chooses them (a notebook calls it before building its model);
``gpu_names()`` is the one place that asks the Keras backend for its GPUs (``seglab.course``
names them too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
from typing import Any

import keras

from seglab.training.errors import TrainingError


@dataclasses.dataclass
class DeviceSetup:
    """How training uses the machine."""

    backend: str
    gpus: list[str]
    mixed_precision: bool
    jit_compile: bool | str
    # tf.distribute.MirroredStrategy (TensorFlow) or keras.distribution.DataParallel (JAX).
    strategy: Any = None
    # seglab.distributed.Cluster of a multi-process run (JAX), else None.
    cluster: Any = None

    @property
    def replicas(self) -> int:
        """Model replicas that share every batch."""
        if self.strategy is None:
            return 1
        if self.backend == "tensorflow":
            return self.strategy.num_replicas_in_sync
        return len(self.strategy.device_mesh.devices.flatten())

    @property
    def num_processes(self) -> int:
        return 1 if self.cluster is None else self.cluster.num_processes

    @property
    def is_chief(self) -> bool:
        """True in the process that writes the run folder (the only one, or process 0)."""
        return self.cluster is None or self.cluster.is_chief

    def scope(self):
        """Build, compile and fit inside this."""
        return contextlib.nullcontext() if self.strategy is None else self.strategy.scope()

    @property
    def description(self) -> str:
        cpu = platform.processor() or platform.machine()
        cores = os.cpu_count()
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            pass
        gpus = f", {len(self.gpus)} GPU(s): {', '.join(self.gpus)}" if self.gpus else ", no GPU"
        text = f"{platform.system()} {cpu}, {cores} CPU core(s){gpus}; Keras backend {self.backend}"
        if self.strategy is not None:
            text += f"; {self.replicas} replicas ({type(self.strategy).__name__})"
        if self.cluster is not None:
            text += f"; {self.cluster.describe()}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "gpus": self.gpus,
            "mixed_precision": self.mixed_precision,
            "jit_compile": self.jit_compile,
            "distributed": self.strategy is not None,
            "strategy": None if self.strategy is None else type(self.strategy).__name__,
            "replicas": self.replicas,
            "processes": self.num_processes,
            "description": self.description,
        }


def gpu_names(backend: str | None = None) -> list[str]:
    """The names of the GPUs the Keras backend (default: the current one) can use."""
    backend = backend or keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        names = []
        for device in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(device)
            names.append(details.get("device_name", device.name))
        return names
    if backend == "jax":
        import jax

        return [device.device_kind for device in jax.devices() if device.platform == "gpu"]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def _multi_worker_cluster(count: bool = False) -> bool | int:
    """True when ``TF_CONFIG`` describes a cluster of more than one worker (with ``count``:
    how many)."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
        workers = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    except (ValueError, AttributeError, TypeError):
        raise TrainingError("TF_CONFIG is not valid JSON with a 'cluster' entry") from None
    return workers if count else workers > 1


def setup_device(
    mixed_precision: bool | str = "auto",
    jit_compile: bool | str = "auto",
    strategy: Any = "auto",
    cluster: Any = None,
) -> DeviceSetup:
    """Choose mixed precision, XLA and distribution for this machine.

    With ``"auto"``, mixed precision (``mixed_float16``) and XLA are used only when a GPU is
    present. Distribution (``seglab.distributed``):

    - TensorFlow backend: ``tf.distribute.MirroredStrategy`` when there are several GPUs
      (``strategy="auto"``), or the ``tf.distribute.Strategy`` given as ``strategy``.
      ``TF_CONFIG`` naming several workers is refused: Keras 3 cannot fit under
      ``MultiWorkerMirroredStrategy``.
    - JAX backend: with ``cluster`` (a ``seglab.distributed.Cluster``), connects the processes
      and trains data-parallel over the devices of all of them; without, data-parallel over
      this machine's devices when it has several (``strategy="auto"``).

    ``strategy=None`` trains on one device. Sets the global dtype policy: call before building
    models (``seglab.training.train`` puts the policy back when it returns).
    """
    from seglab import distributed

    backend = keras.backend.backend()
    if cluster is not None:
        # Before anything else touches JAX (listing the GPUs does).
        distributed.initialize(cluster)
    gpus = gpu_names(backend)
    use_mixed = bool(gpus) if mixed_precision == "auto" else bool(mixed_precision)
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    if backend == "tensorflow":
        jit = bool(gpus) if jit_compile == "auto" else bool(jit_compile)
    else:
        jit = jit_compile
    if backend == "tensorflow" and _multi_worker_cluster():
        workers = _multi_worker_cluster(count=True)
        raise TrainingError(distributed.MULTI_WORKER_MESSAGE.format(workers=workers))
    chosen = None
    if strategy not in ("auto", None):
        chosen = strategy
    elif strategy == "auto" and backend == "tensorflow" and len(gpus) > 1:
        import tensorflow as tf

        chosen = tf.distribute.MirroredStrategy()
    elif backend == "jax" and (
        cluster is not None or (strategy == "auto" and distributed.local_device_count() > 1)
    ):
        chosen = distributed.data_parallel()
    return DeviceSetup(backend, gpus, use_mixed, jit, chosen, cluster)


def synchronize_batch_norm(model, synchronized: bool) -> None:
    """Batch statistics of the global batch, not of each replica's share, under
    ``tf.distribute`` (Keras' ``BatchNormalization(synchronized=True)``, read at every call).

    Without it each replica's moving mean and variance follow its own share and the copies
    drift apart, so the saved model holds replica 0's. Saved models are written with
    ``synchronized=False``: the JAX backend refuses ``True`` (and needs none: it normalises
    the global batch as it is)."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = synchronized


def float32_outputs(model):
    """Under mixed precision the loss must see float32 outputs; wrap the model if it does not."""
    outputs = model.outputs
    if all(keras.backend.standardize_dtype(o.dtype) == "float32" for o in outputs):
        return model
    cast = [
        keras.layers.Activation("linear", dtype="float32", name=f"float32_{i}")(o)
        for i, o in enumerate(outputs)
    ]
    return keras.Model(model.inputs, cast if len(cast) > 1 else cast[0], name=model.name)
