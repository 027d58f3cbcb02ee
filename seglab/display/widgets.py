"""``browse``: an ipywidgets browser over samples, masks and predictions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seglab.display.figures import (
    figure_png,
    in_notebook,
    show_samples,
    to_display_images,
)
from seglab.display.maps import as_batch, class_ids, is_class_map, soft_values

__all__ = ["browse", "render_sample"]


def _iou(truth: np.ndarray, predicted: np.ndarray) -> float:
    union = np.logical_or(truth, predicted).sum()
    return float(np.logical_and(truth, predicted).sum() / union) if union else float("nan")


def render_sample(
    images,
    masks,
    predictions,
    index: int,
    *,
    threshold: float | None = None,
    class_id: int | None = None,
    class_names: Sequence[str] | None = None,
    **style,
):
    """The figure for one sample, as the browser shows it (returned, not shown).

    ``images`` uint8 ``(N, H, W, 3)``; ``masks`` and ``predictions`` ``(N, H, W, C)`` or None.
    Soft predictions are drawn as ``>= threshold``; with ``class_id`` the class maps are
    drawn as that class against the rest. The prediction's title gives this sample's IoU:
    the foreground IoU for soft maps (mask >= 0.5), the picked class's IoU, or the mean
    over classes present for all classes.
    """
    image = images[index : index + 1]
    mask = masks[index : index + 1] if masks is not None else None
    prediction = predictions[index : index + 1] if predictions is not None else None
    titles = ["Image"] + (["True mask"] if mask is not None else [])
    prediction_title = "Prediction"
    class_view = (mask is not None and is_class_map(mask)) or (
        prediction is not None and is_class_map(prediction)
    )
    if class_view and class_id is not None:
        name = class_names[class_id] if class_names else f"class {class_id}"
        if mask is not None:
            mask = (class_ids(mask) == class_id).astype(np.int64)[..., None]
        if prediction is not None:
            prediction = (class_ids(prediction) == class_id).astype(np.int64)[..., None]
        titles[1:] = [f"True mask: {name}"] if mask is not None else []
        style = {**style, "num_classes": 2, "colormap": None}
        class_names = None
    if prediction is not None and mask is not None:
        if class_view:
            truth, predicted = class_ids(mask)[0], class_ids(prediction)[0]
            present = np.union1d(np.unique(truth), np.unique(predicted))
            if class_id is None:
                score = np.nanmean([_iou(truth == c, predicted == c) for c in present])
                prediction_title = f"Prediction (mean IoU {score:.2f})"
            else:
                prediction_title = f"Prediction (IoU {_iou(truth == 1, predicted == 1):.2f})"
        else:
            cut = 0.5 if threshold is None else threshold
            score = _iou(soft_values(mask)[0] >= 0.5, soft_values(prediction)[0] >= cut)
            prediction_title = f"Prediction ≥ {cut:g} (IoU {score:.2f})"
    if prediction is not None:
        titles.append(prediction_title)
    return show_samples(
        image,
        mask,
        prediction,
        threshold=threshold,
        titles=titles,
        class_names=class_names,
        max_samples=1,
        show=False,
        **style,
    )


def browse(
    images,
    masks=None,
    predictions=None,
    *,
    num_classes: int | None = None,
    colormap=None,
    class_names: Sequence[str] | None = None,
    threshold: float = 0.5,
    max_static: int = 4,
):
    """Browse samples in a notebook: a sample slider, a threshold slider for soft predictions
    and a class picker for class maps. Returns the widget.

    Without ipywidgets or outside a Jupyter kernel it prints why, shows the first
    ``max_static`` samples with ``show_samples`` and returns None.
    Arguments as for ``show_samples``; ``predictions`` may be a model's list of outputs.
    """
    images = to_display_images(images)
    masks, predictions = as_batch(masks), as_batch(predictions)
    soft_predictions = predictions is not None and not is_class_map(predictions)
    class_maps = any(m is not None and is_class_map(m) for m in (masks, predictions))
    style = {"num_classes": num_classes, "colormap": colormap}

    try:
        import ipywidgets
    except ImportError:
        ipywidgets = None
    if ipywidgets is None or not in_notebook():
        why = "ipywidgets is not installed" if ipywidgets is None else "not in a notebook"
        shown = min(len(images), max_static)
        print(f"browse: {why}; showing the first {shown} of {len(images)} samples instead")
        show_samples(
            images,
            masks,
            predictions,
            threshold=threshold if soft_predictions else None,
            class_names=class_names,
            max_samples=max_static,
            **style,
        )
        return None

    from IPython.display import Image, display

    controls = {
        "index": ipywidgets.IntSlider(
            value=0, min=0, max=len(images) - 1, description="sample", continuous_update=False
        )
    }
    if soft_predictions:
        controls["threshold"] = ipywidgets.FloatSlider(
            value=threshold,
            min=0.0,
            max=1.0,
            step=0.01,
            description="threshold",
            continuous_update=False,
        )
    if class_maps:
        count = num_classes or (len(class_names) if class_names else None)
        if count is None:
            count = max(
                int(class_ids(m).max()) + 1 if is_class_map(m) else 2
                for m in (masks, predictions)
                if m is not None
            )
        names = list(class_names) if class_names else [f"class {i}" for i in range(count)]
        controls["class_id"] = ipywidgets.Dropdown(
            options=[("all classes", None)] + [(name, i) for i, name in enumerate(names)],
            value=None,
            description="class",
        )
    output = ipywidgets.Output()

    def update(_change=None):
        values = {name: control.value for name, control in controls.items()}
        fig = render_sample(
            images,
            masks,
            predictions,
            values.pop("index"),
            class_names=class_names,
            **values,
            **style,
        )
        with output:
            output.clear_output(wait=True)
            display(Image(data=figure_png(fig)))

    for control in controls.values():
        control.observe(update, names="value")
    update()
    return ipywidgets.VBox([ipywidgets.HBox(list(controls.values())), output])
