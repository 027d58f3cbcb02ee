"""``DisplayCallback``: predictions on fixed samples during training, like the TensorFlow pet
tutorial's, without flooding the output."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from seglab.display.figures import figure_png, in_notebook, show_samples
from seglab.models.heads import to_probabilities

__all__ = ["DisplayCallback"]


def _first_batch(samples):
    """``(images, masks)``, images alone, or a dataset (its first batch) → numpy arrays."""
    if isinstance(samples, (tuple, list)):
        batch = samples
    elif hasattr(samples, "as_numpy_iterator"):
        batch = next(samples.as_numpy_iterator())
    elif hasattr(samples, "__iter__") and not hasattr(samples, "shape"):
        batch = next(iter(samples))
    else:
        batch = (samples,)
    if not isinstance(batch, (tuple, list)):
        batch = (batch,)
    images = np.asarray(batch[0])
    masks = batch[1] if len(batch) > 1 else None
    if isinstance(masks, (tuple, list)):  # deep supervision targets repeat the mask
        masks = masks[0]
    masks = np.asarray(masks) if masks is not None else None
    if images.ndim == 3:  # one example, e.g. from an unbatched dataset
        images = images[None]
        masks = masks[None] if masks is not None else None
    if images.ndim != 4:
        raise ValueError(f"samples: expected images (N, H, W, 3), got {images.shape}")
    return images, masks


class DisplayCallback(keras.callbacks.Callback):
    """Shows image | true mask | prediction for a few fixed samples every ``every`` epochs.

    In a notebook the figure is updated in place (one output, not one per epoch, and the
    progress bar's lines stay). Elsewhere nothing is drawn: with ``save_dir`` each update is
    saved as ``epoch_NNN.png`` there; without it one line says predictions are not shown.

    Args:
        samples: ``(images, masks)``, images alone, or a dataset whose first batch is used.
        every: show after every ``every``-th epoch.
        max_samples: how many of the samples to show.
        save_dir: folder for the PNGs when not in a notebook.
        **style: passed to ``show_samples`` (``num_classes``, ``colormap``, ``class_names``,
            ``threshold``).
    """

    def __init__(
        self,
        samples,
        every: int = 1,
        max_samples: int = 3,
        save_dir: str | Path | None = None,
        **style,
    ):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        images, masks = _first_batch(samples)
        self.images = images[:max_samples]
        self.masks = masks[:max_samples] if masks is not None else None
        self.every = every
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.style = style
        self.updates = 0  # figures drawn so far
        self._handle = None
        self._announced = False

    def _figure(self, epoch: int):
        outputs = self.model.predict_on_batch(self.images)
        fig = show_samples(
            self.images,
            self.masks,
            to_probabilities(self.model, outputs),
            max_samples=len(self.images),
            show=False,
            **self.style,
        )
        fig.suptitle(f"Sample predictions after epoch {epoch + 1}")
        fig.tight_layout()  # makes room for the title above the column titles
        return fig

    def _say_once(self, message: str) -> None:
        if not self._announced:
            print(message)
            self._announced = True

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        if in_notebook():
            from IPython.display import Image, display

            image = Image(data=figure_png(self._figure(epoch)))
            if self._handle is None:
                self._handle = display(image, display_id=True)
            else:
                self._handle.update(image)
        elif self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            path = self.save_dir / f"epoch_{epoch + 1:03d}.png"
            self._figure(epoch).savefig(path, dpi=80, bbox_inches="tight")
            self._say_once(f"DisplayCallback: saving sample predictions to {self.save_dir}/")
        else:
            self._say_once(
                "DisplayCallback: not in a notebook, sample predictions are not shown "
                "(pass save_dir= to save them as images)"
            )
            return
        self.updates += 1
