"""PaddleSeg datasets: list files of ``image_path label_path`` lines, and a split writer."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

from seglab.data.sets import (
    DEFAULT_IGNORE_LABEL,
    DataError,
    Problem,
    SegmentationSet,
    pair_by_stem,
)

LIST_FILES = ("train_list.txt", "val_list.txt", "test_list.txt")


def load_list_file(
    root: str | os.PathLike,
    list_file: str | os.PathLike,
    num_classes: int,
    class_names: Sequence[str] = (),
    label_offset: int = 0,
    ignore_label: int | None = DEFAULT_IGNORE_LABEL,
) -> SegmentationSet:
    """Read a PaddleSeg list file: one ``image_path label_path`` pair per line, relative to
    ``root`` (absolute paths are kept). Blank lines are skipped. Label value ``ignore_label``
    marks pixels to ignore, 255 as in PaddleSeg (its ``ignore_index``); ``None`` for none.

    Raises:
        DataError: naming the list file and line of every malformed line, and every listed
            file that does not exist.
    """
    root = Path(root)
    list_path = Path(list_file) if Path(list_file).is_absolute() else root / list_file
    if not list_path.is_file():
        raise DataError(
            Problem(list_path, "list file not found (seglab.data.paddleseg.write_split writes one)")
        )
    pairs, problems = [], []
    for number, line in enumerate(list_path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            problems.append(
                Problem(
                    f"{list_path}:{number}",
                    f"expected 'image_path label_path', got {line.strip()!r}",
                )
            )
            continue
        image, label = (root / field for field in fields)
        for kind, path in (("image", image), ("label", label)):
            if not path.is_file():
                problems.append(
                    Problem(path, f"{kind} file not found (listed in {list_path}:{number})")
                )
        pairs.append((str(image), str(label)))
    if problems:
        raise DataError(problems)
    if not pairs:
        raise DataError(Problem(list_path, "the list file has no pairs"))
    return SegmentationSet(
        name=f"{root.name}/{list_path.stem}",
        pairs=tuple(pairs),
        mask_kind="class",
        num_classes=num_classes,
        label_offset=label_offset,
        class_names=tuple(class_names),
        root=str(root),
        ignore_label=ignore_label,
    )


def load_paddleseg(
    root: str | os.PathLike,
    num_classes: int = 2,
    class_names: Sequence[str] = (),
    ignore_label: int | None = DEFAULT_IGNORE_LABEL,
) -> tuple[SegmentationSet, SegmentationSet]:
    """``(train, val)`` from ``root/train_list.txt`` and ``root/val_list.txt``; label value
    ``ignore_label`` (PaddleSeg's 255) marks pixels to ignore, ``None`` for none."""
    return tuple(
        load_list_file(root, name, num_classes, class_names, ignore_label=ignore_label)
        for name in ("train_list.txt", "val_list.txt")
    )


def write_split(
    root: str | os.PathLike,
    images: str = "images",
    labels: str = "labels",
    val_fraction: float = 0.2,
    seed: int = 42,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write ``train_list.txt`` and ``val_list.txt`` for a folder of ``images/`` + ``labels/``.

    Images and labels are paired by file stem and sorted, then shuffled with ``seed``; the
    first ``val_fraction`` go to validation (4:1 by default). The same files and seed always
    give the same lists. Returns the paths of the two list files.
    """
    root = Path(root)
    targets = (root / "train_list.txt", root / "val_list.txt")
    existing = [str(path) for path in targets if path.exists()]
    if existing and not overwrite:
        raise DataError(
            Problem(", ".join(existing), "already exists; pass overwrite=True to replace it")
        )
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    pairs = pair_by_stem(root / images, root / labels)
    if len(pairs) < 2:
        raise DataError(Problem(root / images, f"{len(pairs)} pair(s) are too few to split"))
    random.Random(seed).shuffle(pairs)
    n_val = min(len(pairs) - 1, max(1, round(len(pairs) * val_fraction)))
    splits = (pairs[n_val:], pairs[:n_val])
    for target, split in zip(targets, splits, strict=True):
        lines = (
            f"{Path(image).relative_to(root).as_posix()} {Path(label).relative_to(root).as_posix()}"
            for image, label in split
        )
        target.write_text("".join(line + "\n" for line in lines))
    return targets
