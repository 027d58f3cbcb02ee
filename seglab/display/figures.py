"""Static figures: samples with masks and predictions, legends, training curves, mask analysis.

Every function takes ``show``: ``True`` (default) displays the figure and returns None (so a
notebook cell does not show it twice); ``False`` returns the ``matplotlib`` Figure, detached
from pyplot, for saving or testing.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from seglab.display.colors import as_uint8_colormap, decode_segmentation, default_palette, overlay
from seglab.display.maps import as_batch, class_ids, is_class_map, soft_values

__all__ = [
    "show_samples",
    "legend_handles",
    "plot_legend",
    "plot_history",
    "plot_mask_histogram",
    "plot_class_balance",
    "to_display_images",
]

_BINARY_COLORMAP = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)


# ------------------------------------------------------------------------------------------
# Showing a figure once, in a notebook or a script


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where ``IPython.display`` reaches the page)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def figure_png(fig, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _finish(fig, show: bool):
    """Show ``fig`` once (or not) and detach it from pyplot, which would show it again."""
    if show:
        if in_notebook():
            from IPython.display import Image, display

            display(Image(data=figure_png(fig)))
        else:
            plt.show()  # an interactive backend opens a window; Agg does nothing
    plt.close(fig)
    return None if show else fig


# ------------------------------------------------------------------------------------------
# Arrays to something imshow can draw


def to_display_images(images) -> np.ndarray:
    """Images ``(N, H, W, 3)`` or ``(H, W, 3)``, RGB 0..255 (uint8, or floats as
    ``make_dataset`` yields them) → uint8 ``(N, H, W, 3)``."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W, 3) or (H, W, 3), got {images.shape}")
    if images.dtype == np.uint8:
        return images
    low, high = float(images.min(initial=0)), float(images.max(initial=0))
    if low < 0.0 or high > 255.0:
        raise ValueError(
            f"images hold values in [{low:.2f}, {high:.2f}]; seglab images are RGB 0..255 "
            "(the models normalise their input themselves)"
        )
    return np.round(images).astype(np.uint8)


class _MapStyle:
    """How masks and predictions are drawn: grey for soft and binary maps, colours for classes."""

    def __init__(
        self, maps: Sequence[np.ndarray | None], num_classes=None, colormap=None, threshold=None
    ):
        present = [m for m in maps if m is not None]
        self.threshold = threshold
        if num_classes is None:
            num_classes = 0
            for m in present:
                if m.shape[-1] > 1:
                    num_classes = max(num_classes, m.shape[-1])
                elif is_class_map(m) and m.size:
                    num_classes = max(num_classes, int(m.max()) + 1)
            num_classes = max(num_classes, 2)
        self.num_classes = num_classes
        if colormap is not None:
            self.colormap = as_uint8_colormap(colormap)
        elif num_classes == 2:
            self.colormap = _BINARY_COLORMAP
        else:
            self.colormap = default_palette(num_classes)

    def rgb(self, maps: np.ndarray, index: int, is_prediction: bool) -> np.ndarray:
        """One map as uint8 RGB."""
        one = maps[index : index + 1]
        if is_class_map(one):
            return decode_segmentation(class_ids(one)[0], self.colormap)
        values = soft_values(one)[0]
        if is_prediction and self.threshold is not None:
            values = (values >= self.threshold).astype(np.float32)
        grey = np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)


def legend_handles(class_names: Sequence[str], colormap=None) -> list:
    """Matplotlib patches, one per class, for ``ax.legend(handles=...)``."""
    colors = (
        as_uint8_colormap(colormap) if colormap is not None else default_palette(len(class_names))
    )
    if len(colors) < len(class_names):
        raise ValueError(
            f"{len(class_names)} class names but the colormap has {len(colors)} colours"
        )
    return [
        Patch(facecolor=colors[i] / 255.0, edgecolor="0.5", label=name)
        for i, name in enumerate(class_names)
    ]


