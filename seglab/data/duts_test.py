import hashlib
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seglab.data.download import ChecksumError, DownloadError
from seglab.data.duts import download_duts_te, find_duts_te_root, load_duts_te
from seglab.data.sets import DataError

# Stems as in the real DUTS-TE (ILSVRC2012 test and SUN images).
STEMS = [f"ILSVRC2012_test_{i:08d}" for i in (3, 23, 26, 36, 59, 70, 87, 92, 96, 100)] + [
    f"sun_a{c}{c}xyz" for c in "abcdefghij"
]


def _write_duts_te(parent, stems=STEMS):
    """The exact DUTS-TE layout: DUTS-TE/DUTS-TE-Image/*.jpg and DUTS-TE/DUTS-TE-Mask/*.png."""
    rng = np.random.default_rng(0)
    images = parent / "DUTS-TE" / "DUTS-TE-Image"
    masks = parent / "DUTS-TE" / "DUTS-TE-Mask"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for stem in stems:
        height, width = rng.integers(20, 40, size=2)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            images / f"{stem}.jpg"
        )
        # Soft edges: a ramp 0..255 across the object, as DUTS masks have.
        ramp = np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))
        Image.fromarray(ramp, mode="L").save(masks / f"{stem}.png")
    return parent / "DUTS-TE"


@pytest.fixture
def duts(tmp_path):
    return _write_duts_te(tmp_path / "data")


def test_loads_pairs_by_stem_from_either_folder(duts):
    from_parent = load_duts_te(duts.parent)
    from_folder = load_duts_te(duts)
    assert from_parent.pairs == from_folder.pairs
    assert len(from_parent) == len(STEMS)
    assert from_parent.mask_kind == "soft"
    assert from_parent.num_classes == 1
    for image, mask in from_parent.pairs:
        assert image.endswith(".jpg") and "DUTS-TE-Image" in image
        assert mask.endswith(".png") and "DUTS-TE-Mask" in mask
        assert image.rsplit("/", 1)[1][:-4] == mask.rsplit("/", 1)[1][:-4]
    # The tutorial sorts the globbed paths: the same order.
    assert [p.rsplit("/", 1)[1][:-4] for p in from_parent.image_paths] == sorted(STEMS)


def test_tutorial_subset_and_ordered_split(duts):
    # The tutorial: sorted(glob(...))[:140], then the first int(140 * 0.9) to train.
    limit = 10
    train, val = load_duts_te(duts, limit=limit, val_fraction=0.1)
    first = sorted(STEMS)[:limit]
    n_train = int(limit * 0.9)
    assert [p.rsplit("/", 1)[1][:-4] for p in train.image_paths] == first[:n_train]
    assert [p.rsplit("/", 1)[1][:-4] for p in val.image_paths] == first[n_train:]
    assert len(load_duts_te(duts, limit=limit)) == limit


def test_seeded_split_shuffles_reproducibly(duts):
    train, val = load_duts_te(duts, val_fraction=0.25, seed=1)
    again_train, _ = load_duts_te(duts, val_fraction=0.25, seed=1)
    plain_train, _ = load_duts_te(duts, val_fraction=0.25)
    assert train.pairs == again_train.pairs
    assert train.pairs != plain_train.pairs
    assert sorted(train.pairs + val.pairs) == sorted(load_duts_te(duts).pairs)
    assert (len(train), len(val)) == (15, 5)


def test_missing_mask_is_named(duts):
    (duts / "DUTS-TE-Mask" / f"{STEMS[4]}.png").unlink()
    with pytest.raises(DataError, match=f"{STEMS[4]}.jpg: no mask"):
        load_duts_te(duts)


def test_wrong_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="no DUTS-TE layout found") as error:
        load_duts_te(tmp_path)
    assert str(tmp_path / "DUTS-TE" / "DUTS-TE-Image") in str(error.value)


def test_soft_masks_through_make_dataset(duts):
    from seglab.data.pipeline import make_dataset

    train, _ = load_duts_te(duts, limit=8, val_fraction=0.25)
    images, masks = next(iter(make_dataset(train, image_size=32, batch_size=6)))
    assert images.shape == (6, 32, 32, 3) and images.dtype.name == "float32"
    assert masks.shape == (6, 32, 32, 1) and masks.dtype.name == "float32"
    masks = masks.numpy()
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    assert np.any((masks > 0.1) & (masks < 0.9))  # grey levels kept, not thresholded


# --- download (local archive, no network) ------------------------------------------------------


@pytest.fixture
def duts_zip(tmp_path):
    """DUTS-TE.zip as the site serves it: one top folder DUTS-TE/."""
    folder = _write_duts_te(tmp_path / "source", STEMS[:6])
    archive = shutil.make_archive(
        str(tmp_path / "served" / "DUTS-TE"), "zip", root_dir=folder.parent, base_dir="DUTS-TE"
    )
    return Path(archive)


def test_download_extracts_and_caches(duts_zip, tmp_path):
    cache = tmp_path / "cache"
    sha256 = hashlib.sha256(duts_zip.read_bytes()).hexdigest()
    root = download_duts_te(cache, url=duts_zip.as_uri(), file_hash=sha256)
    assert root == cache / "DUTS-TE_extracted" / "DUTS-TE"
    assert find_duts_te_root(root) == root
    assert len(load_duts_te(root)) == 6

    duts_zip.unlink()  # the second call must not fetch again
    assert download_duts_te(cache, url=duts_zip.as_uri(), file_hash=sha256) == root


def test_download_checksum_mismatch(duts_zip, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="so it was removed"):
        download_duts_te(cache, url=duts_zip.as_uri(), file_hash="f" * 64)
    assert not (cache / "DUTS-TE.zip").exists()


def test_download_offline_says_where_to_put_the_zip(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on: refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/duts/download/DUTS-TE.zip"
    start = time.monotonic()
    with pytest.raises(DownloadError) as error:
        download_duts_te(tmp_path / "cache", url=url)
    assert time.monotonic() - start < 10
    assert url in str(error.value)
    assert str(tmp_path / "cache" / "DUTS-TE.zip") in str(error.value)


def test_a_generic_images_and_masks_folder_loads_through_the_same_code(sample_data):
    root = sample_data("sod_sample")
    train, val = load_duts_te(root, limit=40, val_fraction=0.1)
    assert (len(train), len(val)) == (36, 4)
    assert train.mask_kind == "soft" and train.num_classes == 1
    assert all(Path(image).parent.name == "images" for image in train.image_paths)
    assert all(Path(mask).parent.name == "masks" for mask in train.mask_paths)
