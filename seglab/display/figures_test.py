import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from seglab.display.colors import decode_segmentation, default_palette, overlay  # noqa: E402
from seglab.display.figures import (  # noqa: E402
    plot_class_balance,
    plot_history,
    plot_legend,
    plot_mask_histogram,
    show_samples,
    to_display_images,
)

RNG = np.random.default_rng(2)


def _pixels(ax):
    return np.asarray(ax.images[0].get_array())


def test_show_samples_class_maps_from_logits():
    images = RNG.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    masks = RNG.integers(0, 3, size=(3, 8, 8, 1)).astype(np.int32)
    logits = RNG.normal(size=(3, 8, 8, 3)).astype(np.float32)
    fig = show_samples(
        images,
        masks,
        [logits, logits[..., :1]],
        class_names=["bg", "pet", "edge"],
        max_samples=2,
        show=False,
    )
    *axes, legend_ax = fig.axes
    assert len(axes) == 6
    assert [ax.get_title() for ax in axes[:3]] == ["Image", "True mask", "Prediction"]
    assert all(ax.get_title() == "" for ax in axes[3:])
    np.testing.assert_array_equal(_pixels(axes[0]), images[0])
    np.testing.assert_array_equal(
        _pixels(axes[4]), decode_segmentation(masks[1], default_palette(3))
    )
    np.testing.assert_array_equal(
        _pixels(axes[5]), decode_segmentation(logits[1].argmax(-1), default_palette(3))
    )
    legend = legend_ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["bg", "pet", "edge"]


def test_show_samples_soft_maps_threshold_and_float_images():
    images = RNG.uniform(0, 255, size=(2, 6, 6, 3)).astype(np.float32)  # as make_dataset yields
    masks = RNG.uniform(size=(2, 6, 6, 1)).astype(np.float32)
    probabilities = RNG.uniform(size=(2, 6, 6, 1)).astype(np.float32)
    fig = show_samples(images, masks, probabilities, threshold=0.3, show=False)
    image_ax, mask_ax, prediction_ax = fig.axes[:3]
    assert prediction_ax.get_title() == "Prediction ≥ 0.3"
    np.testing.assert_array_equal(_pixels(image_ax), np.round(images[0]).astype(np.uint8))
    np.testing.assert_array_equal(_pixels(mask_ax)[..., 0], np.round(masks[0, ..., 0] * 255))
    np.testing.assert_array_equal(
        _pixels(prediction_ax)[..., 0], np.where(probabilities[0, ..., 0] >= 0.3, 255, 0)
    )


def test_show_samples_binary_ids_in_black_and_white_and_overlay():
    images = np.full((1, 4, 4, 3), 200, np.uint8)
    masks = np.zeros((1, 4, 4), np.int32)
    masks[0, :2] = 1
    fig = show_samples(images, masks, show=False)
    assert len(fig.axes) == 2
    assert _pixels(fig.axes[1])[0, 0].tolist() == [255, 255, 255]
    assert _pixels(fig.axes[1])[3, 3].tolist() == [0, 0, 0]
    fig = show_samples(images, masks, overlay_alpha=0.5, show=False)
    np.testing.assert_array_equal(
        _pixels(fig.axes[1]),
        overlay(images[0], decode_segmentation(masks[0], [[0, 0, 0], [255, 255, 255]]), 0.5),
    )


def test_class_names_set_the_palette_when_a_map_holds_fewer_classes():
    # A prediction that happens to hold classes 0 and 1 of three: colours of three classes
    # (not black and white), and a legend for all three names.
    images = np.full((1, 4, 4, 3), 200, np.uint8)
    masks = np.zeros((1, 4, 4), np.int32)
    masks[0, :2] = 1
    fig = show_samples(images, masks, class_names=["pet", "background", "border"], show=False)
    palette = default_palette(3)
    assert _pixels(fig.axes[1])[0, 0].tolist() == palette[1].tolist()
    assert _pixels(fig.axes[1])[3, 3].tolist() == palette[0].tolist()
    assert [text.get_text() for text in fig.axes[-1].get_legend().get_texts()] == [
        "pet",
        "background",
        "border",
    ]


