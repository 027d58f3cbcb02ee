"""Download a dataset archive once, check it, unpack it once; say what to do when offline.

Layout in the cache folder (``$KERAS_HOME/datasets`` or ``~/.keras/datasets`` by default)::

    <cache_dir>/<file_name>                      the archive, kept after unpacking
    <cache_dir>/<name>_extracted/                what it unpacks to (``extract_dir`` to choose)
    <cache_dir>/<name>_extracted/.<file_name>.extracted    written when unpacking finished

A second call finds the marker and returns at once: no network, no hashing, no unpacking.
An archive put at ``<cache_dir>/<file_name>`` by hand is checked and unpacked the same way.

**A download mirror.** Behind a proxy, or with the archives on a local server, set
``SEGLAB_DOWNLOAD_MIRROR=http://host/path/`` (or call ``set_download_mirror(url)``): every
file is then fetched from ``<mirror>/<file name>`` under its original name (``images.tar.gz``,
``annotations.tar.gz``, ``DUTS-TE.zip``, ``instance-level-human-parsing.zip``,
``stage1_train.zip``), over plain HTTP(S) (no Google Drive client), and checked as before.
A ``file://`` URL or an absolute folder path works as a mirror too.

**Expected hashes.** ``register_file_hash(file_name, sha256)`` (in this process) or
``SEGLAB_DOWNLOAD_HASHES=/path/hashes.json`` (a JSON object ``{"file name": "sha256 or md5"}``,
seen by every process, e.g. a notebook's kernel) pins the hash of a file by name. A registered
hash replaces the built-in one (and the built-in size, which belongs to the official file), so
a mirror holding a repackaged archive is still verified; it also pins files that have no
published hash (DUTS-TE, CIHP, BBBC038).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import tarfile
import typing
import urllib.parse
import zipfile
from collections.abc import Callable
from pathlib import Path

from seglab.errors import SeglabError

# Seconds a stalled connection may stay silent before the download is abandoned. urllib (under
# keras.utils.get_file) has no timeout argument, so it is set as the socket default meanwhile.
NETWORK_TIMEOUT_S = 60.0

_ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")

MIRROR_ENV = "SEGLAB_DOWNLOAD_MIRROR"
HASHES_ENV = "SEGLAB_DOWNLOAD_HASHES"
_HASH_PATTERN = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{64}")

# set_download_mirror's value; None defers to the environment variable.
_mirror_override: str | None = None
_registered_hashes: dict[str, str] = {}


class DownloadError(SeglabError, OSError):
    """An archive could not be fetched or unpacked; the message names the URL or file and
    says where to put the archive by hand."""


class ChecksumError(DownloadError):
    """The archive's size or hash is not the expected one; the bad file has been removed."""


class DownloadSource(typing.NamedTuple):
    """Where a file is fetched from and how it is checked, after the mirror and the registered
    hashes are applied (``resolve_download``)."""

    url: str
    file_hash: str | None
    size: int | None
    original_url: str
    hash_origin: str | None  # why file_hash is expected, for messages; None: built-in

    @property
    def mirrored(self) -> bool:
        return self.url != self.original_url


def set_download_mirror(url: str | os.PathLike | None) -> None:
    """Fetch every file from ``<url>/<file name>`` instead of its original address.

    ``url`` is an ``http(s)://`` or ``file://`` base address, or an absolute folder path.
    ``None`` forgets this setting, so ``SEGLAB_DOWNLOAD_MIRROR`` (if set) applies again.

    Raises:
        ValueError: ``url`` is neither.
    """
    global _mirror_override
    _mirror_override = None if url is None else _normalise_mirror(url, "set_download_mirror")


def download_mirror() -> str | None:
    """The mirror in use (ending in ``/``): ``set_download_mirror``'s, else
    ``SEGLAB_DOWNLOAD_MIRROR``'s, else ``None``."""
    if _mirror_override is not None:
        return _mirror_override
    value = os.environ.get(MIRROR_ENV, "").strip()
    return _normalise_mirror(value, MIRROR_ENV) if value else None


