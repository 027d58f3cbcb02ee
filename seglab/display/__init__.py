"""Figures, colour maps, a training callback and a notebook browser for segmentation."""

from seglab.display.callbacks import DisplayCallback
from seglab.display.colors import as_uint8_colormap, decode_segmentation, default_palette, overlay
from seglab.display.figures import (
    legend_handles,
    plot_class_balance,
    plot_history,
    plot_legend,
    plot_mask_histogram,
    show_samples,
    to_display_images,
)
from seglab.display.widgets import browse, render_sample

__all__ = [
    "show_samples",
    "to_display_images",
    "default_palette",
    "as_uint8_colormap",
    "decode_segmentation",
    "overlay",
    "legend_handles",
    "plot_legend",
    "plot_history",
    "plot_mask_histogram",
    "plot_class_balance",
    "DisplayCallback",
    "browse",
    "render_sample",
]
