import functools
import hashlib
import http.server
import io
import json
import socket
import tarfile
import threading
import time
import zipfile

import pytest

from seglab.data import download
from seglab.data.download import (
    ChecksumError,
    DownloadError,
    download_and_extract,
    download_from_google_drive,
)


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar_gz_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


ZIP = _zip_bytes({"data/a.txt": b"alpha", "data/sub/b.txt": b"beta"})
ZIP_SHA256 = hashlib.sha256(ZIP).hexdigest()


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www and counting requests."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_CountingHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.requests = []
    httpd.root = root
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_download_extracts_once_and_second_call_uses_the_cache(server, tmp_path):
    (server.root / "data.zip").write_bytes(ZIP)
    cache = tmp_path / "cache"
    kwargs = dict(file_name="data.zip", cache_dir=cache, file_hash=ZIP_SHA256, size=len(ZIP))

    folder = download_and_extract(f"{server.url}/data.zip", **kwargs)

    assert folder == cache / "data_extracted"
    assert (folder / "data" / "a.txt").read_bytes() == b"alpha"
    assert (folder / "data" / "sub" / "b.txt").read_bytes() == b"beta"
    assert (cache / "data.zip").read_bytes() == ZIP  # the archive is kept
    assert server.requests == ["/data.zip"]

    (server.root / "data.zip").unlink()  # a second download would now fail
    assert download_and_extract(f"{server.url}/data.zip", **kwargs) == folder
    assert server.requests == ["/data.zip"]


def test_interrupted_unpacking_is_redone_from_the_kept_archive(server, tmp_path):
    (server.root / "data.zip").write_bytes(ZIP)
    cache = tmp_path / "cache"
    folder = download_and_extract(f"{server.url}/data.zip", file_name="data.zip", cache_dir=cache)
    (folder / ".data.zip.extracted").unlink()  # as if unpacking had been killed half-way
    (folder / "data" / "a.txt").unlink()

    assert (
        download_and_extract(f"{server.url}/data.zip", file_name="data.zip", cache_dir=cache)
        == folder
    )
    assert (folder / "data" / "a.txt").read_bytes() == b"alpha"
    assert server.requests == ["/data.zip"]


def test_file_url_tar_gz_and_shared_extract_dir(tmp_path):
    first = tmp_path / "images.tar.gz"
    first.write_bytes(_tar_gz_bytes({"images/x.jpg": b"x"}))
    second = tmp_path / "annotations.tar"
    with tarfile.open(second, "w") as archive:  # uncompressed, like the pet "tar.gz" files
        info = tarfile.TarInfo("annotations/list.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"abc"))

    cache = tmp_path / "cache"
    folder = download_and_extract(
        first.as_uri(), file_name="images.tar.gz", cache_dir=cache, extract_dir="pets"
    )
    again = download_and_extract(
        second.as_uri(), file_name="annotations.tar.gz", cache_dir=cache, extract_dir="pets"
    )

    assert folder == again == cache / "pets"
    assert (folder / "images" / "x.jpg").read_bytes() == b"x"
    assert (folder / "annotations" / "list.txt").read_bytes() == b"abc"


def test_extract_false_returns_the_checked_archive(tmp_path):
    source = tmp_path / "data.zip"
    source.write_bytes(ZIP)
    path = download_and_extract(
        source.as_uri(),
        file_name="data.zip",
        cache_dir=tmp_path / "cache",
        file_hash=ZIP_SHA256,
        extract=False,
    )
    assert path == tmp_path / "cache" / "data.zip"
    assert path.read_bytes() == ZIP
    assert not (tmp_path / "cache" / "data_extracted").exists()


@pytest.mark.parametrize(
    "check",
    [
        {"file_hash": "0" * 64},
        {"file_hash": "0" * 32},  # md5
        {"size": len(ZIP) + 1},
    ],
    ids=["sha256", "md5", "size"],
)
def test_checksum_mismatch_removes_the_download_and_says_so(server, tmp_path, check):
    (server.root / "data.zip").write_bytes(ZIP)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError) as error:
        download_and_extract(
            f"{server.url}/data.zip", file_name="data.zip", cache_dir=cache, **check
        )
    message = str(error.value)
    assert str(cache / "data.zip") in message
    assert "removed" in message
    assert "expected" in message
    assert not (cache / "data.zip").exists()
    assert not (cache / "data_extracted").exists()


