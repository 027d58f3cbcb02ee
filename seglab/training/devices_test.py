"""setup_device and the TF_CONFIG check of seglab.training.devices."""

import keras
import pytest

from seglab import training


def test_setup_device_on_a_cpu_uses_float32_and_no_xla():
    device = training.setup_device()
    if device.gpus:
        pytest.skip("this machine has a GPU")
    assert keras.mixed_precision.global_policy().name == "float32"
    assert device.mixed_precision is False and device.strategy is None
    if keras.backend.backend() == "tensorflow":
        assert device.jit_compile is False
    assert "no GPU" in device.description


def test_tf_config_with_several_workers_selects_multi_worker_training(monkeypatch):
    from seglab.training import TrainingError
    from seglab.training.devices import _multi_worker_cluster

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert not _multi_worker_cluster()
    two = '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}'
    monkeypatch.setenv("TF_CONFIG", two)
    assert _multi_worker_cluster()
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}}')
    assert not _multi_worker_cluster()
    monkeypatch.setenv("TF_CONFIG", "not json")
    with pytest.raises(TrainingError, match="TF_CONFIG"):
        _multi_worker_cluster()
