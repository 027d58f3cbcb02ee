"""build_training_state: the training step is traced once, and training is unchanged."""

import keras
import numpy as np
import pytest

from seglab.metrics import segmentation_metrics
from seglab.testing.models import small_segmentation_net
from seglab.training import build_training_state

tf = pytest.importorskip("tensorflow")
on_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="only TensorFlow traces the step twice"
)


def _compiled_model():
    keras.utils.set_random_seed(0)
    model = small_segmentation_net(3, (16, 16, 3))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=segmentation_metrics(3),
    )
    return model


def _dataset():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, 3, (8, 16, 16, 1)).astype("int32")
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)


def _traces_of_first_fit(model, dataset) -> tuple[int, dict]:
    traces = [0]
    train_step = model.train_step

    def counted(data):
        traces[0] += 1  # runs once per trace, never in the graph
        return train_step(data)

    model.train_step = counted
    history = model.fit(dataset, epochs=2, verbose=0)
    return traces[0], history.history


@on_tensorflow
def test_the_training_step_is_traced_once_and_trains_the_same():
    dataset = _dataset()
    unprepared = _compiled_model()
    traces_without, history_without = _traces_of_first_fit(unprepared, dataset)

    prepared = _compiled_model()
    assert build_training_state(prepared, dataset) is prepared
    assert prepared.optimizer.built
    assert prepared.optimizer.iterations.numpy() == 0  # nothing trained yet
    traces_with, history_with = _traces_of_first_fit(prepared, dataset)

    # Variables created in the first trace make TensorFlow trace again without them.
    assert (traces_without, traces_with) == (2, 1)
    assert history_with.keys() == history_without.keys()
    for key, values in history_without.items():
        np.testing.assert_allclose(history_with[key], values, rtol=1e-5, err_msg=key)
    assert history_with["loss"][1] < history_with["loss"][0]


@on_tensorflow
def test_a_batch_serves_as_well_as_a_dataset():
    images, labels = next(iter(_dataset()))
    model = build_training_state(_compiled_model(), (np.asarray(images), np.asarray(labels)))
    assert model.optimizer.built
    assert len(model.optimizer.variables) > 1  # Adam's slots, not only the step counter


def test_an_eager_model_is_left_to_its_first_step():
    model = _compiled_model()
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse", run_eagerly=True)
    build_training_state(model, _dataset())
    assert not model.optimizer.built  # no trace to save: the first eager step builds it


def test_an_uncompiled_model_is_refused_with_its_name():
    model = small_segmentation_net(2, (8, 8, 3))
    with pytest.raises(ValueError, match=f"{model.name} is not compiled"):
        build_training_state(model, _dataset())
