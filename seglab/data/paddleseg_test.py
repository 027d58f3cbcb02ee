import numpy as np
import pytest
from PIL import Image

from seglab.data.paddleseg import load_list_file, load_paddleseg, write_split
from seglab.data.sets import DataError


def _make_folder(root, count):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for index in range(count):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "images" / f"{index:03d}.jpg")
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "labels" / f"{index:03d}.png")


def test_microscopy_sample_lists(sample_data):
    root = sample_data("microscopy_sample")
    train, val = load_paddleseg(root, num_classes=2, class_names=("background", "nucleus"))
    assert (len(train), len(val)) == (52, 13)
    assert train.mask_kind == "class" and train.num_classes == 2
    assert train.class_names == ("background", "nucleus")
    assert not set(train.pairs) & set(val.pairs)
    image, label = train.pairs[0]
    assert image.startswith(str(root / "images")) and label.startswith(str(root / "labels"))


def test_blank_lines_are_skipped_and_absolute_paths_kept(tmp_path):
    _make_folder(tmp_path, 2)
    absolute = tmp_path / "images" / "001.jpg"
    (tmp_path / "list.txt").write_text(
        f"\nimages/000.jpg labels/000.png\n   \n{absolute} labels/001.png\n\n"
    )
    dataset = load_list_file(tmp_path, "list.txt", num_classes=2)
    assert dataset.pairs == (
        (str(tmp_path / "images/000.jpg"), str(tmp_path / "labels/000.png")),
        (str(absolute), str(tmp_path / "labels/001.png")),
    )


def test_malformed_lines_and_missing_files_are_all_named(tmp_path):
    _make_folder(tmp_path, 1)
    (tmp_path / "train_list.txt").write_text(
        "images/000.jpg labels/000.png\n"
        "images/000.jpg\n"
        "images/000.jpg labels/000.png extra\n"
        "images/nope.jpg labels/000.png\n"
        "images/000.jpg labels/gone.png\n"
    )
    with pytest.raises(DataError) as error:
        load_list_file(tmp_path, "train_list.txt", num_classes=2)
    message = str(error.value)
    list_file = tmp_path / "train_list.txt"
    assert "4 problem(s)" in message
    assert f"{list_file}:2: expected 'image_path label_path', got 'images/000.jpg'" in message
    assert f"{list_file}:3: expected 'image_path label_path'" in message
    assert (
        f"{tmp_path / 'images/nope.jpg'}: image file not found (listed in {list_file}:4)" in message
    )
    assert (
        f"{tmp_path / 'labels/gone.png'}: label file not found (listed in {list_file}:5)" in message
    )


def test_missing_or_empty_list_file(tmp_path):
    with pytest.raises(DataError, match="train_list.txt: list file not found .*write_split"):
        load_paddleseg(tmp_path)
    (tmp_path / "train_list.txt").write_text("\n\n")
    with pytest.raises(DataError, match="train_list.txt: the list file has no pairs"):
        load_list_file(tmp_path, "train_list.txt", num_classes=2)


def test_write_split_is_a_deterministic_4_to_1_split(tmp_path):
    _make_folder(tmp_path / "a", 23)
    _make_folder(tmp_path / "b", 23)
    write_split(tmp_path / "a")
    write_split(tmp_path / "b")
    for name in ("train_list.txt", "val_list.txt"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    train, val = load_paddleseg(tmp_path / "a")
    assert (len(train), len(val)) == (18, 5)
    assert len(set(train.pairs) | set(val.pairs)) == 23
    # The split is shuffled, not the last files in name order.
    assert sorted(val.pairs) != sorted(val.pairs + train.pairs)[-5:]
    first_line = (tmp_path / "a" / "train_list.txt").read_text().splitlines()[0]
    image, label = first_line.split()
    assert image.startswith("images/") and label.startswith("labels/")
    assert image[7:-4] == label[7:-4]
    write_split(tmp_path / "b", seed=1, overwrite=True)
    assert (tmp_path / "a" / "val_list.txt").read_text() != (
        tmp_path / "b" / "val_list.txt"
    ).read_text()


def test_write_split_refuses_to_overwrite(tmp_path):
    _make_folder(tmp_path, 5)
    (tmp_path / "val_list.txt").write_text("keep me\n")
    with pytest.raises(DataError, match="val_list.txt: already exists; pass overwrite=True"):
        write_split(tmp_path)
    assert (tmp_path / "val_list.txt").read_text() == "keep me\n"
    assert not (tmp_path / "train_list.txt").exists()
