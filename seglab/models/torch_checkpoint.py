"""Read a PyTorch checkpoint (``torch.save`` of a state dict) into NumPy arrays, without PyTorch.

- :func:`read_torch_checkpoint` understands the zip format of PyTorch >= 1.6 and the older
  (legacy) pickle format, through a restricted unpickler that only rebuilds tensors and ordered
  dicts: no code in the file runs. It unwraps ``{"state_dict": ...}``-style files and the
  ``module.`` prefix of ``DataParallel``.
- :func:`is_torch_checkpoint` tells such a file from Keras weight files.

``seglab.models.u2net.checkpoint`` uses it to load the official U²-Net checkpoints.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from seglab.errors import PathNotFoundError

__all__ = ["read_torch_checkpoint", "is_torch_checkpoint", "unwrap_state_dict"]

# torch.save's legacy format starts with this number, then the protocol version 1001.
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_MAGIC_BYTES = _LEGACY_MAGIC_NUMBER.to_bytes(10, "little")
_LEGACY_PROTOCOL_VERSION = 1001
_ZIP_MAGIC = b"PK\x03\x04"
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".pth.tar")

# torch.<Name>Storage -> NumPy dtype of its elements ("bfloat16" is widened to float32).
_STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}
# Keys under which training scripts wrap a state dict ({"state_dict": ..., "epoch": ...}).
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
_DATA_PARALLEL_PREFIX = "module."


@dataclasses.dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: str


@dataclasses.dataclass(frozen=True)
class _StorageRef:
    key: str
    storage_type: _StorageType
    numel: int
    view_offset: int = 0  # legacy storage views: elements into the root storage


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *unused):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a state dict: only tensors, storages and ordered dicts may appear."""

    def __init__(self, file, source):
        super().__init__(file)
        self.source = source
        self.storages = {}  # key -> _StorageRef, in order of appearance

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name.endswith("Storage"):
            if name not in _STORAGE_DTYPES:
                raise ValueError(
                    f"{self.source}: holds tensors of type torch.{name}, which cannot be read "
                    f"without PyTorch (supported: {', '.join(sorted(_STORAGE_DTYPES))})"
                )
            return _StorageType(name, _STORAGE_DTYPES[name])
        raise ValueError(
            f"{self.source}: the checkpoint refers to {module}.{name}; only a state dict of "
            "tensors can be read without PyTorch. If it is a whole pickled model, re-save it "
            "with torch.save(model.state_dict(), path)."
        )

    def persistent_load(self, pid):
        # zip: ("storage", type, key, location, numel); legacy adds view_metadata.
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ValueError(f"{self.source}: unknown persistent id {pid!r} in the checkpoint")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise ValueError(f"{self.source}: storage {key} has no tensor type")
        view_offset = 0
        if len(pid) > 5 and pid[5] is not None:  # (view_key, offset, size): old storage views
            view_offset = int(pid[5][1])
        reference = _StorageRef(key, storage_type, numel, view_offset)
        self.storages.setdefault(key, reference)
        return reference


def _array_from_bytes(data, storage_type, little_endian, source, key):
    """A storage's raw bytes as a 1-D native-order NumPy array."""
    if storage_type.dtype == "bfloat16":  # the upper half of a float32
        halves = np.frombuffer(data, dtype="<u2" if little_endian else ">u2")
        return (halves.astype(np.uint32) << 16).view(np.float32)
    dtype = np.dtype(storage_type.dtype).newbyteorder("<" if little_endian else ">")
    if len(data) % dtype.itemsize:
        raise ValueError(f"{source}: storage {key} is damaged ({len(data)} bytes)")
    return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)


def _materialize(obj, storages, source):
    """Replaces every _TensorRef in ``obj`` (dicts, lists, tuples) by a NumPy array."""
    if isinstance(obj, _TensorRef):
        flat = storages[obj.storage.key]
        offset = obj.storage.view_offset + obj.offset
        if any(n == 0 for n in obj.size):
            return np.zeros(obj.size, flat.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(obj.size, obj.stride, strict=True))
        if offset < 0 or last >= flat.size or min(obj.stride, default=0) < 0:
            raise ValueError(
                f"{source}: a tensor of shape {obj.size} lies outside its storage "
                f"{obj.storage.key} ({flat.size} elements): the file is damaged"
            )
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=obj.size, strides=[s * flat.itemsize for s in obj.stride]
        )
        return np.array(view)  # a copy, independent of the storage
    if isinstance(obj, Mapping):
        return {key: _materialize(value, storages, source) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_materialize(value, storages, source) for value in obj)
    return obj


def _read_zip(path):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(
            f"{path}: a damaged or truncated zip file, not a readable PyTorch checkpoint ({error})"
        ) from error
    with archive:
        names = set(archive.namelist())
        pickles = sorted(name for name in names if name.endswith("data.pkl"))
        if len(pickles) != 1:
            raise ValueError(
                f"{path}: a zip file but not a PyTorch checkpoint (expected one "
                f"<name>/data.pkl, found {len(pickles)}); .keras files load with "
                "keras.saving.load_model"
            )
        prefix = pickles[0][: -len("data.pkl")]
        try:
            little_endian = True  # files from before the byteorder entry are little-endian
            if f"{prefix}byteorder" in names:
                little_endian = archive.read(f"{prefix}byteorder").strip() != b"big"
            unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), path)
            obj = unpickler.load()
            storages = {}
            for key, reference in unpickler.storages.items():
                name = f"{prefix}data/{key}"
                if name not in names:
                    raise ValueError(f"{path}: storage {name} is missing: the file is damaged")
                storages[key] = _array_from_bytes(
                    archive.read(name), reference.storage_type, little_endian, path, key
                )
        except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, OSError) as error:
            raise ValueError(f"{path}: damaged PyTorch checkpoint ({error})") from error
    return _materialize(obj, storages, path)


