"""Dataset archives in their original file names and layouts, built from the course's samples.

The tests of the downloaders and the full-path rehearsal serve these files from a local HTTP
server as a download mirror, so the real download, checksum, unpacking and conversion code
runs on them. Each builder writes one archive and returns its path:

=================================  ====================================================
``images.tar.gz``                  ``images/<name>.jpg`` (a plain tar, as the original)
``annotations.tar.gz``             ``annotations/{list,trainval,test}.txt``, ``README``,
                                   ``trimaps/<name>.png`` and macOS ``trimaps/._<name>.png``
``DUTS-TE.zip``                    ``DUTS-TE/DUTS-TE-Image/<id>.jpg``, ``DUTS-TE-Mask/<id>.png``
``instance-level-human-parsing.zip``  ``instance-level_human_parsing/`` twice nested, then
                                   ``Training/{Images,Category_ids}``, ``human_colormap.mat``
``stage1_train.zip``               ``<id>/images/<id>.png`` (RGBA) and ``<id>/masks/<hash>.png``
                                   (one 0/255 mask per nucleus), no top folder, as Kaggle's
=================================  ====================================================
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

# The course's sample folders (under SEGLAB_SAMPLE_DATA) each archive is made from.
SAMPLE_OF_ARCHIVE = {
    "images.tar.gz": "oxford_pets_sample",
    "annotations.tar.gz": "oxford_pets_sample",
    "DUTS-TE.zip": "sod_sample",
    "instance-level-human-parsing.zip": "cihp_sample",
    "stage1_train.zip": "microscopy_sample",
}

# Start of an AppleDouble file (macOS metadata): the official annotations.tar.gz holds one
# "._<name>.png" beside each trimap, which loaders that list trimaps/ must skip.
_APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(16)


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def oxford_pets_archives(sample: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """``images.tar.gz`` and ``annotations.tar.gz`` from ``oxford_pets_sample``."""
    sample, out_dir = Path(sample), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = out_dir / "images.tar.gz"
    # The official files are uncompressed tars despite their suffix; so are these.
    with tarfile.open(images, "w") as archive:
        for path in sorted((sample / "images").glob("*.jpg")):
            archive.add(path, arcname=f"images/{path.name}")
    annotations = out_dir / "annotations.tar.gz"
    with tarfile.open(annotations, "w") as archive:
        for name in ("README", "list.txt", "trainval.txt", "test.txt"):
            if (sample / "annotations" / name).is_file():
                archive.add(sample / "annotations" / name, arcname=f"annotations/{name}")
        for path in sorted((sample / "annotations" / "trimaps").glob("*.png")):
            archive.add(path, arcname=f"annotations/trimaps/{path.name}")
            _add_bytes(archive, f"annotations/trimaps/._{path.name}", _APPLE_DOUBLE)
    return [images, annotations]


def duts_te_archive(sample: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """``DUTS-TE.zip`` from ``sod_sample`` (``images/*.jpg``, ``masks/*.png``)."""
    sample, out_dir = Path(sample), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "DUTS-TE.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder, pattern, inside in (
            ("images", "*.jpg", "DUTS-TE-Image"),
            ("masks", "*.png", "DUTS-TE-Mask"),
        ):
            for path in sorted((sample / folder).glob(pattern)):
                archive.write(path, f"DUTS-TE/{inside}/{path.name}")
    return target


def cihp_archive(sample: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """``instance-level-human-parsing.zip`` (the DeepLabV3+ tutorial's zip, which nests the
    release folder twice) from ``cihp_sample/instance-level_human_parsing``."""
    sample, out_dir = Path(sample), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    release = sample / "instance-level_human_parsing"
    target = out_dir / "instance-level-human-parsing.zip"
    prefix = "instance-level_human_parsing/instance-level_human_parsing"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(release.rglob("*")):
            if path.is_file():
                archive.write(path, f"{prefix}/{path.relative_to(release).as_posix()}")
    return target


def bbbc038_archive(
    sample: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    top_folder: str = "",
    limit: int | None = None,
) -> Path:
    """``stage1_train.zip`` in BBBC038's layout from a PaddleSeg 2-class folder
    (``microscopy_sample``): each label is split into connected components, one mask PNG per
    nucleus (0/255, named by its hash as in the original); each image is saved as RGBA.

    Args:
        top_folder: a folder all members sit in (``"stage1_train"``); the original has none.
        limit: only the first ``limit`` images (sorted by id).
    """
    from PIL import Image
    from scipy import ndimage

    sample, out_dir = Path(sample), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "stage1_train.zip"
    prefix = f"{top_folder.strip('/')}/" if top_folder else ""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed
        for image_path in sorted((sample / "images").glob("*.png"))[:limit]:
            image_id = image_path.stem
            with Image.open(image_path) as image:
                rgba = image.convert("RGBA")
            archive.writestr(f"{prefix}{image_id}/images/{image_id}.png", _png_bytes(rgba))
            with Image.open(sample / "labels" / f"{image_id}.png") as label:
                foreground = np.asarray(label) > 0
            components, _ = ndimage.label(foreground)
            for index, box in enumerate(ndimage.find_objects(components), start=1):
                mask = np.zeros(foreground.shape, np.uint8)
                mask[box][components[box] == index] = 255
                data = _grey_png_bytes(mask)
                mask_name = hashlib.sha256(data).hexdigest()
                archive.writestr(f"{prefix}{image_id}/masks/{mask_name}.png", data)
    return target


def course_archives(samples: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Path]:
    """All five archives from the course's sample folder, by file name."""
    samples = Path(samples)
    built = [
        *oxford_pets_archives(samples / "oxford_pets_sample", out_dir),
        duts_te_archive(samples / "sod_sample", out_dir),
        cihp_archive(samples / "cihp_sample", out_dir),
        bbbc038_archive(samples / "microscopy_sample", out_dir),
    ]
    return {path.name: path for path in built}


def _png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # speed over size: test data
    return buffer.getvalue()


def _grey_png_bytes(array: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG, written directly: about 10x faster than PIL's encoder for the
    thousands of mostly-black masks a BBBC038 archive holds."""
    height, width = array.shape
    rows = np.zeros((height, width + 1), np.uint8)  # filter byte 0 (none) before each row
    rows[:, 1:] = array

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
        + chunk(b"IEND", b"")
    )


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))
