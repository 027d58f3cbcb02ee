"""Creating a compiled model's training state before ``fit``, so TensorFlow traces once.

Under TensorFlow (without a ``tf.distribute`` strategy) Keras creates the optimizer's slots and
the loss trackers' and metrics' variables inside the first trace of the training step. A
``tf.function`` that creates variables on its first call is traced a second time, without
them. For the U²-NetP ``cpu`` variant on 2 cores the first step took 91.9 s, and 4.6 s +
55.9 s with the variables created first (BENCHMARKS.md). ``build_training_state`` creates
them first, the way Keras' own ``fit`` does under a strategy and on the JAX and PyTorch
backends.
"""

from __future__ import annotations

import keras


def build_training_state(model: keras.Model, data) -> keras.Model:
    """Create ``model``'s optimizer, loss and metric variables now; returns ``model``.

    Call it after ``model.compile`` and before ``model.fit``. ``data`` is what ``fit`` will
    read: a ``tf.data.Dataset`` (only its ``element_spec`` is used) or one batch
    ``(images, labels[, sample_weights])``. Nothing is trained and no batch is computed.
    On JAX and PyTorch Keras' ``fit`` does this itself, and a model compiled with
    ``run_eagerly=True`` is never traced: for those it does nothing.
    """
    if getattr(model, "optimizer", None) is None:
        raise ValueError(f"{model.name} is not compiled: call model.compile(...) first")
    if keras.backend.backend() != "tensorflow" or model.run_eagerly:
        return model  # nothing is traced: the first step creates the variables as it goes
    # Keras' fit runs this same routine when a tf.distribute strategy is set; it reads only the
    # shapes and dtypes of the batch (or of the dataset's element_spec).
    model._symbolic_build(data_batch=getattr(data, "element_spec", data))
    return model
