"""BBBC038 (the 2018 Data Science Bowl's ``stage1_train``): nuclei micrographs, 2 classes.

Lesson 04 trains on it by default: the activated-sludge micrographs of the original tutorial
are not public, and these are (CC0). The archive ``stage1_train.zip`` (670 images, about
83 MB) unpacks to one folder per image, with one mask file per nucleus::

    <id>/images/<id>.png        the micrograph (mostly RGBA PNG; the pipeline drops alpha)
    <id>/masks/<mask id>.png    one binary mask (0 / 255) per nucleus, image-sized

``prepare_bbbc038`` turns it into the PaddleSeg layout, as a user would with their own
micrographs: each image's masks merged into one label (0 background, 1 nucleus), then a
deterministic 4:1 split written by ``write_split``::

    images/<id>.png  labels/<id>.png  train_list.txt  val_list.txt

and ``load_bbbc038`` loads that folder with the PaddleSeg loader. Source: Caicedo et al.,
"Nucleus segmentation across imaging experiments: the 2018 Data Science Bowl", Nature Methods
16 (2019); image set BBBC038v1, Broad Bioimage Benchmark Collection,
https://bbbc.broadinstitute.org/BBBC038 .
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from seglab.data.download import default_cache_dir, download_and_extract
from seglab.data.paddleseg import load_paddleseg, write_split
from seglab.data.sets import DataError, Problem, SegmentationSet

BBBC038_URL = "https://data.broadinstitute.org/bbbc/BBBC038/stage1_train.zip"
BBBC038_FILE_NAME = "stage1_train.zip"
# No checksum is published for this archive, so the download is not verified by default. To
# pin a copy: seglab.data.register_file_hash("stage1_train.zip", "<sha256>"), or a JSON file
# named by SEGLAB_DOWNLOAD_HASHES (see seglab.data.download).
BBBC038_SHA256 = None
BBBC038_CLASS_NAMES = ("background", "nucleus")
CONVERTED_FOLDER = "bbbc038_paddleseg"
# Written last into a finished conversion: a folder with it is reused as it is.
MARKER = ".seglab-bbbc038.json"


def download_bbbc038(cache_dir: str | os.PathLike | None = None) -> Path:
    """Download and unpack ``stage1_train.zip`` once; returns the folder of image folders.

    Raises:
        DownloadError: offline or the server failed; the message says where to put the zip.
    """
    extracted = download_and_extract(
        BBBC038_URL, file_name=BBBC038_FILE_NAME, cache_dir=cache_dir, file_hash=BBBC038_SHA256
    )
    return find_stage1_root(extracted)


def find_stage1_root(root: str | os.PathLike) -> Path:
    """The folder whose sub-folders are ``<id>/images/``: ``root`` itself (the archive has no
    top folder) or ``root/stage1_train`` (unpacked with ``unzip -d stage1_train``)."""
    root = Path(root)
    for candidate in (root, root / "stage1_train"):
        if candidate.is_dir() and any((path / "images").is_dir() for path in candidate.iterdir()):
            return candidate
    raise DataError(
        f"{root}: no BBBC038 layout found (looked for <id>/images/<id>.png in {root} and in "
        f"{root / 'stage1_train'})"
    )


def convert_bbbc038(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    val_fraction: float = 0.2,
    seed: int = 42,
) -> Path:
    """Write the PaddleSeg layout of a BBBC038 folder into ``target``; returns ``target``.

    Each ``images/<id>.png`` is copied unchanged and ``labels/<id>.png`` is the union of the
    image's masks (8-bit, 0 background, 1 nucleus); then ``write_split(target, val_fraction,
    seed)``. A ``target`` already converted (it holds the marker file) is returned as it is.
    The conversion is written into ``<target>.partial`` and renamed when complete, so an
    interrupted run leaves no half-converted ``target``.

    Raises:
        DataError: every image folder without an image or without masks, and every unreadable
            image or mask or mask of another size, named; or ``target`` exists and is not a
            conversion.
    """
    from PIL import Image

    source, target = find_stage1_root(source), Path(target)
    if (target / MARKER).is_file():
        return target
    if target.exists() and any(target.iterdir()):
        raise DataError(
            f"{target}: exists and is not a finished BBBC038 conversion (no {MARKER}); remove "
            "it or choose another target folder"
        )
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "images").mkdir(parents=True)
    (partial / "labels").mkdir()

    problems, count = [], 0
    folders = sorted(
        path for path in source.iterdir() if path.is_dir() and not path.name.startswith((".", "__"))
    )  # skips __MACOSX/ and hidden folders an archiver may add
    for folder in folders:
        image_path = folder / "images" / f"{folder.name}.png"
        if not image_path.is_file():
            problems.append(Problem(image_path, "image not found"))
            continue
        try:
            with Image.open(image_path) as image:
                image.load()
                size = image.size
        except Exception as err:  # PIL raises several types for broken files
            problems.append(Problem(image_path, f"not a readable image ({err})"))
            continue
        mask_paths = sorted((folder / "masks").glob("*.png"))
        if not mask_paths:
            problems.append(Problem(folder / "masks", f"no mask files for {image_path.name}"))
            continue
        label = np.zeros((size[1], size[0]), np.uint8)
        for mask_path in mask_paths:
            try:
                with Image.open(mask_path) as mask_image:
                    mask = np.asarray(mask_image.convert("L"))
            except Exception as err:
                problems.append(Problem(mask_path, f"not a readable image ({err})"))
                continue
            if mask.shape != label.shape:
                problems.append(
                    Problem(
                        mask_path,
                        f"mask is {mask.shape[1]}x{mask.shape[0]}, its image "
                        f"{image_path.name} is {size[0]}x{size[1]}",
                    )
                )
                continue
            label |= (mask > 0).astype(np.uint8)
        shutil.copyfile(image_path, partial / "images" / image_path.name)
        Image.fromarray(label, "L").save(partial / "labels" / f"{folder.name}.png")
        count += 1
    if problems:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(problems)
    if count == 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(Problem(source, "no image folders"))

    write_split(partial, val_fraction=val_fraction, seed=seed)
    (partial / MARKER).write_text(
        json.dumps(
            {"source": str(source), "images": count, "val_fraction": val_fraction, "seed": seed}
        )
        + "\n"
    )
    if target.exists():  # an empty folder
        target.rmdir()
    partial.rename(target)
    return target


def prepare_bbbc038(
    source: str | os.PathLike | None = None,
    target: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """The PaddleSeg folder of BBBC038 ``stage1_train``, downloading and converting it once.

    Args:
        source: an unpacked ``stage1_train`` folder; ``None`` downloads ``stage1_train.zip``
            (or takes it from the download mirror) into ``cache_dir``.
        target: where the PaddleSeg layout goes; default ``<cache_dir>/bbbc038_paddleseg``.
        cache_dir: the download cache; default ``$KERAS_HOME/datasets``.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = Path(target) if target is not None else cache / CONVERTED_FOLDER
    if (target / MARKER).is_file():
        return target
    if source is None:
        source = download_bbbc038(cache)
    return convert_bbbc038(source, target)


def load_bbbc038(
    source: str | os.PathLike | None = None,
    target: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[SegmentationSet, SegmentationSet]:
    """``(train, val)`` of BBBC038 from its PaddleSeg folder (``prepare_bbbc038``'s
    arguments), loaded exactly as any PaddleSeg folder is."""
    root = prepare_bbbc038(source, target, cache_dir=cache_dir)
    return load_paddleseg(root, num_classes=2, class_names=BBBC038_CLASS_NAMES)
