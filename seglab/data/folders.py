"""Generic ``images/`` + ``masks/`` folders, paired by file name stem."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from seglab.data.sets import MaskKind, Problem, SegmentationSet, pair_by_stem


def load_paired_folder(
    root: str | os.PathLike,
    images: str = "images",
    masks: str = "masks",
    mask_kind: MaskKind = "soft",
    num_classes: int = 1,
    class_names: Sequence[str] = (),
    label_offset: int = 0,
    name: str | None = None,
    unpaired: list[Problem] | None = None,
) -> SegmentationSet:
    """Pair ``root/images/<stem>.*`` with ``root/masks/<stem>.*``.

    The default reads saliency masks (``mask_kind="soft"``, stored 0..255); for class-id masks
    pass ``mask_kind="class"`` and ``num_classes``.

    Raises:
        DataError: a folder is missing or empty, or an image has no mask (or the reverse);
            every such file is named (unless ``unpaired`` collects them: see
            ``pair_by_stem``).
    """
    root = Path(root)
    if mask_kind == "class" and num_classes < 2:
        raise ValueError("class masks need num_classes >= 2 (background is a class)")
    return SegmentationSet(
        name=name or root.name,
        pairs=tuple(pair_by_stem(root / images, root / masks, unpaired=unpaired)),
        mask_kind=mask_kind,
        num_classes=num_classes,
        label_offset=label_offset,
        class_names=tuple(class_names),
        root=str(root),
    )