def test_bad_archive_put_by_hand_is_removed(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "data.zip").write_bytes(ZIP[:-10])  # truncated
    url = f"http://127.0.0.1:{_closed_port()}/data.zip"
    with pytest.raises(ChecksumError, match="removed"):
        download_and_extract(url, file_name="data.zip", cache_dir=cache, file_hash=ZIP_SHA256)
    assert not (cache / "data.zip").exists()


@pytest.mark.parametrize("failure", ["closed_port", "not_found"])
def test_failed_download_says_where_to_put_the_archive(server, tmp_path, failure):
    if failure == "closed_port":
        url = f"http://127.0.0.1:{_closed_port()}/DUTS-TE.zip"
    else:
        url = f"{server.url}/missing/DUTS-TE.zip"
    cache = tmp_path / "cache"

    start = time.monotonic()
    with pytest.raises(DownloadError) as error:
        download_and_extract(url, file_name="DUTS-TE.zip", cache_dir=cache)
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert url in message
    assert f"put the file at\n  {cache / 'DUTS-TE.zip'}\n" in message
    assert not isinstance(error.value, ChecksumError)
    assert not (cache / "DUTS-TE.zip").exists()

    # Following the message works without the network.
    (cache / "DUTS-TE.zip").write_bytes(ZIP)
    folder = download_and_extract(
        url, file_name="DUTS-TE.zip", cache_dir=cache, file_hash=ZIP_SHA256
    )
    assert (folder / "data" / "a.txt").read_bytes() == b"alpha"


def test_a_page_that_is_not_an_archive_is_removed(server, tmp_path):
    (server.root / "data.zip").write_text("<html>quota exceeded</html>")
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="not a zip or tar archive") as error:
        download_and_extract(f"{server.url}/data.zip", file_name="data.zip", cache_dir=cache)
    assert str(cache / "data.zip") in str(error.value)
    assert not (cache / "data.zip").exists()


def test_tar_member_escaping_the_folder_is_refused(tmp_path):
    if not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile extraction filters")
    source = tmp_path / "evil.tar.gz"
    source.write_bytes(_tar_gz_bytes({"../outside.txt": b"x"}))
    with pytest.raises(DownloadError, match="could not unpack"):
        download_and_extract(source.as_uri(), file_name="evil.tar.gz", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "outside.txt").exists()


def test_bad_arguments():
    with pytest.raises(ValueError, match="plain file name"):
        download_and_extract("file:///x.zip", file_name="sub/x.zip")
    with pytest.raises(ValueError, match="md5"):
        download_and_extract("file:///x.zip", file_name="x.zip", file_hash="abc")


