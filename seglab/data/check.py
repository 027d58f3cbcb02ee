"""Find every problem of a dataset at once, before training starts.

``check(source)`` reads each pair with PIL in a thread pool and reports unreadable files,
missing files, image/mask size mismatches and label values outside ``[0, num_classes)`` (the
source's ``ignore_label`` is allowed). Masks that hold only 0 and 255 get a warning: they are
usually two-class masks saved as 0/255 instead of 0/1.
``check_folder(path)`` recognises a dataset folder's layout, loads it and checks it (the
``seglab check DATA_DIR`` command).
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from seglab.data.registry import DATASETS
from seglab.data.sets import (
    DEFAULT_IGNORE_LABEL,
    DataError,
    Problem,
    SegmentationSet,
    TensorSource,
)

# What tf.io.decode_image reads; PIL reads more (TIFF...), so check for it.
PIPELINE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")


@dataclasses.dataclass
class CheckReport:
    """What ``check`` found. ``problems`` lists them all (``ok`` is True without any);
    ``warnings`` lists what is allowed but probably a mistake (masks holding only 0 and 255).
    ``label_values`` counts the pixels of each class id seen (after ``label_offset``) in class
    masks; ``ignored_pixels`` those holding ``ignore_label``, which are not in it."""

    name: str
    checked: int = 0
    problems: list[Problem] = dataclasses.field(default_factory=list)
    label_values: dict[int, int] = dataclasses.field(default_factory=dict)
    layout: str | None = None
    warnings: list[Problem] = dataclasses.field(default_factory=list)
    ignored_pixels: int = 0
    ignore_label: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok

    def merge(self, other: CheckReport) -> None:
        self.checked += other.checked
        self.problems.extend(other.problems)
        # The train and val lists of one folder give the same warning once.
        self.warnings.extend(w for w in other.warnings if w not in self.warnings)
        for value, count in other.label_values.items():
            self.label_values[value] = self.label_values.get(value, 0) + count
        self.ignored_pixels += other.ignored_pixels
        self.ignore_label = self.ignore_label if other.ignore_label is None else other.ignore_label

    def __str__(self) -> str:
        head = f"{self.name}"
        if self.layout:
            head += f" ({self.layout})"
        head += f": {self.checked} pair(s) checked, "
        if self.ok:
            head += "no problems"
        else:
            head += f"{len(self.problems)} problem(s)"
        lines = [head]
        if self.label_values:
            values = ", ".join(f"{v}: {n}" for v, n in sorted(self.label_values.items()))
            lines.append(f"  label values (pixels): {values}")
        if self.ignored_pixels:
            lines.append(f"  ignored (label {self.ignore_label}): {self.ignored_pixels} pixels")
        lines += [f"  warning: {warning}" for warning in self.warnings]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)

    def raise_if_problems(self, limit: int = 30) -> None:
        if self.ok:
            return
        shown = [f"  {problem}" for problem in self.problems[:limit]]
        if len(self.problems) > limit:
            shown.append(
                f"  ... and {len(self.problems) - limit} more (seglab.data.check lists all)"
            )
        raise DataError(
            self.problems,
            message=f"{self.name}: {len(self.problems)} problem(s) in the data:\n"
            + "\n".join(shown),
        )


def read_mask(path: str | os.PathLike, mask_kind: str = "class") -> np.ndarray:
    """A mask file's values as a 2-D integer array, as the pipeline decodes them: class masks
    keep their stored ids (palette indices, 16-bit values); soft masks are grey levels 0..255
    at any bit depth. Colour files give their first channel."""
    return _read_mask(path, mask_kind)[0]


def _read_mask(path, mask_kind: str = "class") -> tuple[np.ndarray, str, str]:
    """(values, PIL format, PIL mode) with one read of the file."""
    from PIL import Image

    with Image.open(path) as mask:
        mask_format, mode = mask.format, mask.mode
        if mask_kind == "soft" and mode == "P":
            mask = mask.convert("RGB")  # TensorFlow expands the palette too
        values = np.asarray(mask)
    if values.ndim == 3:
        values = values[..., 0]
    if values.dtype == bool:  # 1-bit
        values = values.astype(np.uint8) * (255 if mask_kind == "soft" else 1)
    elif mask_kind == "soft" and values.dtype.itemsize > 1:
        values = (values.astype(np.int64) >> 8).astype(np.uint8)  # 16-bit grey, as libpng strips it
    return values, mask_format, mode


def _check_image(path: str, deep: bool) -> tuple[tuple[int, int] | None, list[str]]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.format not in PIPELINE_FORMATS:
                return image.size, [
                    f"{image.format} files cannot be decoded by the tf.data pipeline "
                    f"(it reads {', '.join(PIPELINE_FORMATS)}); convert it to PNG"
                ]
            if image.format == "JPEG" and image.mode == "CMYK":
                return image.size, ["CMYK JPEG; save it as RGB"]
            size = image.size
            if not deep and image.format == "JPEG":
                # Decoding at 1/8 scale still reads all the data, so truncation shows, cheaply.
                image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()
        return size, []
    except FileNotFoundError:
        return None, ["image file not found"]
    except Exception as error:  # PIL raises many types for bad files
        return None, [f"corrupt or unreadable image ({type(error).__name__}: {error})"]


def _check_pair(
    source: SegmentationSet, image_path: str, mask_path: str, deep: bool, check_labels: bool
):
    """(problems, pixel count per class id, ignored pixel count) of one pair."""
    problems: list[Problem] = []
    counts: dict[int, int] = {}
    ignored = 0
    image_size, image_problems = _check_image(image_path, deep)
    problems += [Problem(image_path, message) for message in image_problems]
    try:
        mask, mask_format, mask_mode = _read_mask(mask_path, source.mask_kind)
    except FileNotFoundError:
        problems.append(Problem(mask_path, f"mask file not found (for image {image_path})"))
        return problems, counts, ignored
    except Exception as error:
        problems.append(
            Problem(mask_path, f"corrupt or unreadable mask ({type(error).__name__}: {error})")
        )
        return problems, counts, ignored
    if mask_format not in PIPELINE_FORMATS:
        problems.append(
            Problem(
                mask_path,
                f"{mask_format} masks cannot be decoded by the tf.data pipeline; convert it to PNG",
            )
        )
    mask_size = (mask.shape[1], mask.shape[0])
    if image_size is not None and mask_size != image_size:
        problems.append(
            Problem(
                mask_path,
                f"mask size {mask_size[0]}x{mask_size[1]} differs from image size "
                f"{image_size[0]}x{image_size[1]} ({image_path})",
            )
        )
    if source.mask_kind == "class":
        stored, pixel_counts = _value_counts(mask)
        # The ignore label is a stored value: label_offset does not apply to it.
        is_ignored = stored == source.ignore_label
        ignored = int(pixel_counts[is_ignored].sum())
        values = stored[~is_ignored] - source.label_offset
        counts = {int(v): int(n) for v, n in zip(values, pixel_counts[~is_ignored], strict=True)}
        bad = values[(values < 0) | (values >= source.num_classes)]
        if check_labels and bad.size:
            offset = (
                f" after subtracting label_offset={source.label_offset}"
                if source.label_offset
                else ""
            )
            hint = ""
            if set(stored.tolist()) == {0, 255}:
                hint = "; a two-class mask saved as 0/255? Save it as 0/1 (divide it by 255)"
            problems.append(
                Problem(
                    mask_path,
                    f"label values {_short_list(bad)}{offset} outside [0, {source.num_classes}) "
                    f"for num_classes={source.num_classes}{_ignore_note(source)}{hint}",
                )
            )
    else:
        if mask_mode == "L" and mask.max(initial=0) == 1:
            problems.append(
                Problem(
                    mask_path,
                    "soft mask stores 0/1, expected 0..255 (is it a class-id mask? use mask_kind='class')",
                )
            )
    return problems, counts, ignored


def _ignore_note(source: SegmentationSet) -> str:
    if source.ignore_label is None:
        return " (ignore_label=None)"
    return f" (ignore_label={source.ignore_label} is allowed)"


_SAVE_AS_0_1 = (
    "If 255 marks the foreground, save the masks as 0/1 (divide them by 255), or read them "
    "as saliency masks 0..255 (mask_kind='soft', the images/ + masks/ layout)"
)


def _zero_255_warning(source: SegmentationSet, report: CheckReport, check_labels: bool):
    """A warning when every mask holds only 0 and 255: two-class masks saved as 0/255 instead
    of 0/1, the commonest mask mistake. 255 would then be ignored (ignore_label=255), and
    training would see no class but 0; or, with the labels unchecked, it is out of range.
    {0, 1, 255} is a two-class set with ignored pixels, and is fine."""
    if source.mask_kind != "class":
        return None
    stored = {value + source.label_offset for value in report.label_values}
    if report.ignored_pixels:
        stored.add(source.ignore_label)
    if stored != {0, 255}:
        return None
    where = str(source.root or source.name)
    if source.ignore_label == 255:
        return Problem(
            where,
            "every mask holds only 0 and 255, and 255 is the ignore label: training would "
            f"learn class 0 alone. Two-class masks saved as 0/255 instead of 0/1? {_SAVE_AS_0_1}",
        )
    if not check_labels:
        return Problem(
            where,
            "every mask holds only 0 and 255: two-class masks saved as 0/255 instead of 0/1? "
            f"Two classes are stored as 0 and 1. {_SAVE_AS_0_1}",
        )
    return None  # 255 is a class, or the out-of-range labels are problems already


def _value_counts(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and their pixel counts; bincount is ~20x faster than unique on 8/16 bits."""
    if mask.dtype in (np.uint8, np.uint16):
        counts = np.bincount(mask.reshape(-1))
        values = np.flatnonzero(counts)
        return values.astype(np.int64), counts[values]
    values, counts = np.unique(mask, return_counts=True)
    return values.astype(np.int64), counts