def _read_legacy(path):
    with open(path, "rb") as file:
        try:
            header = _RestrictedUnpickler(file, path)
            if header.load() != _LEGACY_MAGIC_NUMBER:
                raise ValueError(f"{path}: not a PyTorch checkpoint (wrong magic number)")
            protocol = header.load()
            if protocol != _LEGACY_PROTOCOL_VERSION:
                raise ValueError(f"{path}: unsupported legacy PyTorch protocol {protocol!r}")
            sys_info = header.load()
            little_endian = not isinstance(sys_info, Mapping) or sys_info.get("little_endian", True)
            unpickler = _RestrictedUnpickler(file, path)
            obj = unpickler.load()
            keys = _RestrictedUnpickler(file, path).load()
            storages = {}
            for key in map(str, keys):
                if key not in unpickler.storages:
                    raise ValueError(f"{path}: storage {key} is not used by any tensor")
                storage_type = unpickler.storages[key].storage_type
                itemsize = (
                    2 if storage_type.dtype == "bfloat16" else np.dtype(storage_type.dtype).itemsize
                )
                count_bytes = file.read(8)
                if len(count_bytes) < 8:
                    raise EOFError(f"the file ends before storage {key}")
                (count,) = struct.unpack("<q" if little_endian else ">q", count_bytes)
                data = file.read(count * itemsize)
                if len(data) < count * itemsize:
                    raise EOFError(f"the file ends inside storage {key}")
                storages[key] = _array_from_bytes(data, storage_type, little_endian, path, key)
        except (EOFError, pickle.UnpicklingError, struct.error, OSError) as error:
            raise ValueError(
                f"{path}: truncated or damaged PyTorch checkpoint (legacy format): {error}"
            ) from error
    missing = sorted(set(unpickler.storages) - set(storages))
    if missing:
        raise ValueError(f"{path}: storages {missing[:5]} are missing: the file is truncated")
    return _materialize(obj, storages, path)


def unwrap_state_dict(obj, source) -> dict[str, np.ndarray]:
    """The flat {name: array} inside what a checkpoint holds (a state dict, or one wrapped as
    ``{"state_dict": ...}``), without the ``module.`` prefixes of ``DataParallel``."""

    def is_state_dict(value):
        return (
            isinstance(value, Mapping)
            and len(value) > 0
            and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in value.items())
        )

    state = None
    if is_state_dict(obj):
        state = obj
    elif isinstance(obj, Mapping):
        state = next((obj[k] for k in _WRAPPER_KEYS if is_state_dict(obj.get(k))), None)
    if state is None:
        found = (
            f"a dict with keys {sorted(map(str, obj))[:10]}"
            if isinstance(obj, Mapping)
            else type(obj).__name__
        )
        raise ValueError(
            f"{source}: holds {found}, not a state dict of tensors (nor one under "
            f"{', '.join(map(repr, _WRAPPER_KEYS))})"
        )
    if all(key.startswith(_DATA_PARALLEL_PREFIX) for key in state):  # saved from DataParallel
        state = {key[len(_DATA_PARALLEL_PREFIX) :]: value for key, value in state.items()}
    return dict(state)


def read_torch_checkpoint(path) -> dict[str, np.ndarray]:
    """Reads a PyTorch state dict (``torch.save(model.state_dict(), path)``) without PyTorch.

    Both formats of ``torch.save`` are read: the zip format (PyTorch >= 1.6) and the legacy
    pickle format. A state dict wrapped as ``{"state_dict": ...}`` (or ``"model"``,
    ``"model_state_dict"``, ``"net"``) is unwrapped, and the ``"module."`` prefix that
    ``DataParallel`` adds is removed.

    Returns:
        ``{parameter name: numpy array}`` in the file's order, PyTorch's layout (a conv weight
        is ``(out, in, kh, kw)``); bfloat16 tensors come back as float32.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a PyTorch checkpoint, is truncated or damaged, holds
            tensor types NumPy cannot represent, or holds something other than a state dict
            (e.g. a whole pickled model). The message names the file.
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise PathNotFoundError(path, "checkpoint file not found")
    with open(path, "rb") as file:
        head = file.read(32)
    if head.startswith(_ZIP_MAGIC) or zipfile.is_zipfile(path):
        obj = _read_zip(path)
    elif head.startswith(b"\x80") and _LEGACY_MAGIC_BYTES in head:
        obj = _read_legacy(path)
    else:
        raise ValueError(
            f"{path}: not a PyTorch checkpoint (neither the zip format of torch.save nor its "
            f"legacy pickle format; the file starts with {head[:8]!r})"
        )
    return unwrap_state_dict(obj, path)


def is_torch_checkpoint(path) -> bool:
    """Whether ``path`` names a PyTorch checkpoint: a .pth/.pt name, or the file's content.

    A name ending in ``.pth``, ``.pt`` or ``.pth.tar`` counts even when the file is absent (so
    the loader reports it missing); other existing files count when they are a zip with a
    ``data.pkl`` or start with the legacy format's magic number. ``.keras`` archives do not.
    """
    if not isinstance(path, str | os.PathLike):
        return False
    text = os.fspath(path)
    if text.lower().endswith(_CHECKPOINT_SUFFIXES):
        return True
    file_path = Path(text).expanduser()
    if not file_path.is_file():
        return False
    try:
        with open(file_path, "rb") as file:
            head = file.read(32)
        if head.startswith(b"\x80") and _LEGACY_MAGIC_BYTES in head:
            return True
        if head.startswith(_ZIP_MAGIC) and zipfile.is_zipfile(file_path):
            with zipfile.ZipFile(file_path) as archive:
                return any(name.endswith("/data.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return False
