import zipfile

import numpy as np
import pytest
from PIL import Image

from seglab.data import bbbc038, download
from seglab.data.paddleseg import load_paddleseg
from seglab.data.sets import DataError
from seglab.testing import archives


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch):
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    monkeypatch.delenv(download.HASHES_ENV, raising=False)
    monkeypatch.setattr(download, "_mirror_override", None)
    monkeypatch.setattr(download, "_registered_hashes", {})


def _write_sample(root, image_id, size=(6, 4), nuclei=((0, 0), (2, 3)), mode="RGBA"):
    """One BBBC038 image folder: a random image and one 0/255 mask per (row, col) nucleus."""
    width, height = size
    (root / image_id / "images").mkdir(parents=True)
    (root / image_id / "masks").mkdir()
    pixels = np.random.default_rng(len(image_id)).integers(0, 255, (height, width, len(mode)))
    Image.fromarray(pixels.astype(np.uint8), mode).save(
        root / image_id / "images" / f"{image_id}.png"
    )
    for index, (row, col) in enumerate(nuclei):
        mask = np.zeros((height, width), np.uint8)
        mask[row, col] = 255
        Image.fromarray(mask, "L").save(root / image_id / "masks" / f"m{index}.png")


def test_the_sample_in_bbbc038_layout_converts_back_to_its_labels(sample_data, tmp_path):
    sample = sample_data("microscopy_sample")
    archive = archives.bbbc038_archive(sample, tmp_path)
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
        opened.extractall(tmp_path / "unpacked")
    image_ids = sorted(path.stem for path in (sample / "images").glob("*.png"))
    assert sorted(n.split("/")[0] for n in names if "/images/" in n) == image_ids
    assert len([n for n in names if "/masks/" in n]) > 10 * len(image_ids)  # one per nucleus

    root = bbbc038.convert_bbbc038(tmp_path / "unpacked", tmp_path / "converted")

    train, val = load_paddleseg(root, num_classes=2)
    assert (len(train), len(val)) == (52, 13)
    sample_pairs = {
        line for name in ("train_list.txt", "val_list.txt") for line in _lines(sample / name)
    }
    assert set(_lines(root / "train_list.txt")) | set(_lines(root / "val_list.txt")) == sample_pairs
    for image_id in image_ids:
        converted = np.asarray(Image.open(root / "labels" / f"{image_id}.png"))
        expected = np.asarray(Image.open(sample / "labels" / f"{image_id}.png"))
        assert converted.dtype == np.uint8
        np.testing.assert_array_equal(converted, expected, err_msg=image_id)
        with Image.open(root / "images" / f"{image_id}.png") as image:
            assert image.mode == "RGBA"
            rgb = np.asarray(image)[..., :3]
        with Image.open(sample / "images" / f"{image_id}.png") as original:
            np.testing.assert_array_equal(rgb, np.asarray(original.convert("RGB")))


def test_download_convert_and_load_from_a_mirror_once(sample_data, tmp_path):
    mirror = tmp_path / "mirror"
    archive = archives.bbbc038_archive(sample_data("microscopy_sample"), mirror, limit=6)
    download.set_download_mirror(mirror)
    download.register_file_hash("stage1_train.zip", archives.sha256_of(archive))
    cache = tmp_path / "cache"

    train, val = bbbc038.load_bbbc038(cache_dir=cache)

    root = cache / "bbbc038_paddleseg"
    assert train.root == str(root) and train.class_names == ("background", "nucleus")
    assert (len(train), len(val)) == (5, 1)
    assert (root / "train_list.txt").is_file() and (root / bbbc038.MARKER).is_file()

    # Converted once: a second call reuses the folder, without the archive or the mirror.
    (cache / "stage1_train.zip").unlink()
    download.set_download_mirror(tmp_path / "empty")
    again_train, again_val = bbbc038.load_bbbc038(cache_dir=cache)
    assert (again_train.pairs, again_val.pairs) == (train.pairs, val.pairs)


