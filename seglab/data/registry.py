"""The datasets seglab knows by name, one entry each. Recipes load them for training
(``load_for_training``), ``seglab check`` recognises and loads their folders (``layout``,
``load_folder``), the course finds their samples (``sample_folder``)."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

from seglab.errors import PathNotFoundError, SettingError


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One dataset kind.

    Attributes:
        name: the key recipes use (``Recipe.dataset``).
        layout: how its folder looks, as ``seglab check`` describes it.
        folder_loader: ``"module:function"`` loading the folder as it is on disk (one set or
            several), imported only when used.
        sample_folder: the course's sample of it, a folder in ``SEGLAB_SAMPLE_DATA``.
    """

    name: str
    layout: str
    folder_loader: str
    sample_folder: str

    def load_folder(self, root, **kwargs):
        module, function = self.folder_loader.split(":")
        return getattr(importlib.import_module(module), function)(root, **kwargs)


DATASETS = {
    dataset.name: dataset
    for dataset in (
        Dataset(
            "oxford_pets",
            "Oxford-IIIT Pet: images/ + annotations/trimaps/",
            "seglab.data.pets:load_oxford_pets",
            "oxford_pets_sample",
        ),
        Dataset(
            "cihp",
            "CIHP: Training/Images/ + Training/Category_ids/ (or instance-level_human_parsing/ "
            "holding them)",
            "seglab.data.cihp:load_cihp",
            "cihp_sample",
        ),
        Dataset(
            "duts_te",
            "DUTS-TE: DUTS-TE-Image/ + DUTS-TE-Mask/ (or DUTS-TE/ holding them)",
            "seglab.data.duts:load_duts_te",
            "sod_sample",
        ),
        Dataset(
            "paddleseg",
            "PaddleSeg list files: train_list.txt / val_list.txt ('image label' per line)",
            "seglab.data.paddleseg:load_paddleseg",
            "microscopy_sample",
        ),
    )
}


def get_dataset(name: str) -> Dataset:
    """The entry of ``name``; SettingError naming the known ones otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise SettingError(f"unknown dataset kind {name!r}; known: {', '.join(DATASETS)}") from None


def load_for_training(
    name: str,
    data_dir=None,
    *,
    download: bool = True,
    num_classes: int | None = None,
    class_names=(),
    who: str = "",
    **options,
):
    """``(train_set, val_set)`` of dataset ``name`` as a lesson trains on it: from ``data_dir``
    (its original layout), or downloaded when there is none and ``download`` is True.
    ``who`` (a recipe name) starts the error messages; ``options`` are the dataset's own
    (``num_train``/``num_val`` for CIHP, loader keywords for DUTS-TE)."""
    get_dataset(name)
    prefix = f"{who}: " if who else ""
    if data_dir is None and not download:
        what = {
            "oxford_pets": "give the Oxford-IIIT Pet folder (data_dir)",
            "cihp": "give the CIHP folder (data_dir)",
            "duts_te": "give the DUTS-TE folder (data_dir)",
            "paddleseg": "give a PaddleSeg folder (images/, labels/, train_list.txt, "
            "val_list.txt) of your own micrographs as data_dir",
        }[name]
        raise SettingError(prefix + what)
    if data_dir is not None and not Path(data_dir).exists():
        raise PathNotFoundError(data_dir, "data folder not found")
    return _TRAINING_LOADERS[name](data_dir, num_classes, tuple(class_names or ()), options)


def _pets(data_dir, num_classes, class_names, options):
    from seglab.data import pets

    # trainval trains and test validates, as the tutorial's tfds "train" / "test" splits.
    return pets.load_oxford_pets(data_dir if data_dir is not None else pets.download_oxford_pets())


def _cihp(data_dir, num_classes, class_names, options):
    from seglab.data import cihp

    options = dict(options)
    num_train, num_val = options.pop("num_train"), options.pop("num_val")
    root = data_dir if data_dir is not None else cihp.download_cihp()
    # As the tutorial: the first num_train sorted Training images train, the next num_val
    # validate. A smaller copy (the course's sample) keeps that 1000:50 proportion.
    everything = cihp.load_cihp(Path(root), split="Training", limit=num_train + num_val)
    if len(everything) <= num_train:
        num_val = max(1, round(len(everything) * num_val / (num_train + num_val)))
        num_train = len(everything) - num_val
    return (
        everything.replace(pairs=everything.pairs[:num_train], name="cihp/train"),
        everything.replace(
            pairs=everything.pairs[num_train : num_train + num_val], name="cihp/val"
        ),
    )


def _duts(data_dir, num_classes, class_names, options):
    from seglab.data import duts

    root = data_dir if data_dir is not None else duts.download_duts_te()
    return duts.load_duts_te(Path(root), **options)


def _paddleseg(data_dir, num_classes, class_names, options):
    from seglab.data import bbbc038
    from seglab.data.paddleseg import load_paddleseg

    if data_dir is None:
        # The activated-sludge micrographs are not public: by default the lesson trains on a
        # public two-class micrograph set, BBBC038 nuclei, turned into the same PaddleSeg layout.
        return bbbc038.load_bbbc038()
    return load_paddleseg(Path(data_dir), num_classes=num_classes, class_names=class_names)


_TRAINING_LOADERS = {"oxford_pets": _pets, "cihp": _cihp, "duts_te": _duts, "paddleseg": _paddleseg}
