"""CIHP (Crowd Instance-level Human Parsing): 20 human-part classes, as the DeepLabV3+ tutorial
uses it.

Layout of the release (the tutorial's zip nests it twice)::

    instance-level_human_parsing/instance-level_human_parsing/
        human_colormap.mat
        Training/Images/<id>.jpg    Training/Category_ids/<id>.png   (class ids 0..19)
        Validation/Images/...       Validation/Category_ids/...
        Testing/Images/...          (no labels)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from seglab.data.download import download_from_google_drive
from seglab.data.folders import load_paired_folder
from seglab.data.sets import DataError, Problem, SegmentationSet

CIHP_DRIVE_FILE_ID = "1B9A9UCJYMwTL4oBEo4RZfbMZMaZhKJaz"
CIHP_FILE_NAME = "instance-level-human-parsing.zip"
COLORMAP_FILE_NAME = "human_colormap.mat"

CIHP_CLASS_NAMES = (
    "Background",
    "Hat",
    "Hair",
    "Glove",
    "Sunglasses",
    "UpperClothes",
    "Dress",
    "Coat",
    "Socks",
    "Pants",
    "Torso-skin",
    "Scarf",
    "Skirt",
    "Face",
    "Left-arm",
    "Right-arm",
    "Left-leg",
    "Right-leg",
    "Left-shoe",
    "Right-shoe",
)
CIHP_NUM_CLASSES = len(CIHP_CLASS_NAMES)
# The classes a mirror image swaps (left and right arm, leg, shoe): flip test-time
# augmentation swaps them in the mirrored prediction (seglab.predict, flip_pairs=).
CIHP_FLIP_PAIRS = ((14, 15), (16, 17), (18, 19))

_NESTED = "instance-level_human_parsing"
_SPLITS = ("Training", "Validation", "Testing")


def download_cihp(cache_dir: str | os.PathLike | None = None) -> Path:
    """Download (Google Drive, through gdown) and unpack the tutorial's CIHP zip once.

    Returns:
        The folder holding ``Training/``, ``Validation/`` and ``human_colormap.mat``.

    Raises:
        DownloadError: offline, or Google Drive refused (its download quota for public files
            is often exhausted); the message says where to put the zip by hand.
    """
    extracted = download_from_google_drive(
        CIHP_DRIVE_FILE_ID, file_name=CIHP_FILE_NAME, cache_dir=cache_dir
    )
    return find_cihp_root(extracted)


def find_cihp_root(root: str | os.PathLike) -> Path:
    """The folder holding the split folders: ``root`` itself, or one or two nested
    ``instance-level_human_parsing/`` folders below it."""
    root = Path(root)
    candidates = (root, root / _NESTED, root / _NESTED / _NESTED)
    for candidate in candidates:
        if any((candidate / split).is_dir() for split in _SPLITS):
            return candidate
    raise DataError(
        Problem(
            root,
            f"no CIHP layout found (looked for {'/, '.join(_SPLITS)}/ in "
            + ", ".join(str(c) for c in candidates)
            + ")",
        )
    )


def load_cihp(
    root: str | os.PathLike,
    split: str = "Training",
    limit: int | None = None,
    *,
    start: int = 0,
) -> SegmentationSet:
    """Pair ``<split>/Images/<id>.jpg`` with ``<split>/Category_ids/<id>.png`` (class ids 0..19).

    Pairs are in id order, so ``start``/``limit`` reproduce the tutorial's subsets: train
    ``load_cihp(root, limit=1000)``, validation ``load_cihp(root, limit=50, start=1000)``
    (both from ``Training``).

    Raises:
        DataError: the layout or split is not found, or an image has no mask (or the reverse).
    """
    if start < 0 or (limit is not None and limit < 1):
        raise ValueError(f"start must be >= 0 and limit positive or None, got {start}, {limit}")
    base = find_cihp_root(root)
    folder = base / split
    if not folder.is_dir():
        found = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise DataError(
            Problem(folder, f"split folder not found (found: {', '.join(found) or 'none'})")
        )
    dataset = load_paired_folder(
        folder,
        images="Images",
        masks="Category_ids",
        mask_kind="class",
        num_classes=CIHP_NUM_CLASSES,
        class_names=CIHP_CLASS_NAMES,
        name=f"cihp/{split}",
    )
    if start == 0 and limit is None:
        return dataset
    stop = None if limit is None else start + limit
    pairs = dataset.pairs[start:stop]
    if not pairs:
        raise DataError(Problem(folder, f"has {len(dataset)} pairs, none from index {start}"))
    return dataset.replace(pairs=pairs, name=f"{dataset.name}[{start}:{start + len(pairs)}]")


def load_cihp_colormap(path_or_root: str | os.PathLike, scale: float = 256) -> np.ndarray:
    """The 20 class colours from ``human_colormap.mat`` as ``uint8 (20, 3)`` RGB.

    The file stores each colour as ``value / 256`` (e.g. 0.99609375 for 255, 0.5 for 128), so
    ``scale=256`` gives the published LIP/CIHP palette exactly: hair (255, 0, 0), face
    (0, 0, 255), coat (0, 119, 221). ``scale=255`` is within one grey level of it. The
    DeepLabV3+ tutorial multiplies by 100, which gives the same hues at about 40 % brightness
    (hair (99, 0, 0)); pass ``scale=100`` to reproduce its figures. Values are truncated as the
    tutorial's ``astype(np.uint8)`` does.

    Args:
        path_or_root: the ``.mat`` file, a CIHP folder (any level ``find_cihp_root`` takes)
            or one of its split folders (``Training``, ``Validation``).
        scale: factor applied to the stored values before conversion to ``uint8``.

    Raises:
        DataError: the file is missing or unreadable, or holds no ``(N, 3)`` ``colormap`` in
            [0, 1].
    """
    from scipy.io import loadmat

    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    path = Path(path_or_root)
    if path.is_dir():
        # A split folder (``SegmentationSet.root`` of a loaded set) keeps the file one level up.
        root = path.parent if path.name in _SPLITS else find_cihp_root(path)
        path = root / COLORMAP_FILE_NAME
    if not path.is_file():
        raise DataError(Problem(path, "colormap file not found"))
    try:
        contents = loadmat(path)
    except Exception as err:  # scipy raises ValueError, TypeError or OSError by case
        raise DataError(Problem(path, f"not a readable MATLAB file ({err})")) from err
    if "colormap" not in contents:
        keys = sorted(k for k in contents if not k.startswith("__"))
        raise DataError(
            Problem(path, f"no 'colormap' variable (found: {', '.join(keys) or 'none'})")
        )
    colormap = np.asarray(contents["colormap"], dtype=np.float64)
    if colormap.ndim != 2 or colormap.shape[1] != 3:
        raise DataError(Problem(path, f"colormap has shape {colormap.shape}, expected (N, 3)"))
    if colormap.min() < 0 or colormap.max() > 1:
        raise DataError(
            f"{path}: colormap values span [{colormap.min()}, {colormap.max()}], expected [0, 1]"
        )
    return np.clip(np.floor(colormap * scale), 0, 255).astype(np.uint8)
