"""DUTS-TE, the salient-object test set of DUTS (5,019 images), as the BASNet tutorial uses it.

The archive unpacks to ``DUTS-TE/DUTS-TE-Image/*.jpg`` and ``DUTS-TE/DUTS-TE-Mask/*.png``
(masks 0..255). The tutorial trains on its first 140 images, 90 % / 10 % in file order.
"""

from __future__ import annotations

import os
from pathlib import Path

from seglab.data.download import download_and_extract
from seglab.data.folders import load_paired_folder
from seglab.data.sets import DataError, Problem, SegmentationSet

DUTS_TE_URL = "http://saliencydetection.net/duts/download/DUTS-TE.zip"
DUTS_TE_FILE_NAME = "DUTS-TE.zip"
# No published checksum or exact byte count was found for this archive (pages quote
# "about 133 MB"), so the download is not verified; pass file_hash to check a copy.
DUTS_TE_SHA256 = None
DUTS_TE_SIZE = None

TUTORIAL_LIMIT = 140
TUTORIAL_VAL_FRACTION = 0.1

_IMAGE_DIR = "DUTS-TE-Image"
_MASK_DIR = "DUTS-TE-Mask"


def download_duts_te(
    cache_dir: str | os.PathLike | None = None,
    *,
    url: str = DUTS_TE_URL,
    file_hash: str | None = DUTS_TE_SHA256,
) -> Path:
    """Download and unpack DUTS-TE (about 133 MB) once; returns its ``DUTS-TE`` folder.

    ``url`` may point at a mirror (or a ``file://`` copy). Offline, the error says where to
    put ``DUTS-TE.zip`` by hand.
    """
    extracted = download_and_extract(
        url,
        file_name=DUTS_TE_FILE_NAME,
        cache_dir=cache_dir,
        file_hash=file_hash,
        size=DUTS_TE_SIZE,
    )
    return find_duts_te_root(extracted)


def find_duts_te_root(root: str | os.PathLike) -> Path:
    """``root`` itself when it holds ``DUTS-TE-Image/``, else ``root/DUTS-TE``."""
    root = Path(root)
    for candidate in (root, root / "DUTS-TE"):
        if (candidate / _IMAGE_DIR).is_dir():
            return candidate
    raise DataError(
        Problem(
            root,
            f"no DUTS-TE layout found (looked for {root / _IMAGE_DIR} and "
            f"{root / 'DUTS-TE' / _IMAGE_DIR}, or for images/ + masks/)",
        )
    )


def _salient_folders(root: Path) -> tuple[Path, str, str]:
    """The folder and sub-folder names of a DUTS-TE layout or of generic images/ + masks/."""
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return root, "images", "masks"
    return find_duts_te_root(root), _IMAGE_DIR, _MASK_DIR


def load_duts_te(
    root: str | os.PathLike,
    limit: int | None = None,
    val_fraction: float | None = None,
    seed: int | None = None,
) -> SegmentationSet | tuple[SegmentationSet, SegmentationSet]:
    """Pair ``DUTS-TE-Image/<stem>.jpg`` with ``DUTS-TE-Mask/<stem>.png`` (soft masks).

    Any other salient-object set laid out as ``images/`` + ``masks/`` (ECSSD, HKU-IS, your
    own) loads through the same code, with the same options.

    Args:
        root: the ``DUTS-TE`` folder, the folder that contains it, or a folder with
            ``images/`` and ``masks/``.
        limit: keep the first ``limit`` pairs in file-name order (the tutorial: 140).
        val_fraction: also split into ``(train, val)`` (the tutorial: 0.1, i.e. 126 / 14).
        seed: shuffle before splitting; ``None`` keeps the file order, as the tutorial does.

    Returns:
        One ``SegmentationSet``, or ``(train, val)`` when ``val_fraction`` is given.

    Raises:
        DataError: the layout is not found, or an image has no mask (or the reverse).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of pairs or None, got {limit}")
    folder, images, masks = _salient_folders(Path(root))
    name = "duts_te" if images == _IMAGE_DIR else folder.name
    dataset = load_paired_folder(
        folder, images=images, masks=masks, mask_kind="soft", num_classes=1, name=name
    ).take(limit)
    if val_fraction is None:
        return dataset
    return dataset.split(val_fraction, seed=seed)
