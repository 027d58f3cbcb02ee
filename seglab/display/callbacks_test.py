import matplotlib

matplotlib.use("Agg")

import IPython.display  # noqa: E402
import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from seglab.display import callbacks  # noqa: E402
from seglab.display.callbacks import DisplayCallback  # noqa: E402
from seglab.models.heads import SegmentationOutput  # noqa: E402

RNG = np.random.default_rng(3)


def _tiny_model(channels=1, outputs=1):
    inputs = keras.Input((8, 8, 3))
    activation = "sigmoid" if channels == 1 else "linear"
    heads = [
        SegmentationOutput(activation, prediction=index == 0)(
            keras.layers.Conv2D(channels, 1)(inputs)
        )
        for index in range(outputs)
    ]
    model = keras.Model(inputs, heads if outputs > 1 else heads[0])
    loss = (
        "binary_crossentropy"
        if channels == 1
        else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.compile(optimizer="sgd", loss=[loss] * outputs if outputs > 1 else loss)
    return model


def _data(channels=1):
    x = RNG.uniform(0, 255, size=(4, 8, 8, 3)).astype(np.float32)
    if channels == 1:
        y = RNG.uniform(size=(4, 8, 8, 1)).astype(np.float32)
    else:
        y = RNG.integers(0, channels, size=(4, 8, 8, 1)).astype(np.int32)
    return x, y


def test_outside_a_notebook_one_line_and_nothing_drawn(capsys):
    x, y = _data()
    callback = DisplayCallback((x[:2], y[:2]))
    _tiny_model().fit(x, y, epochs=3, batch_size=2, verbose=0, callbacks=[callback])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines == [
        "DisplayCallback: not in a notebook, sample predictions are not shown "
        "(pass save_dir= to save them as images)"
    ]
    assert callback.updates == 0 and plt.get_fignums() == []


def test_save_dir_every_second_epoch(tmp_path, capsys):
    x, y = _data(channels=3)
    callback = DisplayCallback(
        (x, y), every=2, max_samples=2, save_dir=tmp_path / "shots", class_names=["a", "b", "c"]
    )
    _tiny_model(channels=3, outputs=2).fit(
        x, (y, y), epochs=4, batch_size=2, verbose=0, callbacks=[callback]
    )
    assert sorted(p.name for p in (tmp_path / "shots").iterdir()) == [
        "epoch_002.png",
        "epoch_004.png",
    ]
    assert callback.updates == 2
    assert capsys.readouterr().out.count("DisplayCallback") == 1
    assert plt.get_fignums() == []


def test_in_a_notebook_one_display_then_updates(monkeypatch):
    shown = []

    class Handle:
        def update(self, image):
            shown.append(("update", image))

    def fake_display(image, display_id=False):
        shown.append(("display", image))
        return Handle()

    monkeypatch.setattr(callbacks, "in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", fake_display)
    x, y = _data()
    tf = pytest.importorskip("tensorflow")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    callback = DisplayCallback(dataset, threshold=0.5)
    assert callback.images.shape == (2, 8, 8, 3)
    _tiny_model().fit(x, y, epochs=3, batch_size=2, verbose=0, callbacks=[callback])
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    assert all(image.data.startswith(b"\x89PNG") for _, image in shown)


def test_one_unbatched_example_becomes_a_batch():
    x, y = _data()
    callback = DisplayCallback((x[0], y[0]))
    assert callback.images.shape == (1, 8, 8, 3) and callback.masks.shape == (1, 8, 8, 1)


def test_bad_every():
    with pytest.raises(ValueError, match="every"):
        DisplayCallback(np.zeros((1, 8, 8, 3)), every=0)