def test_normalised_images_and_logits_are_refused_with_what_to_do():
    normalised = keras.applications.resnet.preprocess_input(
        RNG.integers(0, 256, size=(1, 4, 4, 3)).astype(np.float32)
    )
    with pytest.raises(ValueError, match="RGB 0..255"):
        to_display_images(normalised)
    logits = RNG.normal(size=(1, 4, 4, 1)).astype(np.float32) * 5
    with pytest.raises(ValueError, match="to_probabilities"):
        show_samples(np.zeros((1, 4, 4, 3), np.uint8), predictions=logits, show=False)


def test_show_samples_errors():
    images = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="do not match images"):
        show_samples(images, np.zeros((2, 5, 4), np.int32), show=False)
    with pytest.raises(ValueError, match="titles"):
        show_samples(images, titles=["a", "b"], show=False)


def test_show_true_returns_none_and_leaves_no_open_figure():
    plt.close("all")
    images = np.zeros((1, 4, 4, 3), np.uint8)
    assert show_samples(images) is None
    assert plt.get_fignums() == []
    fig = show_samples(images, show=False)
    assert plt.get_fignums() == [] and len(fig.axes) == 1  # detached but drawable
    fig.savefig(__import__("io").BytesIO(), format="png")


def test_plot_history_panels_and_lines():
    history = keras.callbacks.History()
    history.history = {
        "loss": [1.0, 0.5, 0.25],
        "mean_iou": [0.2, 0.4, 0.6],
        "learning_rate": [1e-3] * 3,
        "val_loss": [1.2, 0.7, 0.6],
        "val_mean_iou": [0.1, 0.3, 0.5],
    }
    fig = plot_history(history, show=False)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "mean_iou"]
    train, val = fig.axes[0].get_lines()
    assert train.get_xdata().tolist() == [1, 2, 3] and val.get_ydata().tolist() == [1.2, 0.7, 0.6]
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == [
        "training",
        "validation",
    ]
    fig = plot_history({"loss": [1.0, 0.9]}, show=False)
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 1
    with pytest.raises(ValueError, match="not in the history"):
        plot_history(history, metrics=["accuracy"], show=False)


def test_plot_mask_histogram_counts():
    mask = np.array([0] * 10 + [128] * 3 + [255] * 5, np.uint8).reshape(3, 6)
    fig = plot_mask_histogram(mask, show=False)
    ax = fig.axes[0]
    assert ax.get_title() == "3 distinct values, 16.7% of pixels between 0 and 255"
    heights = [patch.get_height() for patch in ax.patches]
    assert len(heights) == 256 and heights[0] == 10 and heights[128] == 3 and heights[255] == 5
    same = plot_mask_histogram(mask / 255.0, show=False)
    assert same.axes[0].get_title() == ax.get_title()


def test_plot_mask_histogram_on_a_real_mask(sample_data):
    mask_path = sorted((sample_data("sod_sample") / "masks").iterdir())[0]
    mask = np.asarray(Image.open(mask_path).convert("L"))
    title = plot_mask_histogram(mask, show=False).axes[0].get_title()
    assert title.startswith(f"{np.unique(mask).size} distinct values")


def test_plot_class_balance_shares():
    fig = plot_class_balance([60, 30, 10], ["pet", "background", "border"], show=False)
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.6, 0.3, 0.1])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["pet", "background", "border"]
    fig = plot_class_balance({"a": 1, "b": 3}, show=False)
    assert [p.get_height() for p in fig.axes[0].patches] == pytest.approx([0.25, 0.75])
    with pytest.raises(ValueError, match="2 class names for 3 counts"):
        plot_class_balance([1, 2, 3], ["a", "b"], show=False)


def test_plot_legend_colours():
    colormap = np.array([[0, 0, 0], [255, 0, 0], [0, 85, 0]], np.uint8)
    fig = plot_legend(["background", "hat", "hair"], colormap, show=False)
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["background", "hat", "hair"]
    colours = [
        tuple(np.round(np.array(h.get_facecolor()[:3]) * 255)) for h in legend.legend_handles
    ]
    assert colours == [(0, 0, 0), (255, 0, 0), (0, 85, 0)]