def _lines(path):
    return path.read_text().splitlines()


def test_conversion_merges_masks_and_splits_4_to_1(tmp_path):
    source = tmp_path / "stage1_train"
    for index in range(5):
        _write_sample(source, f"id{index}", nuclei=((0, 0), (1, 1), (3, 5)))
    target = bbbc038.convert_bbbc038(tmp_path, tmp_path / "converted")  # finds stage1_train/

    label = np.asarray(Image.open(target / "labels" / "id0.png"))
    expected = np.zeros((4, 6), np.uint8)
    expected[0, 0] = expected[1, 1] = expected[3, 5] = 1
    np.testing.assert_array_equal(label, expected)
    assert (target / "images" / "id3.png").read_bytes() == (
        source / "id3" / "images" / "id3.png"
    ).read_bytes()
    train, val = load_paddleseg(target)
    assert (len(train), len(val)) == (4, 1)
    assert not (tmp_path / "converted.partial").exists()

    # Idempotent: the marked folder is returned untouched, even without the source.
    before = (target / "train_list.txt").stat().st_mtime_ns
    assert bbbc038.convert_bbbc038(tmp_path, target) == target
    assert (target / "train_list.txt").stat().st_mtime_ns == before


def test_every_bad_sample_is_named(tmp_path):
    source = tmp_path / "src"
    _write_sample(source, "good")
    _write_sample(source, "nomasks", nuclei=())
    _write_sample(source, "broken")
    (source / "broken" / "masks" / "m0.png").write_bytes(b"not a png")
    _write_sample(source, "badimage")
    (source / "badimage" / "images" / "badimage.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    _write_sample(source, "small")
    Image.new("L", (3, 3)).save(source / "small" / "masks" / "m1.png")
    (source / "noimage" / "images").mkdir(parents=True)
    (source / "__MACOSX").mkdir()  # ignored

    with pytest.raises(DataError) as error:
        bbbc038.convert_bbbc038(source, tmp_path / "out")

    message = str(error.value)
    assert message.startswith("5 problem(s)")
    assert f"{source / 'nomasks' / 'masks'}: no mask files for nomasks.png" in message
    assert f"{source / 'broken' / 'masks' / 'm0.png'}: not a readable image" in message
    assert f"{source / 'badimage' / 'images' / 'badimage.png'}: not a readable image" in message
    assert (
        f"{source / 'small' / 'masks' / 'm1.png'}: mask is 3x3, its image small.png is 6x4"
        in message
    )
    assert f"{source / 'noimage' / 'images' / 'noimage.png'}: image not found" in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_a_folder_that_is_not_a_conversion_is_not_overwritten(tmp_path):
    _write_sample(tmp_path / "src", "a")
    _write_sample(tmp_path / "src", "b")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my own files")
    with pytest.raises(DataError, match="is not a finished BBBC038 conversion"):
        bbbc038.convert_bbbc038(tmp_path / "src", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "my own files"

    # A leftover of an interrupted conversion is redone; an empty target folder is fine.
    (tmp_path / "out.partial" / "images").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    assert bbbc038.convert_bbbc038(tmp_path / "src", tmp_path / "out") == tmp_path / "out"
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["a.png", "b.png"]


def test_no_layout_found(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="no BBBC038 layout found"):
        bbbc038.convert_bbbc038(tmp_path, tmp_path / "out")


def test_an_offline_download_says_where_to_put_the_zip(tmp_path, monkeypatch):
    download.set_download_mirror(tmp_path / "empty-mirror")
    with pytest.raises(download.DownloadError) as error:
        bbbc038.prepare_bbbc038(cache_dir=tmp_path / "cache")
    assert "stage1_train.zip" in str(error.value)
    assert f"put the file at\n  {tmp_path / 'cache' / 'stage1_train.zip'}\n" in str(error.value)