def show_samples(
    images,
    masks=None,
    predictions=None,
    *,
    num_classes: int | None = None,
    colormap=None,
    class_names: Sequence[str] | None = None,
    threshold: float | None = None,
    overlay_alpha: float | None = None,
    titles: Sequence[str] | None = None,
    max_samples: int = 4,
    figsize_per_panel: float = 3.0,
    show: bool = True,
):
    """One row per sample: image | true mask | prediction (the columns given).

    Args:
        images: ``(N, H, W, 3)`` (or one ``(H, W, 3)``), RGB 0..255 (uint8 or float).
        masks, predictions: ``(N, H, W)``, ``(N, H, W, 1)`` or, for predictions,
            ``(N, H, W, C)`` class scores (argmaxed). Integer maps are class ids; float
            one-channel maps are probabilities (saliency) drawn in grey
            (``seglab.models.to_probabilities`` turns a model's outputs into them).
        num_classes, colormap: class colours; by default black/white for two classes and
            ``default_palette`` otherwise.
        class_names: adds a legend of the class colours.
        threshold: draws soft predictions as binary (``>= threshold``).
        overlay_alpha: blends the mask columns over the image.
        titles: column titles (default "Image", "True mask", "Prediction").
    """
    images = to_display_images(images)
    masks, predictions = as_batch(masks), as_batch(predictions)
    count = min(len(images), max_samples)
    columns = [("image", images)] + [
        (k, m) for k, m in (("mask", masks), ("prediction", predictions)) if m is not None
    ]
    for kind, array in columns[1:]:
        if len(array) < count or array.shape[1:3] != images.shape[1:3]:
            raise ValueError(f"{kind}s {array.shape} do not match images {images.shape}")
    default_titles = {"image": "Image", "mask": "True mask", "prediction": "Prediction"}
    if threshold is not None and predictions is not None and not is_class_map(predictions):
        default_titles["prediction"] = f"Prediction ≥ {threshold:g}"
    titles = list(titles) if titles is not None else [default_titles[k] for k, _ in columns]
    if len(titles) != len(columns):
        raise ValueError(f"{len(titles)} titles for {len(columns)} columns")

    maps = [m for m in (masks, predictions) if m is not None]
    if num_classes is None and class_names and maps and all(is_class_map(m) for m in maps):
        # The names say how many classes there are, whatever ids these maps happen to hold.
        num_classes = len(class_names)
    style = _MapStyle([masks, predictions], num_classes, colormap, threshold)
    size = figsize_per_panel
    legend_columns = max(1, min(len(class_names or ()), 2 * len(columns)))
    legend_rows = -(-len(class_names or ()) // legend_columns)
    legend_height = 0.3 * legend_rows + 0.2 if class_names else 0.0
    fig = plt.figure(figsize=(size * len(columns), size * count + legend_height))
    grid = fig.add_gridspec(
        count + bool(class_names),
        len(columns),
        height_ratios=[size] * count + ([legend_height] if class_names else []),
    )
    for row in range(count):
        for column, (kind, array) in enumerate(columns):
            ax = fig.add_subplot(grid[row, column])
            if kind == "image":
                picture = array[row] if array.shape[-1] == 3 else np.repeat(array[row], 3, -1)
            else:
                picture = style.rgb(array, row, is_prediction=kind == "prediction")
                if overlay_alpha is not None:
                    picture = overlay(images[row], picture, overlay_alpha)
            ax.imshow(picture)
            ax.axis("off")
            if row == 0:
                ax.set_title(titles[column])
    if class_names:
        # The legend gets its own row, as tall as its entries need (CIHP has 20).
        legend_ax = fig.add_subplot(grid[count, :])
        legend_ax.axis("off")
        legend_ax.legend(
            handles=legend_handles(class_names, style.colormap),
            loc="center",
            ncol=legend_columns,
            frameon=False,
            fontsize="small",
        )
    fig.tight_layout()
    return _finish(fig, show)


def plot_legend(class_names: Sequence[str], colormap=None, show: bool = True):
    """A swatch and the name of each class, e.g. for CIHP's 20 parts."""
    handles = legend_handles(class_names, colormap)
    rows = (len(handles) + 1) // 2
    fig, ax = plt.subplots(figsize=(5, 0.35 * rows + 0.4))
    ax.legend(handles=handles, loc="center", ncol=2, frameon=False)
    ax.axis("off")
    return _finish(fig, show)


def plot_history(history, metrics: Sequence[str] | None = None, show: bool = True):
    """Training curves: one panel per metric (loss first), training and validation.

    ``history``: a Keras ``History`` or its ``.history`` dict. ``metrics`` picks panels by
    name; by default every key without the ``val_`` prefix except the learning rate.
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, Mapping) or not logs:
        raise ValueError("history must be a Keras History or a non-empty dict of lists")
    if metrics is None:
        metrics = [k for k in logs if not k.startswith("val_") and k not in ("learning_rate", "lr")]
        metrics.sort(key=lambda k: k != "loss")
    missing = [m for m in metrics if m not in logs and f"val_{m}" not in logs]
    if missing:
        raise ValueError(f"not in the history: {missing}; it has {sorted(logs)}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
    for ax, name in zip(axes[0], metrics, strict=True):
        for key, label, style in ((name, "training", "-o"), (f"val_{name}", "validation", "--s")):
            if key in logs:
                values = np.asarray(logs[key], dtype=np.float64)
                ax.plot(np.arange(1, len(values) + 1), values, style, label=label, markersize=3)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _finish(fig, show)


def plot_mask_histogram(mask, bins: int = 256, show: bool = True):
    """Histogram of a saliency mask's intensities (0..255), as in BASNet's mask analysis.

    Soft labels show up as counts between the two peaks at 0 and 255; the title gives the
    number of distinct values and the share of pixels strictly between 0 and 255.
    ``mask``: uint8 0..255 or floats in [0, 1], any shape.
    """
    values = np.asarray(mask)
    if np.issubdtype(values.dtype, np.floating):
        if values.size and (values.min() < 0.0 or values.max() > 1.0):
            raise ValueError("a float mask must hold values in [0, 1]")
        values = np.round(values * 255.0)
    values = values.astype(np.int64).reshape(-1)
    if values.size == 0 or values.min() < 0 or values.max() > 255:
        raise ValueError("mask must be non-empty with values in 0..255")
    distinct = np.unique(values).size
    between = float(np.mean((values > 0) & (values < 255)))
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(values, bins=bins, range=(0, 256), color="0.3")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5)  # bars grow from one pixel, not from the smallest count
    ax.set_xlabel("mask value")
    ax.set_ylabel("pixels")
    ax.set_title(f"{distinct} distinct values, {between:.1%} of pixels between 0 and 255")
    fig.tight_layout()
    return _finish(fig, show)


def plot_class_balance(counts, class_names: Sequence[str] | None = None, show: bool = True):
    """Bar chart of each class's share of pixels (``counts``: a sequence or ``{name: count}``)."""
    if isinstance(counts, Mapping):
        class_names = list(counts)
        counts = list(counts.values())
    counts = np.asarray(counts, dtype=np.float64).reshape(-1)
    if counts.size == 0 or np.any(counts < 0) or counts.sum() <= 0:
        raise ValueError("counts must be non-negative with a positive sum")
    class_names = (
        list(class_names) if class_names is not None else [str(i) for i in range(len(counts))]
    )
    if len(class_names) != len(counts):
        raise ValueError(f"{len(class_names)} class names for {len(counts)} counts")
    shares = counts / counts.sum()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(counts) + 1), 3.2))
    bars = ax.bar(class_names, shares, color="0.45")
    ax.bar_label(bars, labels=[f"{s:.1%}" for s in shares], fontsize=8)
    ax.set_ylabel("share of pixels")
    ax.set_ylim(0, min(1.0, shares.max() * 1.2 + 0.02))
    fig.tight_layout()
    return _finish(fig, show)
