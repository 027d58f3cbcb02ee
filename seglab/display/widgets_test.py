import matplotlib

matplotlib.use("Agg")

import sys  # noqa: E402

import ipywidgets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from seglab.display import widgets  # noqa: E402
from seglab.display.widgets import browse, render_sample  # noqa: E402

RNG = np.random.default_rng(4)
IMAGES = RNG.integers(0, 256, size=(5, 6, 6, 3), dtype=np.uint8)
SOFT_MASKS = RNG.uniform(size=(5, 6, 6, 1)).astype(np.float32)
SOFT_PREDICTIONS = RNG.uniform(size=(5, 6, 6, 1)).astype(np.float32)
CLASS_MASKS = RNG.integers(0, 3, size=(5, 6, 6, 1)).astype(np.int32)
LOGITS = RNG.normal(size=(5, 6, 6, 3)).astype(np.float32)


def _pixels(ax):
    return np.asarray(ax.images[0].get_array())


@pytest.fixture
def renders(monkeypatch):
    """Pretend to be in a notebook and record what the browser renders."""
    calls = []
    real = widgets.render_sample

    def recording(*args, **kwargs):
        calls.append((args[3], kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(widgets, "in_notebook", lambda: True)
    monkeypatch.setattr(widgets, "render_sample", recording)
    return calls


def _controls(widget):
    controls, _output = widget.children
    return {type(c).__name__: c for c in controls.children}


def test_browser_for_saliency_maps(renders):
    widget = browse(IMAGES, SOFT_MASKS, [SOFT_PREDICTIONS, SOFT_PREDICTIONS], threshold=0.4)
    assert isinstance(widget, ipywidgets.VBox)
    controls = _controls(widget)
    assert set(controls) == {"IntSlider", "FloatSlider"}
    assert controls["IntSlider"].max == 4 and controls["FloatSlider"].value == 0.4
    assert renders[-1] == (
        0,
        {"class_names": None, "threshold": 0.4, "num_classes": None, "colormap": None},
    )
    controls["IntSlider"].value = 3
    controls["FloatSlider"].value = 0.7
    assert [(index, kw["threshold"]) for index, kw in renders] == [(0, 0.4), (3, 0.4), (3, 0.7)]


def test_browser_for_class_maps(renders):
    widget = browse(IMAGES, CLASS_MASKS, LOGITS, class_names=["bg", "cat", "dog"])
    controls = _controls(widget)
    assert set(controls) == {"IntSlider", "Dropdown"}
    picker = controls["Dropdown"]
    assert [label for label, _ in picker.options] == ["all classes", "bg", "cat", "dog"]
    picker.value = 2
    assert renders[-1][1]["class_id"] == 2


def test_render_sample_threshold_and_iou():
    fig = render_sample(IMAGES, SOFT_MASKS, SOFT_PREDICTIONS, 1, threshold=0.3)
    prediction_ax = fig.axes[2]
    predicted = SOFT_PREDICTIONS[1, ..., 0] >= 0.3
    truth = SOFT_MASKS[1, ..., 0] >= 0.5
    iou = (truth & predicted).sum() / (truth | predicted).sum()
    assert prediction_ax.get_title() == f"Prediction ≥ 0.3 (IoU {iou:.2f})"
    np.testing.assert_array_equal(_pixels(prediction_ax)[..., 0], np.where(predicted, 255, 0))


def test_render_sample_one_class():
    fig = render_sample(
        IMAGES, CLASS_MASKS, LOGITS, 2, class_id=1, class_names=["bg", "cat", "dog"]
    )
    mask_ax, prediction_ax = fig.axes[1:]
    truth = CLASS_MASKS[2, ..., 0] == 1
    predicted = LOGITS[2].argmax(-1) == 1
    assert mask_ax.get_title() == "True mask: cat"
    np.testing.assert_array_equal(_pixels(mask_ax)[..., 1], np.where(truth, 255, 0))
    iou = (truth & predicted).sum() / (truth | predicted).sum()
    assert prediction_ax.get_title() == f"Prediction (IoU {iou:.2f})"


def test_fallback_without_ipywidgets(monkeypatch, capsys):
    shown = []
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import fails
    monkeypatch.setattr(widgets, "in_notebook", lambda: True)
    monkeypatch.setattr(widgets, "show_samples", lambda *a, **kw: shown.append((a, kw)))
    assert browse(IMAGES, SOFT_MASKS, SOFT_PREDICTIONS) is None
    assert (
        "ipywidgets is not installed; showing the first 4 of 5 samples" in capsys.readouterr().out
    )
    ((args, kwargs),) = shown
    assert kwargs["max_samples"] == 4 and kwargs["threshold"] == 0.5


def test_fallback_outside_a_notebook(monkeypatch, capsys):
    shown = []
    monkeypatch.setattr(widgets, "show_samples", lambda *a, **kw: shown.append(kw))
    assert browse(IMAGES, CLASS_MASKS, LOGITS, max_static=2) is None
    assert "not in a notebook" in capsys.readouterr().out
    assert shown[0]["threshold"] is None and shown[0]["max_samples"] == 2
