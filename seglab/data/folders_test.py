import numpy as np
import pytest
from PIL import Image

from seglab.data.folders import load_paired_folder
from seglab.data.sets import DataError


def test_sod_sample_loads_as_soft_paired_folders(sample_data):
    root = sample_data("sod_sample")
    dataset = load_paired_folder(root)
    assert len(dataset) == 80
    assert (dataset.mask_kind, dataset.num_classes, dataset.name) == ("soft", 1, "sod_sample")
    for image, mask in dataset.pairs:
        assert image.endswith(".jpg") and mask.endswith(".png")
        assert image.rsplit("/", 1)[-1][:-4] == mask.rsplit("/", 1)[-1][:-4]


def test_class_masks_and_custom_folder_names(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "ann").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "img" / "x.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "ann" / "x.png")
    dataset = load_paired_folder(
        tmp_path,
        images="img",
        masks="ann",
        mask_kind="class",
        num_classes=3,
        class_names=("a", "b", "c"),
    )
    assert dataset.pairs == ((str(tmp_path / "img/x.png"), str(tmp_path / "ann/x.png")),)
    assert dataset.class_names == ("a", "b", "c")
    with pytest.raises(ValueError, match="num_classes >= 2"):
        load_paired_folder(tmp_path, images="img", masks="ann", mask_kind="class")


def test_missing_folder_and_unpaired_files_are_named(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'images'}: folder not found"):
        load_paired_folder(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images" / "a.jpg")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "masks" / "b.png")
    with pytest.raises(DataError) as error:
        load_paired_folder(tmp_path)
    assert f"{tmp_path / 'images/a.jpg'}: no mask in" in str(error.value)
    assert f"{tmp_path / 'masks/b.png'}: no image in" in str(error.value)
