"""What the four notebooks share: the smoke switch and where a lesson's data comes from."""

from __future__ import annotations

import os
from pathlib import Path

# The course's sample datasets (in the folder named by SEGLAB_SAMPLE_DATA), by recipe dataset.
SAMPLE_FOLDERS = {
    "oxford_pets": "oxford_pets_sample",
    "cihp": "cihp_sample",
    "duts_te": "sod_sample",
    "paddleseg": "microscopy_sample",
}


def smoke_mode() -> bool:
    """True when ``SEGLAB_SMOKE`` asks for the small configuration (the test suite sets it)."""
    return os.environ.get("SEGLAB_SMOKE", "").strip().lower() in {"1", "true", "yes", "on"}


def sample_folder(dataset: str) -> Path | None:
    """The course's sample of ``dataset`` when ``SEGLAB_SAMPLE_DATA`` points at it, else None."""
    root = os.environ.get("SEGLAB_SAMPLE_DATA")
    name = SAMPLE_FOLDERS.get(dataset)
    if not root or name is None:
        return None
    path = Path(root).expanduser() / name
    return path if path.is_dir() else None


def load_lesson_data(recipe, data_dir=None, smoke=False):
    """``(train_set, val_set)`` for a notebook, saying where they came from.

    ``data_dir`` wins when given. Otherwise a smoke run uses the course's real sample of the
    dataset when it is available and a synthetic set (on disk, in a temporary folder) when it
    is not; a full run downloads the real dataset (``recipe.load_data``).
    """
    if data_dir is not None:
        print(f"Data: {data_dir}")
        return recipe.load_data(data_dir)
    if smoke:
        sample = sample_folder(recipe.dataset)
        if sample is not None:
            print(f"Smoke run on the course's sample data: {sample}")
            return recipe.load_data(sample)
        print(
            "No dataset given and no sample data found (SEGLAB_SAMPLE_DATA): "
            "this smoke run uses a SYNTHETIC dataset, so the pictures below are made up."
        )
        return recipe.load_data(synthetic=True)
    return recipe.load_data(None, download=True)
