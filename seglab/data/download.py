"""Download a dataset archive once, check it, unpack it once; say what to do when offline.

Layout in the cache folder (``$KERAS_HOME/datasets`` or ``~/.keras/datasets`` by default)::

    <cache_dir>/<file_name>                      the archive, kept after unpacking
    <cache_dir>/<name>_extracted/                what it unpacks to (``extract_dir`` to choose)
    <cache_dir>/<name>_extracted/.<file_name>.extracted    written when unpacking finished

A second call finds the marker and returns at once: no network, no hashing, no unpacking.
An archive put at ``<cache_dir>/<file_name>`` by hand is checked and unpacked the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

# Seconds a stalled connection may stay silent before the download is abandoned. urllib (under
# keras.utils.get_file) has no timeout argument, so it is set as the socket default meanwhile.
NETWORK_TIMEOUT_S = 60.0

_ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")


class DownloadError(OSError):
    """An archive could not be fetched or unpacked; the message names the URL or file and
    says where to put the archive by hand."""


class ChecksumError(DownloadError):
    """The archive's size or hash is not the expected one; the bad file has been removed."""


def default_cache_dir() -> Path:
    """``$KERAS_HOME/datasets``, else ``~/.keras/datasets`` (where ``keras.utils.get_file``
    puts datasets)."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return Path(keras_home).expanduser() / "datasets"


def download_and_extract(
    url: str,
    *,
    file_name: str,
    cache_dir: str | os.PathLike | None = None,
    file_hash: str | None = None,
    size: int | None = None,
    extract: bool = True,
    extract_dir: str | None = None,
) -> Path:
    """Download ``url`` with ``keras.utils.get_file`` (``http(s)://`` or ``file://``), check it
    and unpack it, all only once.

    Args:
        url: where the archive is.
        file_name: the archive's name in the cache folder, e.g. ``"DUTS-TE.zip"``.
        cache_dir: the cache folder; default ``default_cache_dir()``.
        file_hash: expected sha256 (64 hex digits) or md5 (32) of the archive.
        size: expected size in bytes.
        extract: unpack the archive (zip or tar, compressed or not) and return the folder;
            ``False`` returns the archive's path.
        extract_dir: name of the folder to unpack into, inside ``cache_dir``; default
            ``<file_name without suffix>_extracted``. Several archives may share one.

    Returns:
        The folder the archive was unpacked into, or the archive itself when ``extract=False``.

    Raises:
        DownloadError: the download failed (e.g. no internet); the message gives the URL and
            the exact path to put the archive at by hand.
        ChecksumError: size or hash mismatch; the file has been removed.
    """

    def fetch(target: Path) -> None:
        import keras

        with _socket_timeout(NETWORK_TIMEOUT_S):
            try:
                # An absolute cache_subdir makes get_file use exactly that folder.
                keras.utils.get_file(
                    fname=target.name,
                    origin=url,
                    cache_dir=str(target.parent),
                    cache_subdir=str(target.parent),
                    extract=False,
                )
            except Exception as err:  # get_file re-raises URL errors as a bare Exception
                _remove(target)
                raise DownloadError(_by_hand_message(url, target, err)) from err

    return _fetch_and_extract(
        fetch,
        source=url,
        file_name=file_name,
        cache_dir=cache_dir,
        file_hash=file_hash,
        size=size,
        extract=extract,
        extract_dir=extract_dir,
    )


def download_from_google_drive(
    file_id: str,
    *,
    file_name: str,
    cache_dir: str | os.PathLike | None = None,
    file_hash: str | None = None,
    size: int | None = None,
    extract: bool = True,
    extract_dir: str | None = None,
) -> Path:
    """Like ``download_and_extract``, for a Google Drive file (through ``gdown``).

    Google Drive answers large files with a confirmation page and limits how often a public
    file may be fetched; ``gdown`` handles the first. When the quota is exceeded the download
    fails, and the message says where to put a copy fetched in a browser.
    """
    url = f"https://drive.google.com/uc?id={file_id}"

    def fetch(target: Path) -> None:
        import gdown

        with _socket_timeout(NETWORK_TIMEOUT_S):
            try:
                result = gdown.download(id=file_id, output=str(target), quiet=False)
            except Exception as err:  # requests / gdown errors, offline or quota
                _remove(target)
                raise DownloadError(_by_hand_message(url, target, err)) from err
        if result is None or not target.is_file():
            raise DownloadError(_by_hand_message(url, target, "gdown returned no file"))

    return _fetch_and_extract(
        fetch,
        source=url,
        file_name=file_name,
        cache_dir=cache_dir,
        file_hash=file_hash,
        size=size,
        extract=extract,
        extract_dir=extract_dir,
    )


# ----------------------------------------------------------------------------------------------


def _fetch_and_extract(
    fetch: Callable[[Path], None],
    *,
    source: str,
    file_name: str,
    cache_dir,
    file_hash: str | None,
    size: int | None,
    extract: bool,
    extract_dir: str | None,
) -> Path:
    if not file_name or Path(file_name).name != file_name:
        raise ValueError(f"file_name must be a plain file name, got {file_name!r}")
    if file_hash is not None and len(file_hash) not in (32, 64):
        raise ValueError(
            f"file_hash must be an md5 (32 hex digits) or sha256 (64), got {file_hash!r}"
        )
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    archive = cache / file_name
    target_dir = cache / (extract_dir or f"{_strip_archive_suffix(file_name)}_extracted")
    marker = target_dir / f".{file_name}.extracted"

    if extract and marker.is_file():
        return target_dir
    if not archive.is_file():
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DownloadError(f"{cache}: cannot create the cache folder ({err})") from err
        fetch(archive)
    _verify(archive, source, file_hash, size)
    if not extract:
        return archive
    _unpack(archive, target_dir)
    marker.write_text(f"{source}\n")
    return target_dir


def _by_hand_message(source: str, target: Path, reason) -> str:
    return (
        f"could not download {source} ({reason}).\n"
        f"Without internet access here, download it on another machine and put the file at\n"
        f"  {target}\n"
        f"then run this again: it is checked and unpacked from there."
    )


def _verify(path: Path, source: str, file_hash: str | None, size: int | None) -> None:
    problem = None
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        problem = f"has {actual_size} bytes, expected {size}"
    elif file_hash is not None:
        algorithm = "sha256" if len(file_hash) == 64 else "md5"
        actual = _hash_file(path, algorithm)
        if actual != file_hash.lower():
            problem = f"has {algorithm} {actual}, expected {file_hash.lower()}"
    if problem:
        _remove(path)
        raise ChecksumError(
            f"{path} (from {source}) {problem}: it is incomplete or not the expected file, "
            f"so it was removed. Run again to download it again, or put a good copy at {path}."
        )


def _hash_file(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _unpack(archive: Path, target_dir: Path) -> None:
    if zipfile.is_zipfile(archive):
        opener, kind = zipfile.ZipFile, "zip"
    elif tarfile.is_tarfile(archive):  # also .tar.gz / .tar.bz2 / .tar.xz
        opener, kind = tarfile.open, "tar"
    else:
        _remove(archive)
        raise DownloadError(
            f"{archive}: not a zip or tar archive (an error page or a broken download?), so it "
            f"was removed. Run again to download it again, or put a good copy at {archive}."
        )
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        with opener(archive) as opened:
            if kind == "tar" and hasattr(tarfile, "data_filter"):
                # Refuses absolute paths, '..' and links out of the folder.
                opened.extractall(target_dir, filter="data")
            else:  # zipfile drops absolute paths and '..' by itself
                opened.extractall(target_dir)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise DownloadError(
            f"{archive}: could not unpack it into {target_dir} ({err}). If the archive is "
            f"damaged, delete it and run again."
        ) from err


def _strip_archive_suffix(file_name: str) -> str:
    for suffix in _ARCHIVE_SUFFIXES:
        if file_name.lower().endswith(suffix):
            return file_name[: -len(suffix)]
    return Path(file_name).stem


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    if previous is None:
        socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        if previous is None:
            socket.setdefaulttimeout(None)
