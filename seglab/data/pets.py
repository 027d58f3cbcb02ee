"""Oxford-IIIT Pet: the original release's layout, or tensorflow-datasets' ``oxford_iiit_pet``.

Both routes describe the trimaps the same way (stored 1 pet, 2 background, 3 border;
``label_offset=1`` makes them classes 0, 1, 2 as in the TensorFlow segmentation tutorial), so
``make_dataset`` gives the same tensors for the same image either way.
"""

from __future__ import annotations

import os
from pathlib import Path

from seglab.data.download import ChecksumError, DownloadError, download_and_extract
from seglab.data.sets import DataError, Problem, SegmentationSet, TensorSource

PETS_CLASS_NAMES = ("pet", "background", "border")
PETS_NUM_CLASSES = 3
PETS_LABEL_OFFSET = 1  # trimaps store 1, 2, 3
TFDS_NAME = "oxford_iiit_pet"

# The two official archives, with the sizes and sha256 that tensorflow-datasets 4.9 records
# for them (tensorflow_datasets/datasets/oxford_iiit_pet/checksums.tsv). Despite the .gz
# suffix both are plain tar files.
PETS_ARCHIVES = (
    (
        "https://thor.robots.ox.ac.uk/~vgg/data/pets/images.tar.gz",
        "images.tar.gz",
        791_918_971,
        "67195c5e1c01f1ab5f9b6a5d22b8c27a580d896ece458917e61d459337fa318d",
    ),
    (
        "https://thor.robots.ox.ac.uk/~vgg/data/pets/annotations.tar.gz",
        "annotations.tar.gz",
        19_173_078,
        "52425fb6de5c424942b7626b428656fcbd798db970a937df61750c0f1d358e91",
    ),
)


def download_oxford_pets(cache_dir: str | os.PathLike | None = None) -> Path:
    """Download and unpack the two official archives (about 810 MB) into one folder, once.

    Returns:
        The folder holding ``images/`` and ``annotations/``, ready for ``load_oxford_pets``.

    Raises:
        DownloadError: offline or the server failed; the message says where to put
            ``images.tar.gz`` / ``annotations.tar.gz`` by hand.
    """
    root = None
    for url, file_name, size, sha256 in PETS_ARCHIVES:
        try:
            root = download_and_extract(
                url,
                file_name=file_name,
                cache_dir=cache_dir,
                file_hash=sha256,
                size=size,
                extract_dir="oxford_iiit_pet",
            )
        except ChecksumError:
            raise
        except DownloadError as err:
            needed = "\n".join(f"  {name}  ({source})" for source, name, _, _ in PETS_ARCHIVES)
            raise DownloadError(f"{err}\nBoth archives go in that folder:\n{needed}") from err
    return root