def test_default_cache_dir_follows_keras_home(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert download.default_cache_dir() == tmp_path / "datasets"


# --- Google Drive (gdown mocked: no network in tests) -----------------------------------------


@pytest.fixture
def fake_gdown(monkeypatch, tmp_path):
    """Replace gdown.download by a copy of a local zip; records the calls."""
    import gdown

    calls = []

    def fake_download(url=None, output=None, quiet=False, id=None, **kwargs):
        calls.append(id)
        with open(output, "wb") as file:
            file.write(ZIP)
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    return calls


def test_google_drive_download_is_cached(fake_gdown, tmp_path):
    cache = tmp_path / "cache"
    folder = download_from_google_drive(
        "FILE_ID", file_name="parsing.zip", cache_dir=cache, file_hash=ZIP_SHA256
    )
    assert folder == cache / "parsing_extracted"
    assert (folder / "data" / "sub" / "b.txt").read_bytes() == b"beta"
    assert download_from_google_drive("FILE_ID", file_name="parsing.zip", cache_dir=cache) == folder
    assert fake_gdown == ["FILE_ID"]


def test_google_drive_checksum_mismatch(fake_gdown, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="removed"):
        download_from_google_drive("FILE_ID", file_name="parsing.zip", cache_dir=cache, size=1)
    assert not (cache / "parsing.zip").exists()


@pytest.mark.parametrize("failure", ["raises", "returns_none"])
def test_google_drive_offline_says_where_to_put_the_archive(monkeypatch, tmp_path, failure):
    import gdown
    import requests

    def offline(*args, **kwargs):
        if failure == "raises":
            raise requests.exceptions.ConnectionError("Failed to resolve 'drive.google.com'")
        return None

    monkeypatch.setattr(gdown, "download", offline)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as error:
        download_from_google_drive("FILE_ID", file_name="parsing.zip", cache_dir=cache)
    message = str(error.value)
    assert "https://drive.google.com/uc?id=FILE_ID" in message
    assert f"put the file at\n  {cache / 'parsing.zip'}\n" in message


# --- Download mirror and registered hashes ----------------------------------------------------

ORIGINAL_DUTS_URL = "http://saliencydetection.net/duts/download/DUTS-TE.zip"


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch):
    """Every test starts without a mirror or registered hashes, whatever the shell has set."""
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    monkeypatch.delenv(download.HASHES_ENV, raising=False)
    monkeypatch.setattr(download, "_mirror_override", None)
    monkeypatch.setattr(download, "_registered_hashes", {})


def _hashes_file(tmp_path, hashes: dict) -> str:
    path = tmp_path / "hashes.json"
    path.write_text(json.dumps(hashes))
    return str(path)


def test_mirror_serves_the_file_under_its_original_name(server, tmp_path, monkeypatch):
    (server.root / "mirror").mkdir()
    (server.root / "mirror" / "DUTS-TE.zip").write_bytes(ZIP)
    monkeypatch.setenv(download.MIRROR_ENV, f"{server.url}/mirror")  # no trailing slash
    monkeypatch.setenv(download.HASHES_ENV, _hashes_file(tmp_path, {"DUTS-TE.zip": ZIP_SHA256}))
    cache = tmp_path / "cache"

    folder = download_and_extract(ORIGINAL_DUTS_URL, file_name="DUTS-TE.zip", cache_dir=cache)

    assert server.requests == ["/mirror/DUTS-TE.zip"]
    assert (folder / "data" / "a.txt").read_bytes() == b"alpha"
    assert (folder / ".DUTS-TE.zip.extracted").read_text() == f"{server.url}/mirror/DUTS-TE.zip\n"


def test_registered_hash_replaces_the_built_in_hash_and_size(server, tmp_path):
    (server.root / "data.zip").write_bytes(ZIP)
    download.set_download_mirror(server.url)
    download.register_file_hash("data.zip", ZIP_SHA256.upper())
    # The built-in hash and size describe the official file, not the mirror's copy.
    folder = download_and_extract(
        "https://example.org/data.zip",
        file_name="data.zip",
        cache_dir=tmp_path / "cache",
        file_hash="0" * 64,
        size=1,
    )
    assert (folder / "data" / "a.txt").read_bytes() == b"alpha"
    assert server.requests == ["/data.zip"]


