import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat, savemat

from seglab.data import cihp
from seglab.data.cihp import (
    CIHP_CLASS_NAMES,
    download_cihp,
    find_cihp_root,
    load_cihp,
    load_cihp_colormap,
)
from seglab.data.download import DownloadError
from seglab.data.sets import DataError

# The published LIP / CIHP palette (e.g. Engineering-Course/CIHP_PGN, LIP_JPPNet utilities).
LIP_PALETTE = np.array(
    [
        (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51),
        (255, 85, 0), (0, 0, 85), (0, 119, 221), (85, 85, 0), (0, 85, 85),
        (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 255), (51, 170, 221),
        (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 170, 0),
    ],
    dtype=np.uint8,
)  # fmt: skip


def test_class_names():
    assert len(CIHP_CLASS_NAMES) == 20
    assert CIHP_CLASS_NAMES[0] == "Background"
    assert CIHP_CLASS_NAMES[13] == "Face"
    assert CIHP_CLASS_NAMES[19] == "Right-shoe"


# --- the real sample ---------------------------------------------------------------------------


def test_sample_pairs_and_labels_through_make_dataset(sample_data):
    from seglab.data.pipeline import make_dataset

    root = sample_data("cihp_sample")
    dataset = load_cihp(root)
    assert len(dataset) == 5
    assert dataset.num_classes == 20 and dataset.mask_kind == "class" and dataset.label_offset == 0
    assert dataset.class_names == CIHP_CLASS_NAMES
    assert [Path(p).stem for p in dataset.image_paths] == [
        "0002190",
        "0005008",
        "0012008",
        "0026375",
        "0032190",
    ]

    images, masks = next(iter(make_dataset(dataset, image_size=128, batch_size=5)))
    assert images.shape == (5, 128, 128, 3)
    assert masks.shape == (5, 128, 128, 1) and masks.dtype.name == "int32"
    labels = set(np.unique(masks.numpy()).tolist())
    assert labels <= set(range(20))
    # The stored files hold 18 of the 20 classes; nearest-neighbour resizing keeps most of them.
    assert {0, 2, 5, 13, 15} <= labels and len(labels) >= 12


def test_sample_colormap_is_the_lip_palette(sample_data):
    root = sample_data("cihp_sample")
    colormap = load_cihp_colormap(root)
    assert colormap.shape == (20, 3) and colormap.dtype == np.uint8
    np.testing.assert_array_equal(colormap, LIP_PALETTE)

    # scale=100 is the tutorial's `(colormap * 100).astype(np.uint8)`.
    stored = loadmat(root / "instance-level_human_parsing" / "human_colormap.mat")["colormap"]
    np.testing.assert_array_equal(
        load_cihp_colormap(root, scale=100), (stored * 100).astype(np.uint8)
    )
    assert np.abs(load_cihp_colormap(root, scale=255).astype(int) - LIP_PALETTE).max() <= 1

    # The root of a loaded set is its split folder; the colormap is found from there too.
    split_root = load_cihp(root).root
    np.testing.assert_array_equal(load_cihp_colormap(split_root), LIP_PALETTE)


# --- a generated copy of the release's layout --------------------------------------------------


def _write_cihp(parent, counts=(("Training", 6), ("Validation", 3))):
    """The tutorial zip's layout: instance-level_human_parsing/instance-level_human_parsing/..."""
    rng = np.random.default_rng(0)
    root = parent / "instance-level_human_parsing" / "instance-level_human_parsing"
    for split, count in counts:
        for folder in ("Images", "Category_ids"):
            (root / split / folder).mkdir(parents=True)
        for index in range(count):
            stem = f"{index * 7 + 1:07d}"
            Image.fromarray(rng.integers(0, 256, (24, 16, 3), dtype=np.uint8)).save(
                root / split / "Images" / f"{stem}.jpg"
            )
            labels = rng.integers(0, 20, (24, 16), dtype=np.uint8)
            Image.fromarray(labels, mode="L").save(root / split / "Category_ids" / f"{stem}.png")
    (root / "Testing" / "Images").mkdir(parents=True)
    savemat(root / "human_colormap.mat", {"colormap": LIP_PALETTE / 256.0})
    return root


@pytest.fixture
def cihp_root(tmp_path):
    return _write_cihp(tmp_path / "data")


def test_any_level_of_the_nested_folders_is_accepted(cihp_root):
    outer = cihp_root.parent.parent
    for root in (outer, cihp_root.parent, cihp_root):
        assert find_cihp_root(root) == cihp_root
        assert len(load_cihp(root)) == 6
        np.testing.assert_array_equal(load_cihp_colormap(root), LIP_PALETTE)
    np.testing.assert_array_equal(load_cihp_colormap(cihp_root / "human_colormap.mat"), LIP_PALETTE)