def register_file_hash(file_name: str, file_hash: str | None) -> None:
    """Expect ``file_hash`` (sha256, 64 hex digits, or md5, 32) for every file called
    ``file_name`` that seglab downloads or finds in its cache; ``None`` forgets it.

    Raises:
        ValueError: not a plain file name, or not a hash.
    """
    _check_file_name(file_name)
    if file_hash is None:
        _registered_hashes.pop(file_name, None)
        return
    _registered_hashes[file_name] = _check_hash(file_hash, f"the hash of {file_name}")


def registered_file_hash(file_name: str) -> tuple[str, str] | None:
    """``(hash, where it was registered)`` for ``file_name``, or ``None``: first
    ``register_file_hash``, then the JSON file named by ``SEGLAB_DOWNLOAD_HASHES``."""
    if file_name in _registered_hashes:
        return _registered_hashes[file_name], "register_file_hash"
    hashes_file = os.environ.get(HASHES_ENV, "").strip()
    if not hashes_file:
        return None
    value = _read_hashes_file(Path(hashes_file).expanduser()).get(file_name)
    return None if value is None else (value, f"{HASHES_ENV}={hashes_file}")


def resolve_download(
    url: str, *, file_name: str, file_hash: str | None = None, size: int | None = None
) -> DownloadSource:
    """Apply the mirror and the registered hashes to one file.

    Every download in seglab goes through this (also the backbones' ImageNet weights), so a
    mirror or a pinned hash works the same for all of them.
    """
    _check_file_name(file_name)
    registered = registered_file_hash(file_name)
    hash_origin = None
    if registered is not None:
        file_hash, hash_origin = registered
        size = None  # the built-in size describes the official file, not this one
    mirror = download_mirror()
    source_url = mirror + urllib.parse.quote(file_name) if mirror else url
    return DownloadSource(source_url, file_hash, size, url, hash_origin)


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

    With a download mirror (``set_download_mirror``, ``SEGLAB_DOWNLOAD_MIRROR``) the file comes
    from ``<mirror>/<file_name>`` instead of ``url``; a hash registered for ``file_name``
    replaces ``file_hash`` and ``size``.
    """
    source = resolve_download(url, file_name=file_name, file_hash=file_hash, size=size)

    def fetch(target: Path) -> None:
        import keras

        with _socket_timeout(NETWORK_TIMEOUT_S):
            try:
                # An absolute cache_subdir makes get_file use exactly that folder.
                keras.utils.get_file(
                    fname=target.name,
                    origin=source.url,
                    cache_dir=str(target.parent),
                    cache_subdir=str(target.parent),
                    extract=False,
                )
            except Exception as err:  # get_file re-raises URL errors as a bare Exception
                _remove(target)
                raise DownloadError(_by_hand_message(source, target, err)) from err

    return _fetch_and_extract(
        fetch,
        source=source,
        file_name=file_name,
        cache_dir=cache_dir,
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
    fails, and the message says where to put a copy fetched in a browser. With a download
    mirror, the file comes from ``<mirror>/<file_name>`` over plain HTTP(S) instead.
    """
    url = f"https://drive.google.com/uc?id={file_id}"
    options = dict(
        file_name=file_name,
        cache_dir=cache_dir,
        file_hash=file_hash,
        size=size,
        extract=extract,
        extract_dir=extract_dir,
    )
    if download_mirror() is not None:
        # A mirror serves plain HTTP(S) files: no Google Drive client involved.
        return download_and_extract(url, **options)
    source = resolve_download(url, file_name=file_name, file_hash=file_hash, size=size)

    def fetch(target: Path) -> None:
        import gdown

        with _socket_timeout(NETWORK_TIMEOUT_S):
            try:
                result = gdown.download(id=file_id, output=str(target), quiet=False)
            except Exception as err:  # requests / gdown errors, offline or quota
                _remove(target)
                raise DownloadError(_by_hand_message(source, target, err)) from err
        if result is None or not target.is_file():
            raise DownloadError(_by_hand_message(source, target, "gdown returned no file"))

    return _fetch_and_extract(
        fetch,
        source=source,
        file_name=file_name,
        cache_dir=cache_dir,
        extract=extract,
        extract_dir=extract_dir,
    )


# ----------------------------------------------------------------------------------------------


