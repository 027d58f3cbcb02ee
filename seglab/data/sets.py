"""The description of a segmentation dataset that every loader returns."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from numbers import Integral
from pathlib import Path
from typing import Literal

from seglab.errors import SeglabError

MaskKind = Literal["class", "soft"]

# PaddleSeg's and MMSegmentation's "ignore" value: pixels storing it count in no loss or metric.
DEFAULT_IGNORE_LABEL = 255


@dataclasses.dataclass(frozen=True)
class Problem:
    """What is wrong with one file (or folder): ``path`` is ``""`` when no single one is at
    fault."""

    path: str
    message: str

    def __post_init__(self):
        object.__setattr__(self, "path", str(self.path))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class DataError(SeglabError, ValueError):
    """A dataset problem: the message names the file (or folder) and what is wrong with it.

    ``DataError(Problem(path, message))`` reports one problem ("path: message");
    ``DataError([problem, ...])`` several ("N problem(s):" then one a line, the first
    ``limit``); ``DataError("text")`` one about no single file. ``problems`` holds them all,
    as ``Problem`` items, for code that lists them (``seglab.data.check``).
    """

    def __init__(
        self,
        problems: str | Problem | Sequence[Problem],
        *,
        message: str | None = None,
        limit: int = 20,
    ):
        if isinstance(problems, str | Problem):
            one = problems if isinstance(problems, Problem) else Problem("", problems)
            self.problems = [one]
            message = str(one) if message is None else message
        else:
            self.problems = list(problems)
            if message is None:
                message = _join_problems([str(problem) for problem in self.problems], limit)
        super().__init__(message)


@dataclasses.dataclass(frozen=True)
class SegmentationSet:
    """Image/mask file pairs plus what the masks mean.

    Attributes:
        name: a short label, e.g. ``"oxford_pets/trainval"``.
        pairs: ``(image_path, mask_path)`` tuples, in a stable order.
        mask_kind: ``"class"`` for masks that store class ids (resized with nearest
            neighbour), ``"soft"`` for saliency masks stored 0..255 (resized bilinearly,
            scaled into [0, 1]).
        num_classes: number of classes after ``label_offset``; 1 for soft masks.
        label_offset: subtracted from stored mask values (the pet trimaps store 1, 2, 3).
        class_names: optional, one name per class.
        root: the dataset folder, for messages.
        ignore_label: the stored mask value of pixels to ignore (unlabelled, borders): they
            pass the label check, keep this value through the pipeline (``label_offset`` does
            not apply to it), get sample weight 0 and count in no loss or metric given the
            same value (``ignore_class=`` in Keras). ``None``: no value is ignored. Another
            value may not be a class id, stored or after ``label_offset``; 255 (the default)
            that is one (256 classes or more) becomes ``None``. Class masks only: soft sets
            always have ``None``.
    """

    name: str
    pairs: tuple[tuple[str, str], ...]
    mask_kind: MaskKind = "class"
    num_classes: int = 2
    label_offset: int = 0
    class_names: tuple[str, ...] = ()
    root: str | None = None
    ignore_label: int | None = DEFAULT_IGNORE_LABEL

    def __post_init__(self):
        if self.mask_kind not in ("class", "soft"):
            raise ValueError(f"mask_kind must be 'class' or 'soft', got {self.mask_kind!r}")
        if self.mask_kind == "soft" and self.num_classes != 1:
            raise ValueError("soft (saliency) masks have num_classes=1")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{len(self.class_names)} class names given for {self.num_classes} classes"
            )
        object.__setattr__(self, "pairs", tuple((str(i), str(m)) for i, m in self.pairs))
        object.__setattr__(self, "ignore_label", _valid_ignore_label(self))

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def image_paths(self) -> list[str]:
        return [image for image, _ in self.pairs]

    @property
    def mask_paths(self) -> list[str]:
        return [mask for _, mask in self.pairs]

    def replace(self, **changes) -> SegmentationSet:
        return dataclasses.replace(self, **changes)

    def take(self, count: int | None) -> SegmentationSet:
        """The first ``count`` pairs (all of them when ``count`` is None)."""
        if count is None:
            return self
        return self.replace(pairs=self.pairs[:count], name=f"{self.name}[:{count}]")

    def split(
        self, val_fraction: float, seed: int | None = None
    ) -> tuple[SegmentationSet, SegmentationSet]:
        """Split into (train, val). Without a seed the order is kept, as the tutorials do."""
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        pairs = list(self.pairs)
        if seed is not None:
            random.Random(seed).shuffle(pairs)
        n_train = round(len(pairs) * (1.0 - val_fraction))
        if n_train == 0 or n_train == len(pairs):
            raise DataError(
                f"{self.root or self.name}: {len(pairs)} pairs are too few for a "
                f"{val_fraction:.0%} validation split"
            )
        return (
            self.replace(pairs=tuple(pairs[:n_train]), name=f"{self.name}/train"),
            self.replace(pairs=tuple(pairs[n_train:]), name=f"{self.name}/val"),
        )


@dataclasses.dataclass(frozen=True)
class TensorSource:
    """Examples that arrive already decoded (tensorflow-datasets), with the same mask metadata.

    ``dataset`` is a ``tf.data.Dataset`` of ``(image, mask)``: ``uint8 (H, W, 3)`` and the mask
    as stored, ``uint8 (H, W, 1)`` (``label_offset`` not yet applied). ``make_dataset`` treats
    it exactly like decoded files, so both routes give identical tensors for the same image.
    ``ignore_label`` is as in ``SegmentationSet``.
    """

    name: str
    dataset: object
    mask_kind: MaskKind = "class"
    num_classes: int = 2
    label_offset: int = 0
    class_names: tuple[str, ...] = ()
    size: int | None = None
    ignore_label: int | None = DEFAULT_IGNORE_LABEL

    def __post_init__(self):
        object.__setattr__(self, "ignore_label", _valid_ignore_label(self))

    def __len__(self) -> int:
        if self.size is None:
            raise TypeError(f"{self.name}: size unknown")
        return self.size


def _valid_ignore_label(source) -> int | None:
    """The source's ignore label as an ``int``, or ``None`` for soft masks and for the default
    255 when it is a class id; ValueError when it is negative or (another value) a class id,
    stored or after ``label_offset``."""
    ignore = source.ignore_label
    if source.mask_kind == "soft" or ignore is None:
        return None
    if isinstance(ignore, bool) or not isinstance(ignore, Integral) or ignore < 0:
        raise ValueError(
            f"{source.name}: ignore_label must be None or a mask value >= 0, got {ignore!r}"
        )
    ignore, offset, count = int(ignore), source.label_offset, source.num_classes
    if 0 <= ignore < count or offset <= ignore < offset + count:
        if ignore == DEFAULT_IGNORE_LABEL:
            return None  # a set of 256 classes or more: 255 is one of them
        stored = f" (stored as {offset}..{offset + count - 1})" if offset else ""
        raise ValueError(
            f"{source.name}: ignore_label={ignore} is also a class id for "
            f"num_classes={count}{stored}; pass ignore_label=None (no ignored pixels) or a "
            f"value no class uses"
        )
    return ignore


def pair_by_stem(
    image_dir: str | Path,
    mask_dir: str | Path,
    image_suffixes: Sequence[str] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff"),
    mask_suffixes: Sequence[str] = (".png", ".bmp", ".gif", ".tif", ".tiff", ".jpg"),
    unpaired: list[Problem] | None = None,
) -> list[tuple[str, str]]:
    """Pair ``image_dir/<stem>.*`` with ``mask_dir/<stem>.*``.

    Raises DataError naming the folder when it is missing or empty, and naming the files
    when an image has no mask or a mask has no image. With a list as ``unpaired`` those
    files are described there instead and the pairs found are returned (``check`` does this
    to report every problem at once).
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(Problem(folder, "folder not found"))
    images = _files_by_stem(image_dir, image_suffixes)
    masks = _files_by_stem(mask_dir, mask_suffixes)
    if not images:
        raise DataError(
            Problem(image_dir, f"no images found (looked for {', '.join(image_suffixes)})")
        )
    missing_masks = sorted(set(images) - set(masks))
    missing_images = sorted(set(masks) - set(images))
    problems = [Problem(images[s], f"no mask in {mask_dir}") for s in missing_masks]
    problems += [Problem(masks[s], f"no image in {image_dir}") for s in missing_images]
    if problems and unpaired is None:
        raise DataError(problems)
    if unpaired is not None:
        unpaired.extend(problems)
    return [(str(images[s]), str(masks[s])) for s in sorted(images) if s in masks]


def _files_by_stem(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            if path.stem in found:
                raise DataError(
                    Problem(
                        path, f"two files share the name {path.stem!r} ({found[path.stem].name})"
                    )
                )
            found[path.stem] = path
    return found


def _join_problems(problems: Sequence[str], limit: int = 20) -> str:
    shown = list(problems[:limit])
    if len(problems) > limit:
        shown.append(f"... and {len(problems) - limit} more")
    return f"{len(problems)} problem(s):\n  " + "\n  ".join(shown)