def test_splits_start_and_limit(cihp_root):
    training = load_cihp(cihp_root)
    validation = load_cihp(cihp_root, split="Validation")
    assert len(validation) == 3 and "Validation" in validation.image_paths[0]
    # The tutorial's train/val: the first N of Training, then the next M.
    first = load_cihp(cihp_root, limit=4)
    rest = load_cihp(cihp_root, limit=50, start=4)
    assert first.pairs == training.pairs[:4]
    assert rest.pairs == training.pairs[4:]
    for image, mask in training.pairs:
        assert Path(image).stem == Path(mask).stem
        assert Path(mask).parent.name == "Category_ids"


def test_generated_labels_through_make_dataset(cihp_root):
    from seglab.data.pipeline import make_dataset

    images, masks = next(
        iter(make_dataset(load_cihp(cihp_root), image_size=(24, 16), batch_size=6))
    )
    stored = np.stack([np.asarray(Image.open(m)) for m in load_cihp(cihp_root).mask_paths])
    # Same size: nearest neighbour returns the stored ids unchanged.
    np.testing.assert_array_equal(masks.numpy()[..., 0], stored.astype(np.int32))


def test_errors_name_the_problem(cihp_root, tmp_path):
    with pytest.raises(
        DataError, match="split folder not found .*found: Testing, Training, Validation"
    ):
        load_cihp(cihp_root, split="Train")
    with pytest.raises(DataError, match="no CIHP layout found"):
        load_cihp(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="Category_ids: folder not found"):
        load_cihp(cihp_root, split="Testing")
    with pytest.raises(DataError, match="none from index 10"):
        load_cihp(cihp_root, start=10)

    (cihp_root / "Training" / "Category_ids" / "0000008.png").unlink()
    with pytest.raises(DataError, match="0000008.jpg: no mask"):
        load_cihp(cihp_root)


def test_colormap_errors(tmp_path):
    wrong_key = tmp_path / "wrong_key.mat"
    savemat(wrong_key, {"palette": LIP_PALETTE / 256.0})
    with pytest.raises(DataError, match="no 'colormap' variable .*found: palette"):
        load_cihp_colormap(wrong_key)

    bytes_scale = tmp_path / "bytes.mat"
    savemat(bytes_scale, {"colormap": LIP_PALETTE.astype(float)})
    with pytest.raises(DataError, match=r"expected \[0, 1\]"):
        load_cihp_colormap(bytes_scale)

    not_mat = tmp_path / "human_colormap.mat"
    not_mat.write_text("not a MATLAB file")
    with pytest.raises(DataError, match="not a readable MATLAB file"):
        load_cihp_colormap(not_mat)

    with pytest.raises(DataError, match="colormap file not found"):
        load_cihp_colormap(tmp_path / "missing.mat")


# --- download (gdown mocked: no network in tests) ----------------------------------------------


@pytest.fixture
def cihp_zip(tmp_path):
    root = _write_cihp(tmp_path / "source", counts=(("Training", 2),))
    outer = root.parent.parent
    archive = shutil.make_archive(
        str(tmp_path / "served" / "instance-level-human-parsing"),
        "zip",
        root_dir=outer,
        base_dir=root.parent.name,
    )
    return Path(archive)


def test_download_cihp_unpacks_once(monkeypatch, cihp_zip, tmp_path):
    import gdown

    calls = []

    def fake_download(url=None, output=None, quiet=False, id=None, **kwargs):
        calls.append(id)
        shutil.copy(cihp_zip, output)
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    cache = tmp_path / "cache"
    root = download_cihp(cache)
    expected = (
        cache
        / "instance-level-human-parsing_extracted"
        / "instance-level_human_parsing"
        / "instance-level_human_parsing"
    )
    assert root == expected
    assert len(load_cihp(root)) == 2
    assert load_cihp_colormap(root).shape == (20, 3)
    assert download_cihp(cache) == root
    assert calls == [cihp.CIHP_DRIVE_FILE_ID]


def test_download_cihp_offline_message(monkeypatch, tmp_path):
    import gdown
    import requests

    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setattr(gdown, "download", offline)
    with pytest.raises(DownloadError) as error:
        download_cihp(tmp_path / "cache")
    message = str(error.value)
    assert f"https://drive.google.com/uc?id={cihp.CIHP_DRIVE_FILE_ID}" in message
    assert str(tmp_path / "cache" / "instance-level-human-parsing.zip") in message
    assert "Failed to resolve" in message
