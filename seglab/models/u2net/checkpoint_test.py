"""Reading the official U²-Net PyTorch checkpoints without PyTorch, and loading them.

The fixture (``u2net_official_fixture`` in the sample data) is a randomly initialised U2NETP
saved by PyTorch in both formats, with the official model's outputs on an odd-sized input.
Small checkpoints for the error cases are written here in the zip format by hand (pickle
opcodes, protocol 2), since PyTorch is not installed.
"""

import dataclasses
import os
import shutil
import struct
import warnings
import zipfile

import numpy as np
import pytest

from seglab.models import u2net, u2netp
from seglab.models.u2net.checkpoint import (
    is_torch_checkpoint,
    load_official_weights,
    read_torch_checkpoint,
)

FIXTURE = "u2net_official_fixture"
ZIP_FILE = "u2netp_random_init.pth"
LEGACY_FILE = "u2netp_random_init_legacy_format.pth"
IO_FILE = "u2netp_random_init_io.npz"
TOLERANCE = 1e-4


# --------------------------------------------------------------------------- a zip writer


@dataclasses.dataclass
class FakeTensor:
    """A tensor as torch.save stores it: a view (offset, shape, stride) of a flat storage."""

    storage: np.ndarray
    shape: tuple
    stride: tuple
    offset: int = 0
    storage_type: str | None = None  # default: from the storage's dtype


@dataclasses.dataclass
class FakeGlobal:
    """Pickled as ``module.name()``: stands for any object a state dict should not hold."""

    module: str
    name: str


_STORAGE_NAMES = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("float64"): "DoubleStorage",
    np.dtype("float16"): "HalfStorage",
    np.dtype("int64"): "LongStorage",
}


