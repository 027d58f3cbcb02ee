import hashlib
import shutil
import socket
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from seglab.data import pets
from seglab.data.download import DownloadError
from seglab.data.pets import (
    PETS_CLASS_NAMES,
    download_oxford_pets,
    load_oxford_pets,
    load_oxford_pets_tfds,
)
from seglab.data.sets import DataError, TensorSource


class NetworkUsed(OSError):
    pass


@pytest.fixture(scope="module")
def no_network():
    """Connections beyond 127.0.0.1 fail and are recorded (tests assert there were none)."""
    attempts = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def is_loopback(host):
        return host in ("127.0.0.1", "localhost", "::1")

    def connect(sock, address, *args):
        if isinstance(address, tuple) and is_loopback(address[0]):
            return real_connect(sock, address, *args)
        attempts.append(address)
        raise NetworkUsed(f"network access in a test: {address}")

    def getaddrinfo(host, *args, **kwargs):
        if is_loopback(host):
            return real_getaddrinfo(host, *args, **kwargs)
        attempts.append(host)
        raise NetworkUsed(f"network access in a test: {host}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield attempts


def _copy_sample(sample: Path, target: Path, counts: dict[str, int]) -> Path:
    """A small copy of the original layout: the first pairs of each split list."""
    (target / "images").mkdir(parents=True)
    (target / "annotations" / "trimaps").mkdir(parents=True)
    for split, count in counts.items():
        lines = (sample / "annotations" / f"{split}.txt").read_text().splitlines()[:count]
        (target / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        for line in lines:
            name = line.split()[0]
            shutil.copy(sample / "images" / f"{name}.jpg", target / "images")
            shutil.copy(
                sample / "annotations" / "trimaps" / f"{name}.png",
                target / "annotations" / "trimaps",
            )
    return target


# --- original layout ---------------------------------------------------------------------------


def test_sample_splits(sample_data):
    root = sample_data("oxford_pets_sample")
    trainval, test = load_oxford_pets(root)
    assert (len(trainval), len(test)) == (120, 120)
    assert not set(trainval.pairs) & set(test.pairs)
    for dataset in (trainval, test):
        assert dataset.mask_kind == "class"
        assert (dataset.num_classes, dataset.label_offset) == (3, 1)
        assert dataset.class_names == PETS_CLASS_NAMES == ("pet", "background", "border")
    image, trimap = trainval.pairs[0]
    assert Path(image) == root / "images" / "Abyssinian_100.jpg"
    assert Path(trimap) == root / "annotations" / "trimaps" / "Abyssinian_100.png"


def test_sample_labels_through_make_dataset(sample_data):
    from seglab.data.pipeline import make_dataset

    trainval, _ = load_oxford_pets(sample_data("oxford_pets_sample"))
    subset = trainval.replace(pairs=trainval.pairs[::10])  # 12 pairs from the 3 breeds
    labels = set()
    for images, masks in make_dataset(subset, image_size=128, batch_size=6):
        assert images.shape[1:] == (128, 128, 3) and masks.shape[1:] == (128, 128, 1)
        assert masks.dtype.name == "int32"
        labels |= set(np.unique(masks.numpy()).tolist())
    assert labels == {0, 1, 2}


def test_comments_and_blank_lines_in_lists(sample_data, tmp_path):
    root = _copy_sample(
        sample_data("oxford_pets_sample"), tmp_path / "pets", {"trainval": 3, "test": 2}
    )
    list_file = root / "annotations" / "trainval.txt"
    list_file.write_text(
        "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n\n" + list_file.read_text()
    )
    trainval, test = load_oxford_pets(root)
    assert (len(trainval), len(test)) == (3, 2)


def test_missing_files_are_named(sample_data, tmp_path):
    root = _copy_sample(
        sample_data("oxford_pets_sample"), tmp_path / "pets", {"trainval": 3, "test": 2}
    )
    name = (root / "annotations" / "test.txt").read_text().split()[0]
    (root / "annotations" / "trimaps" / f"{name}.png").unlink()
    (root / "images" / f"{name}.jpg").unlink()
    other = (root / "annotations" / "trainval.txt").read_text().split()[0]
    (root / "images" / f"{other}.jpg").unlink()
    with pytest.raises(DataError) as error:
        load_oxford_pets(root)
    message = str(error.value)
    assert "3 problem(s)" in message  # both splits reported at once
    assert f"{root / 'images' / other}.jpg: listed in trainval.txt but missing" in message
    assert f"{root / 'images' / name}.jpg: listed in test.txt but missing" in message
    assert (
        f"{root / 'annotations' / 'trimaps' / name}.png: listed in test.txt but missing" in message
    )


def test_bad_lists_and_folders_are_named(sample_data, tmp_path):
    root = _copy_sample(
        sample_data("oxford_pets_sample"), tmp_path / "pets", {"trainval": 2, "test": 2}
    )
    (root / "annotations" / "trainval.txt").write_text(
        "Abyssinian_100 1 1 1\nAbyssinian_101 1 cat\n"
    )
    with pytest.raises(
        DataError, match=r"trainval.txt:2: expected 'Image CLASS-ID SPECIES BREED-ID'"
    ):
        load_oxford_pets(root)
    (root / "annotations" / "test.txt").unlink()
    (root / "annotations" / "trainval.txt").write_text("Abyssinian_100 1 1 1\n")
    with pytest.raises(DataError, match="test.txt: split list not found"):
        load_oxford_pets(root)
    with pytest.raises(DataError, match="folder not found"):
        load_oxford_pets(tmp_path / "nowhere")


def test_download_oxford_pets_from_local_archives(sample_data, tmp_path, monkeypatch):
    source = _copy_sample(
        sample_data("oxford_pets_sample"), tmp_path / "source", {"trainval": 2, "test": 1}
    )
    archives = []
    for part in ("images", "annotations"):
        # Plain tar named .tar.gz, like the official files.
        path = tmp_path / "served" / f"{part}.tar.gz"
        path.parent.mkdir(exist_ok=True)
        with tarfile.open(path, "w") as archive:
            archive.add(source / part, arcname=part)
        data = path.read_bytes()
        archives.append((path.as_uri(), path.name, len(data), hashlib.sha256(data).hexdigest()))
    monkeypatch.setattr(pets, "PETS_ARCHIVES", tuple(archives))

    root = download_oxford_pets(tmp_path / "cache")
    assert root == tmp_path / "cache" / "oxford_iiit_pet"
    trainval, test = load_oxford_pets(root)
    assert (len(trainval), len(test)) == (2, 1)
    assert download_oxford_pets(tmp_path / "cache") == root


def test_official_archive_checksums_match_tensorflow_datasets():
    import tensorflow_datasets as tfds

    checksums = Path(tfds.__file__).parent / "datasets" / "oxford_iiit_pet" / "checksums.tsv"
    recorded = {}
    for line in checksums.read_text().splitlines():
        url, size, sha256, _ = line.split("\t")
        recorded[url] = (int(size), sha256)
    for url, _, size, sha256 in pets.PETS_ARCHIVES:
        assert recorded[url] == (size, sha256)


# --- tensorflow-datasets -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tfds_prepared(sample_data, tmp_path_factory, no_network):
    """oxford_iiit_pet prepared by tensorflow-datasets' own builder from a 3 + 2 image copy of
    the sample: its download manager is pointed at the local files."""
    import tensorflow_datasets as tfds

    source = _copy_sample(
        sample_data("oxford_pets_sample"),
        tmp_path_factory.mktemp("pets"),
        {"trainval": 3, "test": 2},
    )
    data_dir = tmp_path_factory.mktemp("tfds")

    def local_files(self, urls):
        return {key: str(source) for key in urls}

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tfds.download.DownloadManager, "download_and_extract", local_files)
        train = load_oxford_pets_tfds("train", data_dir=data_dir, download=True)
    assert no_network == []
    return source, data_dir, train


def test_tfds_source(tfds_prepared, no_network):
    _, data_dir, prepared = tfds_prepared
    for source in (prepared, load_oxford_pets_tfds("train", data_dir=data_dir)):
        assert isinstance(source, TensorSource)
        assert (source.mask_kind, source.num_classes, source.label_offset) == ("class", 3, 1)
        assert source.class_names == PETS_CLASS_NAMES
        assert len(source) == 3
        examples = list(source.dataset.as_numpy_iterator())
        assert len(examples) == 3
        for image, mask in examples:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            assert mask.dtype == np.uint8 and mask.shape == (*image.shape[:2], 1)
            assert set(np.unique(mask).tolist()) == {1, 2, 3}  # as stored
    assert len(load_oxford_pets_tfds("test", data_dir=data_dir)) == 2
    assert no_network == []


def _sorted_by_image(batches):
    examples = [
        (image, mask)
        for images, masks in batches
        for image, mask in zip(images.numpy(), masks.numpy(), strict=True)
    ]
    return sorted(examples, key=lambda example: hashlib.sha256(example[0].tobytes()).hexdigest())


@pytest.mark.parametrize("split, tfds_split", [("trainval", "train"), ("test", "test")])
def test_both_routes_give_identical_tensors(tfds_prepared, split, tfds_split):
    from seglab.data.pipeline import make_dataset

    source, data_dir, _ = tfds_prepared
    files = dict(zip(("trainval", "test"), load_oxford_pets(source), strict=True))[split]
    tensors = load_oxford_pets_tfds(tfds_split, data_dir=data_dir)
    options = dict(image_size=(96, 80), batch_size=2)
    from_files = _sorted_by_image(make_dataset(files, **options))
    from_tfds = _sorted_by_image(make_dataset(tensors, **options))  # tfds shuffles the order
    assert len(from_files) == len(from_tfds) == len(files)
    for (file_image, file_mask), (tfds_image, tfds_mask) in zip(from_files, from_tfds, strict=True):
        np.testing.assert_array_equal(file_image, tfds_image)
        np.testing.assert_array_equal(file_mask, tfds_mask)
        assert set(np.unique(file_mask).tolist()) == {0, 1, 2}


def test_tfds_not_prepared_is_a_quick_clear_error(tmp_path, no_network):
    start = time.monotonic()
    with pytest.raises(DataError) as error:
        load_oxford_pets_tfds("train", data_dir=tmp_path)
    assert time.monotonic() - start < 20
    message = str(error.value)
    assert str(tmp_path / "oxford_iiit_pet") in message
    assert "download=True" in message and "load_oxford_pets(" in message
    assert no_network == []


def test_download_oxford_pets_offline_names_both_archives(tmp_path, monkeypatch, no_network):
    with socket.socket() as probe:  # a port nobody listens on: refused at once
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(
        pets,
        "PETS_ARCHIVES",
        tuple((f"{url}/{name}", name, size, sha) for _, name, size, sha in pets.PETS_ARCHIVES),
    )
    with pytest.raises(DownloadError) as error:
        download_oxford_pets(tmp_path)
    message = str(error.value)
    assert f"put the file at\n  {tmp_path / 'images.tar.gz'}\n" in message
    assert f"annotations.tar.gz  ({url}/annotations.tar.gz)" in message