def _fetch_and_extract(
    fetch: Callable[[Path], None],
    *,
    source: DownloadSource,
    file_name: str,
    cache_dir,
    extract: bool,
    extract_dir: str | None,
) -> Path:
    if source.file_hash is not None:
        _check_hash(source.file_hash, "file_hash")
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
    _verify(archive, source)
    if not extract:
        return archive
    _unpack(archive, target_dir)
    marker.write_text(f"{source.url}\n")
    return target_dir


def _by_hand_message(source: DownloadSource, target: Path, reason) -> str:
    if source.mirrored:
        return (
            f"could not download {source.url} ({reason}).\n"
            f"That address is on the download mirror set by {_mirror_origin()}; the file's "
            f"original address is {source.original_url}. Put {target.name} on the mirror, "
            f"or unset the mirror to download from the original address, or put the file at\n"
            f"  {target}\n"
            f"then run this again: it is checked and unpacked from there."
        )
    return (
        f"could not download {source.url} ({reason}).\n"
        f"Without internet access here (or behind a proxy: see {MIRROR_ENV}), download it on "
        f"another machine and put the file at\n"
        f"  {target}\n"
        f"then run this again: it is checked and unpacked from there."
    )


def _verify(path: Path, source: DownloadSource) -> None:
    problem = None
    actual_size = path.stat().st_size
    if source.size is not None and actual_size != source.size:
        problem = f"has {actual_size} bytes, expected {source.size}"
    elif source.file_hash is not None:
        algorithm = "sha256" if len(source.file_hash) == 64 else "md5"
        actual = _hash_file(path, algorithm)
        if actual != source.file_hash.lower():
            problem = f"has {algorithm} {actual}, expected {source.file_hash.lower()}"
            if source.hash_origin:
                problem += f" (registered with {source.hash_origin})"
    if problem:
        _remove(path)
        raise ChecksumError(
            f"{path} (from {source.url}) {problem}: it is incomplete or not the expected file, "
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


def _check_file_name(file_name: str) -> None:
    if not file_name or not isinstance(file_name, str) or Path(file_name).name != file_name:
        raise ValueError(f"file_name must be a plain file name, got {file_name!r}")


def _check_hash(file_hash: str, what: str) -> str:
    if not isinstance(file_hash, str) or not _HASH_PATTERN.fullmatch(file_hash):
        raise ValueError(f"{what} must be an md5 (32 hex digits) or sha256 (64), got {file_hash!r}")
    return file_hash.lower()


def _read_hashes_file(path: Path) -> dict[str, str]:
    try:
        values = json.loads(path.read_text())
    except OSError as err:
        raise ValueError(f"{path} (named by {HASHES_ENV}): cannot read it ({err})") from err
    except ValueError as err:
        raise ValueError(f"{path} (named by {HASHES_ENV}): not valid JSON ({err})") from err
    if not isinstance(values, dict):
        raise ValueError(
            f"{path} (named by {HASHES_ENV}): expected a JSON object "
            '{"file name": "sha256 or md5"}, got ' + type(values).__name__
        )
    hashes = {}
    for file_name, file_hash in values.items():
        if Path(file_name).name != file_name:
            raise ValueError(
                f"{path} (named by {HASHES_ENV}): the key {file_name!r} is not a plain file name"
            )
        try:
            hashes[file_name] = _check_hash(file_hash, f"the hash of {file_name}")
        except ValueError as err:
            raise ValueError(f"{path} (named by {HASHES_ENV}): {err}") from None
    return hashes


def _normalise_mirror(url: str | os.PathLike, origin: str) -> str:
    text = os.fspath(url).strip()
    if os.path.isabs(text) and "://" not in text:
        text = Path(text).as_uri()
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise ValueError(
            f"{origin}: the download mirror must be an http(s):// or file:// address or an "
            f"absolute folder path, got {os.fspath(url)!r}"
        )
    return text if text.endswith("/") else text + "/"


def _mirror_origin() -> str:
    if _mirror_override is not None:
        return "set_download_mirror()"
    return f"{MIRROR_ENV}={os.environ.get(MIRROR_ENV, '').strip()}"


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