def test_mirror_file_with_the_wrong_hash_is_removed(server, tmp_path, monkeypatch):
    (server.root / "DUTS-TE.zip").write_bytes(ZIP)
    hashes = _hashes_file(tmp_path, {"DUTS-TE.zip": "1" * 64})
    monkeypatch.setenv(download.MIRROR_ENV, server.url)
    monkeypatch.setenv(download.HASHES_ENV, hashes)
    cache = tmp_path / "cache"

    with pytest.raises(ChecksumError) as error:
        download_and_extract(ORIGINAL_DUTS_URL, file_name="DUTS-TE.zip", cache_dir=cache)

    message = str(error.value)
    assert f"{server.url}/DUTS-TE.zip" in message
    assert f"has sha256 {ZIP_SHA256}, expected {'1' * 64}" in message
    assert f"{download.HASHES_ENV}={hashes}" in message
    assert "removed" in message
    assert not (cache / "DUTS-TE.zip").exists()
    assert not (cache / "DUTS-TE_extracted").exists()


def test_file_missing_on_the_mirror_names_the_mirror_and_the_original(server, tmp_path):
    download.set_download_mirror(f"{server.url}/mirror/")
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as error:
        download_and_extract(ORIGINAL_DUTS_URL, file_name="DUTS-TE.zip", cache_dir=cache)
    message = str(error.value)
    assert f"could not download {server.url}/mirror/DUTS-TE.zip (" in message
    assert "404" in message
    assert "set_download_mirror()" in message
    assert f"original address is {ORIGINAL_DUTS_URL}" in message
    assert f"put the file at\n  {cache / 'DUTS-TE.zip'}\n" in message
    assert not (cache / "DUTS-TE.zip").exists()


def test_set_download_mirror_wins_over_the_environment_until_cleared(monkeypatch, tmp_path):
    monkeypatch.setenv(download.MIRROR_ENV, "http://env.example/files")
    assert download.download_mirror() == "http://env.example/files/"
    download.set_download_mirror("https://proxy.example/seglab/")
    assert download.download_mirror() == "https://proxy.example/seglab/"
    download.set_download_mirror(None)
    assert download.download_mirror() == "http://env.example/files/"
    download.set_download_mirror(tmp_path)  # a local folder
    assert download.download_mirror() == tmp_path.as_uri() + "/"


def test_a_folder_mirror_works_offline(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "stage1_train.zip").write_bytes(ZIP)
    download.set_download_mirror(str(mirror))
    folder = download_and_extract(
        "https://data.broadinstitute.org/bbbc/BBBC038/stage1_train.zip",
        file_name="stage1_train.zip",
        cache_dir=tmp_path / "cache",
    )
    assert (folder / "data" / "sub" / "b.txt").read_bytes() == b"beta"


def test_google_drive_file_comes_from_the_mirror_without_gdown(server, tmp_path, monkeypatch):
    import gdown

    def no_gdown(*args, **kwargs):
        raise AssertionError("gdown must not be used with a mirror")

    monkeypatch.setattr(gdown, "download", no_gdown)
    (server.root / "instance-level-human-parsing.zip").write_bytes(ZIP)
    monkeypatch.setenv(download.MIRROR_ENV, server.url)
    download.register_file_hash("instance-level-human-parsing.zip", ZIP_SHA256)

    folder = download_from_google_drive(
        "FILE_ID", file_name="instance-level-human-parsing.zip", cache_dir=tmp_path / "cache"
    )

    assert server.requests == ["/instance-level-human-parsing.zip"]
    assert (folder / "data" / "a.txt").read_bytes() == b"alpha"


def test_google_drive_checks_a_registered_hash(fake_gdown, tmp_path):
    download.register_file_hash("parsing.zip", "2" * 64)
    with pytest.raises(ChecksumError, match="registered with register_file_hash"):
        download_from_google_drive("FILE_ID", file_name="parsing.zip", cache_dir=tmp_path / "c")


