import functools
import hashlib
import http.server
import io
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