def load_oxford_pets(root: str | os.PathLike) -> tuple[SegmentationSet, SegmentationSet]:
    """The official ``(trainval, test)`` splits from the original layout.

    ``root`` holds ``images/<name>.jpg``, ``annotations/trimaps/<name>.png`` and the split
    lists ``annotations/trainval.txt`` / ``test.txt``, whose lines read
    ``Image CLASS-ID SPECIES BREED-ID`` (``#`` lines are comments). Pairs keep the list order.

    Raises:
        DataError: a folder or list file is missing, a list line is malformed, or a listed
            image or trimap is missing; every such file is named.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(Problem(root, "folder not found (expected images/ and annotations/ in it)"))
    sets, problems = [], []
    for split in ("trainval", "test"):
        list_file = root / "annotations" / f"{split}.txt"
        names = _read_split_list(list_file)
        pairs = []
        for name in names:
            image = root / "images" / f"{name}.jpg"
            trimap = root / "annotations" / "trimaps" / f"{name}.png"
            problems += [
                Problem(path, f"listed in {list_file.name} but missing")
                for path in (image, trimap)
                if not path.is_file()
            ]
            pairs.append((image, trimap))
        sets.append(_pets_set(f"oxford_pets/{split}", pairs, root))
    if problems:
        raise DataError(problems)
    return sets[0], sets[1]


def load_oxford_pets_tfds(
    split: str, data_dir: str | os.PathLike | None = None, download: bool = False
) -> TensorSource:
    """tensorflow-datasets' ``oxford_iiit_pet`` as a ``TensorSource`` for ``make_dataset``.

    Elements are ``(image uint8 (H, W, 3), segmentation_mask uint8 (H, W, 1))`` with the mask
    as stored (1, 2, 3); ``label_offset=1`` is applied by ``make_dataset``. tensorflow-datasets
    keeps the original JPEG bytes, except for 12 damaged files it re-encodes, so its tensors
    equal the original layout's for every other image.

    Args:
        split: ``"train"`` (the official trainval list), ``"test"``, or a tfds slice such as
            ``"train[:80%]"``.
        data_dir: tensorflow-datasets' folder; default ``~/tensorflow_datasets``.
        download: fetch and prepare the data (about 800 MB) when it is not there. Off by
            default: offline, a download attempt only fails after minutes of retries.

    Raises:
        DataError: the data is not prepared in ``data_dir`` and ``download`` is False.
    """
    import tensorflow_datasets as tfds

    from seglab.data.decoding import decode_image

    if not download:
        builder = tfds.builder(TFDS_NAME, data_dir=os.fspath(data_dir) if data_dir else None)
        if not builder.is_prepared():
            tfds_root = Path(builder.data_dir).parents[1]
            raise DataError(
                f"{builder.data_dir}: tensorflow-datasets' {TFDS_NAME} {builder.version} is not "
                f"prepared there. Run load_oxford_pets_tfds({split!r}, download=True) once on a "
                f"machine with internet access (about 800 MB) and copy the {TFDS_NAME}/ folder "
                f"it makes into {tfds_root}, or use the original layout: "
                f"load_oxford_pets(download_oxford_pets())."
            )
    dataset, info = tfds.load(
        TFDS_NAME,
        split=split,
        data_dir=os.fspath(data_dir) if data_dir else None,
        download=download,
        shuffle_files=False,
        with_info=True,
        # The JPEGs are decoded as the files route decodes them (decode_image: the accurate
        # IDCT), so both routes give the same pixels; tfds' own decoder uses the fast one.
        decoders={"image": tfds.decode.SkipDecoding()},
    )
    dataset = dataset.map(
        lambda example: (decode_image(example["image"]), example["segmentation_mask"])
    )
    try:
        size = info.splits[split].num_examples
    except (KeyError, ValueError):
        size = None
    return TensorSource(
        name=f"{TFDS_NAME}/{split}",
        dataset=dataset,
        mask_kind="class",
        num_classes=PETS_NUM_CLASSES,
        label_offset=PETS_LABEL_OFFSET,
        class_names=PETS_CLASS_NAMES,
        size=size,
    )


def _read_split_list(list_file: Path) -> list[str]:
    if not list_file.is_file():
        raise DataError(Problem(list_file, "split list not found"))
    names, problems = [], []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 4 or not all(field.isdigit() for field in fields[1:]):
            problems.append(
                Problem(
                    f"{list_file}:{number}",
                    f"expected 'Image CLASS-ID SPECIES BREED-ID', got {line!r}",
                )
            )
            continue
        names.append(fields[0])
    if problems:
        raise DataError(problems)
    if not names:
        raise DataError(Problem(list_file, "lists no images"))
    return names


def _pets_set(name: str, pairs, root: Path) -> SegmentationSet:
    return SegmentationSet(
        name=name,
        pairs=tuple(pairs),
        mask_kind="class",
        num_classes=PETS_NUM_CLASSES,
        label_offset=PETS_LABEL_OFFSET,
        class_names=PETS_CLASS_NAMES,
        root=str(root),
    )