def test_pets_and_duts_downloads_use_the_mirror(server, tmp_path, monkeypatch):
    from seglab.data import duts, pets

    images = _tar_gz_bytes({"images/Abyssinian_1.jpg": b"jpeg"})
    annotations = _tar_gz_bytes({"annotations/trainval.txt": b"Abyssinian_1 1 1 1\n"})
    duts_zip = _zip_bytes({"DUTS-TE/DUTS-TE-Image/a.jpg": b"j", "DUTS-TE/DUTS-TE-Mask/a.png": b"p"})
    archives = {"images.tar.gz": images, "annotations.tar.gz": annotations, "DUTS-TE.zip": duts_zip}
    for name, data in archives.items():
        (server.root / name).write_bytes(data)
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in archives.items()}
    monkeypatch.setenv(download.HASHES_ENV, _hashes_file(tmp_path, hashes))
    monkeypatch.setenv(download.MIRROR_ENV, server.url)
    cache = tmp_path / "cache"

    pets_root = pets.download_oxford_pets(cache)
    duts_root = duts.download_duts_te(cache)

    assert server.requests == ["/images.tar.gz", "/annotations.tar.gz", "/DUTS-TE.zip"]
    assert (pets_root / "images" / "Abyssinian_1.jpg").read_bytes() == b"jpeg"
    assert (pets_root / "annotations" / "trainval.txt").is_file()
    assert duts_root == cache / "DUTS-TE_extracted" / "DUTS-TE"


def test_resolve_download_for_a_cached_weights_file(monkeypatch, tmp_path):
    name = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    original = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + name
    plain = download.resolve_download(original, file_name=name, file_hash="a" * 32)
    assert plain == (original, "a" * 32, None, original, None)
    assert not plain.mirrored

    monkeypatch.setenv(download.MIRROR_ENV, "http://127.0.0.1:9/m")
    monkeypatch.setenv(download.HASHES_ENV, _hashes_file(tmp_path, {name: "B" * 64}))
    mirrored = download.resolve_download(original, file_name=name, file_hash="a" * 32, size=5)
    assert mirrored.url == f"http://127.0.0.1:9/m/{name}"
    assert mirrored.file_hash == "b" * 64 and mirrored.size is None
    assert mirrored.mirrored and mirrored.original_url == original


@pytest.mark.parametrize(
    "mirror, hashes_json, pattern",
    [
        ("ftp://host/files", None, "SEGLAB_DOWNLOAD_MIRROR: the download mirror must be"),
        ("relative/folder", None, "absolute folder path"),
        (None, "MISSING", "cannot read it"),
        (None, "{not json", "not valid JSON"),
        (None, '["a list"]', "expected a JSON object"),
        (None, '{"x.zip": "abc"}', "the hash of x.zip must be an md5"),
        (None, '{"a/x.zip": "' + "0" * 64 + '"}', "the key 'a/x.zip' is not a plain"),
    ],
)
def test_bad_mirror_or_hashes_settings_say_what_is_wrong(
    monkeypatch, tmp_path, mirror, hashes_json, pattern
):
    if mirror is not None:
        monkeypatch.setenv(download.MIRROR_ENV, mirror)
    if hashes_json is not None:
        hashes = tmp_path / "hashes.json"
        if hashes_json != "MISSING":
            hashes.write_text(hashes_json)
        monkeypatch.setenv(download.HASHES_ENV, str(hashes))
        pattern = f"{hashes} \\(named by SEGLAB_DOWNLOAD_HASHES\\): {pattern}"
    with pytest.raises(ValueError, match=pattern):
        download.resolve_download("https://example.org/x.zip", file_name="x.zip")


def test_bad_register_file_hash_arguments():
    with pytest.raises(ValueError, match="plain file name"):
        download.register_file_hash("../x.zip", "0" * 64)
    with pytest.raises(ValueError, match="md5"):
        download.register_file_hash("x.zip", "xyz")
    with pytest.raises(ValueError, match="mirror must be"):
        download.set_download_mirror("mirror.example.org")
    download.register_file_hash("x.zip", "0" * 32)
    download.register_file_hash("x.zip", None)
    assert download.registered_file_hash("x.zip") is None