def _contiguous(array):
    array = np.ascontiguousarray(array)
    stride = tuple(s // array.itemsize for s in array.strides)
    return FakeTensor(array.reshape(-1), array.shape, stride)


class _ZipPickler:
    """Writes pickle protocol 2 opcodes for dicts, tuples, scalars and tensors."""

    def __init__(self):
        self.storages = []  # flat arrays, key = index

    def dumps(self, obj):
        return b"\x80\x02" + self._save(obj) + b"."

    def _save(self, obj):
        if isinstance(obj, np.ndarray):
            obj = _contiguous(obj)
        if isinstance(obj, FakeTensor):
            return self._tensor(obj)
        if isinstance(obj, FakeGlobal):
            return self._global(obj.module, obj.name) + b")R"
        if isinstance(obj, bool):
            return b"\x88" if obj else b"\x89"
        if isinstance(obj, int):
            return b"J" + struct.pack("<i", obj)
        if isinstance(obj, str):
            data = obj.encode()
            return b"X" + struct.pack("<I", len(data)) + data
        if isinstance(obj, tuple):
            return b"(" + b"".join(self._save(item) for item in obj) + b"t"
        if isinstance(obj, dict):  # an OrderedDict, as state_dict() returns
            items = b"".join(self._save(k) + self._save(v) for k, v in obj.items())
            return self._global("collections", "OrderedDict") + b")R(" + items + b"u"
        raise TypeError(f"cannot write {type(obj)}")

    @staticmethod
    def _global(module, name):
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def _tensor(self, tensor):
        key = str(len(self.storages))
        self.storages.append(tensor.storage)
        storage_type = tensor.storage_type or _STORAGE_NAMES[tensor.storage.dtype]
        persistent_id = (
            b"("
            + self._save("storage")
            + self._global("torch", storage_type)
            + self._save(key)
            + self._save("cpu")
            + self._save(int(tensor.storage.size))
            + b"tQ"
        )
        arguments = (
            persistent_id
            + self._save(tensor.offset)
            + self._save(tuple(tensor.shape))
            + self._save(tuple(tensor.stride))
            + self._save(False)
            + self._save({})
        )
        return self._global("torch._utils", "_rebuild_tensor_v2") + b"(" + arguments + b"tR"


def write_zip_checkpoint(path, obj, byteorder="little"):
    """Writes ``obj`` like ``torch.save(obj, path)`` (zip format) does."""
    pickler = _ZipPickler()
    data = pickler.dumps(obj)
    name = "archive"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{name}/data.pkl", data)
        archive.writestr(f"{name}/byteorder", byteorder)
        for key, storage in enumerate(pickler.storages):
            order = "<" if byteorder == "little" else ">"
            raw = storage.astype(storage.dtype.newbyteorder(order)).tobytes()
            archive.writestr(f"{name}/data/{key}", raw)
        archive.writestr(f"{name}/version", "3\n")
    return path


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fixture_dir(sample_data):
    return sample_data(FIXTURE)


@pytest.fixture(scope="module")
def official_state(fixture_dir):
    return read_torch_checkpoint(fixture_dir / ZIP_FILE)


@pytest.fixture(scope="module")
def free_size_u2netp():
    return u2netp(input_shape=(None, None, 3), normalization=None)


def _fixture_input_and_outputs(fixture_dir):
    arrays = np.load(fixture_dir / IO_FILE)
    image = arrays["input_nchw"].transpose(0, 2, 3, 1)  # NCHW -> NHWC
    expected = [arrays[f"output{i}_nchw"].transpose(0, 2, 3, 1) for i in range(7)]
    return image, expected


def _assert_reproduces_official_outputs(model, fixture_dir):
    image, expected = _fixture_input_and_outputs(fixture_dir)
    outputs = model(image, training=False)  # eager: faster than tracing predict() once
    differences = [
        float(np.max(np.abs(np.asarray(o) - e))) for o, e in zip(outputs, expected, strict=True)
    ]
    print("max abs difference per output (fused, side1 … side6):", differences)
    assert all(d < TOLERANCE for d in differences), differences


# --------------------------------------------------------------------------- reading


def test_both_formats_read_to_the_same_state_dict(fixture_dir, official_state):
    legacy = read_torch_checkpoint(fixture_dir / LEGACY_FILE)

    assert list(legacy) == list(official_state)
    for key, array in official_state.items():
        assert legacy[key].dtype == array.dtype, key
        np.testing.assert_array_equal(legacy[key], array, err_msg=key)
    # 11 stages of conv-BN-ReLU units, 6 side convs and the fusion conv.
    assert official_state["stage1.rebnconvin.conv_s1.weight"].shape == (64, 3, 3, 3)
    assert official_state["stage1.rebnconv1.conv_s1.weight"].shape == (16, 64, 3, 3)
    assert official_state["outconv.weight"].shape == (1, 6, 1, 1)
    assert official_state["stage1.rebnconvin.bn_s1.running_var"].dtype == np.float32
    assert official_state["stage1.rebnconvin.bn_s1.num_batches_tracked"].dtype == np.int64


def test_reads_views_with_offsets_strides_and_big_endian_data(tmp_path):
    storage = np.arange(12, dtype=np.float32)
    transposed = FakeTensor(storage, shape=(3, 2), stride=(1, 3), offset=0)  # (2, 3).T
    shifted = FakeTensor(storage, shape=(2, 2), stride=(2, 1), offset=6)
    counts = np.array([5, -7], dtype=np.int64)
    path = write_zip_checkpoint(
        tmp_path / "views.pth",
        {"transposed": transposed, "shifted": shifted, "counts": counts},
        byteorder="big",
    )

    state = read_torch_checkpoint(path)

    np.testing.assert_array_equal(state["transposed"], np.arange(6).reshape(2, 3).T)
    np.testing.assert_array_equal(state["shifted"], [[6, 7], [8, 9]])
    np.testing.assert_array_equal(state["counts"], [5, -7])
    assert state["transposed"].dtype == np.float32 and state["counts"].dtype == np.int64


def test_data_parallel_prefix_and_wrapped_state_dict(tmp_path, official_state):
    prefixed = {f"module.{key}": value for key, value in official_state.items()}
    wrapped = {"epoch": 12, "state_dict": prefixed}
    path = write_zip_checkpoint(tmp_path / "data_parallel.pth", wrapped)

    state = read_torch_checkpoint(path)

    assert list(state) == list(official_state)
    np.testing.assert_array_equal(state["outconv.weight"], official_state["outconv.weight"])


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pth: checkpoint file not found"):
        read_torch_checkpoint(tmp_path / "absent.pth")


@pytest.mark.parametrize("name", [ZIP_FILE, LEGACY_FILE])
def test_truncated_checkpoint(tmp_path, fixture_dir, name):
    data = (fixture_dir / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(ValueError, match=r"truncated") as error:
        read_torch_checkpoint(path)
    assert str(path) in str(error.value)


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    keras_like = tmp_path / "model.pth"
    with zipfile.ZipFile(keras_like, "w") as archive:
        archive.writestr("config.json", "{}")

    with pytest.raises(ValueError, match="notes.pth: not a PyTorch checkpoint"):
        read_torch_checkpoint(text)
    with pytest.raises(ValueError, match="model.pth: a zip file but not a PyTorch checkpoint"):
        read_torch_checkpoint(keras_like)


def test_refuses_code_and_unsupported_types(tmp_path):
    # A pickled global that would run code if it were resolved.
    code = write_zip_checkpoint(tmp_path / "code.pth", {"x": FakeGlobal("os", "getpid")})
    quantized = FakeTensor(np.zeros(4, np.int8), (4,), (1,), storage_type="QInt8Storage")
    quantized_path = write_zip_checkpoint(tmp_path / "quantized.pth", {"w": quantized})
    not_tensors = write_zip_checkpoint(tmp_path / "config.pth", {"epoch": 3, "lr": 1})

    with pytest.raises(ValueError, match=r"refers to os\.getpid"):
        read_torch_checkpoint(code)
    with pytest.raises(ValueError, match=r"torch\.QInt8Storage"):
        read_torch_checkpoint(quantized_path)
    with pytest.raises(ValueError, match=r"not a state dict of tensors"):
        read_torch_checkpoint(not_tensors)


def test_is_torch_checkpoint(tmp_path, fixture_dir):
    renamed_zip = shutil.copy(fixture_dir / ZIP_FILE, tmp_path / "weights_zip")
    renamed_legacy = shutil.copy(fixture_dir / LEGACY_FILE, tmp_path / "weights_legacy")
    keras_archive = tmp_path / "model.keras"
    with zipfile.ZipFile(keras_archive, "w") as archive:
        archive.writestr("config.json", "{}")
    text = tmp_path / "notes.txt"
    text.write_text("hello")

    assert is_torch_checkpoint("u2net.pth")  # by name, even before it is downloaded
    assert is_torch_checkpoint(tmp_path / "u2netp.pt")
    assert is_torch_checkpoint(renamed_zip) and is_torch_checkpoint(renamed_legacy)
    assert not is_torch_checkpoint(keras_archive)
    assert not is_torch_checkpoint(text)
    assert not is_torch_checkpoint("model.weights.h5")
    assert not is_torch_checkpoint(None)


# --------------------------------------------------------------------------- loading


def test_reproduces_official_outputs_fixed_size(fixture_dir):
    model = u2netp(input_shape=(161, 225, 3), normalization=None)
    load_official_weights(model, fixture_dir / ZIP_FILE)
    _assert_reproduces_official_outputs(model, fixture_dir)


@pytest.mark.parametrize("name", [ZIP_FILE, LEGACY_FILE])
def test_reproduces_official_outputs_free_size(fixture_dir, free_size_u2netp, name):
    load_official_weights(free_size_u2netp, os.fspath(fixture_dir / name))
    _assert_reproduces_official_outputs(free_size_u2netp, fixture_dir)


def test_conv_and_batch_norm_layout(official_state, free_size_u2netp):
    load_official_weights(free_size_u2netp, official_state)
    unit = free_size_u2netp.get_layer("stage3d").decoder_units[-1]  # conv1d
    kernel = official_state["stage3d.rebnconv1d.conv_s1.weight"]  # (out, in, kh, kw)

    np.testing.assert_array_equal(unit.conv.kernel.numpy(), kernel.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(
        unit.bn.moving_variance.numpy(), official_state["stage3d.rebnconv1d.bn_s1.running_var"]
    )
    np.testing.assert_array_equal(
        free_size_u2netp.get_layer("fuse_conv").kernel.numpy()[0, 0, :, 0],
        official_state["outconv.weight"][0, :, 0, 0],
    )


def test_u2netp_checkpoint_into_u2net_names_keys_and_changes_nothing(fixture_dir):
    model = u2net(input_shape=(None, None, 3), normalization=None)
    before = model.get_layer("stage1").input_unit.conv.kernel.numpy()

    with pytest.raises(ValueError) as error:
        load_official_weights(model, fixture_dir / ZIP_FILE)

    message = str(error.value)
    assert "The checkpoint is U²-NetP (u2netp.pth) but the model is U²-Net" in message
    assert "stage1.rebnconv1.conv_s1.weight: checkpoint (16, 64, 3, 3), model (32, 64, 3, 3)" in (
        message
    )
    # stage1.rebnconvin fits both; nothing is assigned when something does not fit.
    np.testing.assert_array_equal(model.get_layer("stage1").input_unit.conv.kernel.numpy(), before)


def test_missing_and_unexpected_keys(official_state, free_size_u2netp):
    state = dict(official_state)
    del state["stage2.rebnconv3d.bn_s1.running_mean"]
    state["refconv.weight"] = np.zeros((1, 1, 3, 3), np.float32)

    with pytest.raises(ValueError) as error:
        load_official_weights(free_size_u2netp, state)

    message = str(error.value)
    assert "Keys the model does not have: refconv.weight" in message
    assert "missing from the checkpoint: stage2.rebnconv3d.bn_s1.running_mean" in message


def test_multiclass_head_loads_the_body_and_keeps_the_new_head(official_state):
    model = u2netp(num_classes=2, head="multiclass", input_shape=(None, None, 3))
    head_before = model.get_layer("side1_conv").kernel.numpy()

    with pytest.warns(UserWarning, match=r"loaded the body of 'u2netp' only"):
        load_official_weights(model, official_state)

    np.testing.assert_array_equal(
        model.get_layer("stage6").input_unit.bn.gamma.numpy(),
        official_state["stage6.rebnconvin.bn_s1.weight"],
    )
    np.testing.assert_array_equal(model.get_layer("side1_conv").kernel.numpy(), head_before)
    with pytest.raises(ValueError, match=r"side1\.weight: checkpoint \(1, 64, 3, 3\)"):
        load_official_weights(model, official_state, load_head=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_official_weights(model, official_state, load_head=False)


def test_state_dict_argument_accepts_data_parallel_keys(official_state, free_size_u2netp):
    prefixed = {f"module.{key}": value for key, value in official_state.items()}
    load_official_weights(free_size_u2netp, prefixed)
    np.testing.assert_array_equal(
        free_size_u2netp.get_layer("side6_conv").bias.numpy(), official_state["side6.bias"]
    )


def test_synthetic_writer_round_trip(tmp_path):
    # Guards the hand-written pickles above: a round trip through the reader.
    state = {"a.weight": np.arange(6, dtype=np.float16).reshape(2, 3), "b": np.float64([1.5])}
    path = write_zip_checkpoint(tmp_path / "small.pth", state)
    assert path.read_bytes()[:4] == b"PK\x03\x04"
    read = read_torch_checkpoint(path)
    assert list(read) == ["a.weight", "b"]
    np.testing.assert_array_equal(read["a.weight"], state["a.weight"])
    assert read["a.weight"].dtype == np.float16 and read["b"].dtype == np.float64


def test_constructor_loads_the_checkpoint_with_the_official_preprocessing(fixture_dir):
    """u2netp(weights="….pth") picks normalization="u2net_official": on a 0..255 image it
    gives what the bare network gives on the official test script's preprocessed input."""
    from seglab.models import preprocessing_of, u2netp

    model = u2netp(input_shape=(None, None, 3), weights=str(fixture_dir / ZIP_FILE))
    assert preprocessing_of(model).mode == "u2net_official"
    bare = u2netp(
        input_shape=(None, None, 3), weights=str(fixture_dir / ZIP_FILE), normalization=None
    )
    image = np.random.default_rng(0).integers(0, 200, (1, 48, 64, 3)).astype("float32")
    official = (image / image.max() - np.array([0.485, 0.456, 0.406])) / np.array(
        [0.229, 0.224, 0.225]
    )
    np.testing.assert_allclose(
        model.predict_on_batch(image)[0],
        bare.predict_on_batch(official.astype("float32"))[0],
        atol=1e-5,
    )