def _short_list(values, limit: int = 8) -> str:
    values = [int(v) for v in values]
    text = ", ".join(str(v) for v in values[:limit])
    return "{" + text + (", ..." if len(values) > limit else "") + "}"


def check(
    source: SegmentationSet | TensorSource,
    *,
    deep: bool = False,
    check_labels: bool = True,
    workers: int | None = None,
) -> CheckReport:
    """Check every pair of ``source`` and report all the problems found.

    Args:
        source: a ``SegmentationSet``; a ``TensorSource`` (already decoded) has nothing to check.
            Its ``ignore_label`` is an allowed mask value (counted in ``ignored_pixels``).
        deep: fully decode JPEGs (the default decodes them at 1/8 scale, which still finds
            truncated and corrupt files, several times faster).
        check_labels: report class ids outside ``[0, num_classes)``; off when the number of
            classes is unknown (``label_values`` still shows what is there).
        workers: threads reading files; PIL decodes outside the GIL.
    """
    report = CheckReport(name=source.name, ignore_label=source.ignore_label)
    if isinstance(source, TensorSource):
        return report
    if len(source) == 0:
        report.problems.append(Problem(str(source.root or source.name), "no image/mask pairs"))
        return report
    workers = workers or min(16, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(
            lambda pair: _check_pair(source, pair[0], pair[1], deep, check_labels), source.pairs
        )
        for problems, counts, ignored in results:
            report.checked += 1
            report.problems.extend(problems)
            report.ignored_pixels += ignored
            for value, count in counts.items():
                report.label_values[value] = report.label_values.get(value, 0) + count
    warning = _zero_255_warning(source, report, check_labels)
    if warning is not None:
        report.warnings.append(warning)
    return report


# ----------------------------------------------------------------------------------------------
# Folders


# The named datasets (seglab.data.registry) and two generic layouts, in the order tried.
LAYOUTS = {
    "paddleseg": DATASETS["paddleseg"].layout,
    "oxford_pets": DATASETS["oxford_pets"].layout,
    "duts_te": DATASETS["duts_te"].layout,
    "cihp": DATASETS["cihp"].layout,
    "paired_masks": "paired folders: images/ + masks/ (saliency masks 0..255, same file stems)",
    "paired_labels": "paired class folders: images/ + labels/ (class ids, same file stems, no list files)",
}


def detect_layout(root: str | os.PathLike) -> str:
    """The key in ``LAYOUTS`` of the folder's layout; DataError when the folder is missing,
    empty or laid out in a way not understood."""
    root = Path(root)
    if not root.exists():
        raise DataError(Problem(root, "folder not found"))
    if not root.is_dir():
        raise DataError(Problem(root, "not a folder"))
    if not any(p for p in root.iterdir() if not p.name.startswith(".")):
        raise DataError(Problem(root, "the folder is empty"))
    if (root / "train_list.txt").is_file() or (root / "val_list.txt").is_file():
        return "paddleseg"
    if (root / "images").is_dir() and (root / "annotations" / "trimaps").is_dir():
        return "oxford_pets"
    if any((base / "DUTS-TE-Image").is_dir() for base in (root, root / "DUTS-TE")):
        return "duts_te"
    nested = root / "instance-level_human_parsing"
    for base in (root, nested, nested / nested.name):
        if (base / "Training" / "Images").is_dir() and (
            base / "Training" / "Category_ids"
        ).is_dir():
            return "cihp"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "paired_masks"
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "paired_labels"
    understood = "\n  ".join(LAYOUTS.values())
    found = ", ".join(sorted(p.name for p in root.iterdir() if not p.name.startswith(".")))
    raise DataError(
        Problem(
            root, f"unknown dataset layout (found: {found}). Layouts understood:\n  {understood}"
        )
    )


# Loaders need a number of classes; without one the labels are not judged, so any will do.
_UNJUDGED_NUM_CLASSES = 2


def _load_layout(root: Path, layout: str, num_classes: int | None, ignore_label: int | None):
    """(sets, problems): the loaded sets, with this ``ignore_label`` (and ``num_classes`` when
    given), and the problems their loaders raised."""
    sets, problems = [], []

    def attempt(load, *args, **kwargs):
        try:
            loaded = load(*args, **kwargs)
        except DataError as error:
            # A problem about no single file is about the folder checked.
            problems.extend(
                problem if problem.path else Problem(root, problem.message)
                for problem in error.problems
            )
            return
        sets.extend(loaded if isinstance(loaded, tuple | list) else [loaded])

    def with_labels(dataset: SegmentationSet) -> SegmentationSet:
        # Both at once: a loader's own default ignore label may be a class id of num_classes.
        changes = {"ignore_label": ignore_label}
        if num_classes is not None and layout in ("paddleseg", "paired_labels"):
            changes["num_classes"] = num_classes
        return dataset.replace(**changes)

    if layout == "paddleseg":
        from seglab.data.paddleseg import LIST_FILES, load_list_file

        for list_file in LIST_FILES:
            if (root / list_file).is_file():
                attempt(
                    load_list_file,
                    root,
                    list_file,
                    num_classes=_UNJUDGED_NUM_CLASSES,
                    ignore_label=None,
                )
    elif layout in ("paired_masks", "paired_labels"):
        from seglab.data.folders import load_paired_folder

        # Files without a partner are problems, and the pairs found are still checked.
        unpaired: list[Problem] = []
        if layout == "paired_masks":
            attempt(load_paired_folder, root, unpaired=unpaired)
        else:
            attempt(
                load_paired_folder,
                root,
                masks="labels",
                mask_kind="class",
                num_classes=_UNJUDGED_NUM_CLASSES,
                unpaired=unpaired,
            )
        problems.extend(unpaired)
    else:
        # The public datasets' loaders are imported only when needed.
        attempt(DATASETS[layout].load_folder, root)
    return [with_labels(dataset) for dataset in sets], problems


def check_folder(
    root: str | os.PathLike,
    *,
    num_classes: int | None = None,
    deep: bool = False,
    ignore_label: int | None = DEFAULT_IGNORE_LABEL,
) -> CheckReport:
    """Recognise the layout of ``root`` (see ``LAYOUTS``), load it and check every pair.

    Problems the loader finds (missing masks or images, an empty sub-folder, a bad list line)
    are reported with the others. ``num_classes`` is needed to check the class ids of PaddleSeg
    and ``images/ + labels/`` folders; without it the report lists the values found. Class
    masks may also hold ``ignore_label`` (255 by default, as in PaddleSeg; ``None``: no value
    is ignored). Masks holding only 0 and 255 get a warning (see ``CheckReport.warnings``).

    Raises:
        DataError: the folder is missing or empty, or its layout is not understood.
        ValueError: ``ignore_label`` is a class id.
    """
    root = Path(root)
    layout = detect_layout(root)
    report = CheckReport(name=str(root), layout=LAYOUTS[layout].split(":")[0])
    sets, problems = _load_layout(root, layout, num_classes, ignore_label)
    report.problems.extend(problems)
    checks_labels = num_classes is not None or layout not in ("paddleseg", "paired_labels")
    seen: set[tuple[str, str]] = set()
    for dataset in sets:
        # Pairs listed in two splits (train and val lists) are read once.
        unique = tuple(pair for pair in dataset.pairs if pair not in seen)
        seen.update(unique)
        report.merge(check(dataset.replace(pairs=unique), deep=deep, check_labels=checks_labels))
    return report
