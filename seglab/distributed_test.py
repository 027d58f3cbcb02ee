"""Cluster settings, batch sharding and the refused TF_CONFIG route of seglab.distributed.

The runs with real processes and devices are in tests/test_distributed.py."""

import json

import numpy as np
import pytest
import tensorflow as tf

from seglab import cli, distributed, training
from seglab.training import devices

CLUSTER_ENV = (
    "SEGLAB_COORDINATOR",
    "SEGLAB_NUM_PROCESSES",
    "SEGLAB_PROCESS_ID",
    "SEGLAB_COORDINATOR_PORT",
    "SLURM_PROCID",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_STEP_NODELIST",
    "SLURM_JOB_NODELIST",
    "SLURM_JOB_ID",
    "TF_CONFIG",
)


@pytest.fixture(autouse=True)
def no_cluster_environment(monkeypatch):
    for name in CLUSTER_ENV:
        monkeypatch.delenv(name, raising=False)


def test_no_settings_is_a_single_process():
    assert distributed.cluster_from(environ={}) is None
    assert distributed.cluster_from(num_processes=1, environ={}) is None


def test_cluster_from_arguments():
    cluster = distributed.cluster_from("node01:2345", 4, 3, environ={})
    assert cluster == distributed.Cluster("node01:2345", 4, 3, "arguments")
    assert not cluster.is_chief
    assert distributed.cluster_from("node01:2345", 4, 0, environ={}).is_chief


def test_arguments_override_the_environment():
    environ = {
        "SEGLAB_COORDINATOR": "envhost:1",
        "SEGLAB_NUM_PROCESSES": "2",
        "SEGLAB_PROCESS_ID": "1",
    }
    from_env = distributed.cluster_from(environ=environ)
    assert (from_env.coordinator, from_env.num_processes, from_env.process_id) == (
        "envhost:1",
        2,
        1,
    )
    assert from_env.source == "SEGLAB_* environment"
    mixed = distributed.cluster_from(process_id=0, environ=environ)
    assert mixed.process_id == 0 and mixed.coordinator == "envhost:1"


def test_slurm_job_step():
    environ = {
        "SLURM_PROCID": "2",
        "SLURM_STEP_NUM_TASKS": "4",
        "SLURM_STEP_NODELIST": "gpu[07-08,11],cpu3",
        "SLURM_JOB_NODELIST": "ignored[1-9]",
        "SLURM_JOB_ID": "123456",
    }
    cluster = distributed.cluster_from(environ=environ)
    assert cluster.process_id == 2 and cluster.num_processes == 4
    assert cluster.coordinator == f"gpu07:{20000 + 123456 % 20000}"
    assert cluster.source == "Slurm environment"
    environ["SEGLAB_COORDINATOR_PORT"] = "4321"
    assert distributed.cluster_from(environ=environ).coordinator == "gpu07:4321"
    # A batch script's own shell (no srun job step) is not one of several tasks.
    assert distributed.cluster_from(environ={"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}) is None


@pytest.mark.parametrize(
    "nodelist, host",
    [
        ("node1", "node1"),
        ("gpu[03-05,09],cpu1", "gpu03"),
        ("rack[1-2]-n[07,9]", "rack1-n07"),
        ("a[10],b[1-3]", "a10"),
    ],
)
def test_first_slurm_host(nodelist, host):
    assert distributed.first_slurm_host(nodelist) == host


def test_incomplete_or_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"missing: --num-processes N .*--process-id I"):
        distributed.cluster_from(coordinator="h:1", environ={})
    with pytest.raises(ValueError, match=r"missing: --coordinator HOST:PORT"):
        distributed.cluster_from(num_processes=2, process_id=0, environ={})
    with pytest.raises(ValueError, match=r"process id 2 is not in 0..1"):
        distributed.cluster_from("h:1", 2, 2, environ={})
    with pytest.raises(ValueError, match=r"'h' .* is not HOST:PORT"):
        distributed.cluster_from("h", 2, 0, environ={})
    with pytest.raises(ValueError, match="SEGLAB_NUM_PROCESSES must be a whole number"):
        distributed.cluster_from(environ={"SEGLAB_NUM_PROCESSES": "two"})


def _ids(dataset):
    return [batch[0].numpy()[:, 0].tolist() for batch in dataset]


def test_shard_batches_splits_every_global_batch():
    # 10 examples whose value is their id, global batch 4: two full batches and one of 2.
    ids = np.arange(10, dtype="float32")[:, None]
    dataset = tf.data.Dataset.from_tensor_slices((ids, ids)).batch(4)
    shards = [
        distributed.shard_batches(
            dataset, global_batch_size=4, num_processes=2, process_id=index, num_examples=10
        )
        for index in (0, 1)
    ]
    assert _ids(shards[0]) == [[0, 1], [4, 5]]
    assert _ids(shards[1]) == [[2, 3], [6, 7]]
    # The partial batch is dropped on every process alike; Keras knows the epoch's length.
    assert [int(shard.cardinality()) for shard in shards] == [2, 2]
    with pytest.raises(ValueError, match="batch size 4 does not split evenly over 3 processes"):
        distributed.shard_batches(dataset, global_batch_size=4, num_processes=3, process_id=0)


def test_validation_batches_that_do_not_split_over_devices_are_skipped():
    ids = np.arange(5, dtype="float32")[:, None]
    dataset = tf.data.Dataset.from_tensor_slices((ids, ids)).batch(2)
    assert _ids(distributed.whole_batches_per_device(dataset, 2)) == [[0, 1], [2, 3]]
    assert len(_ids(distributed.whole_batches_per_device(dataset, 1))) == 3


def test_settings_fingerprint_fits_int32_and_tells_settings_apart():
    first = distributed.settings_fingerprint({"seed": 0, "epochs": 2})
    assert first == distributed.settings_fingerprint({"epochs": 2, "seed": 0})
    assert first != distributed.settings_fingerprint({"seed": 1, "epochs": 2})
    assert 0 <= first < 2**31


TWO_WORKERS = json.dumps(
    {
        "cluster": {"worker": ["127.0.0.1:23466", "127.0.0.1:23467"]},
        "task": {"type": "worker", "index": 0},
    }
)


def test_tf_config_with_several_workers_is_refused_with_the_working_route(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", TWO_WORKERS)
    with pytest.raises(training.TrainingError) as raised:
        training.setup_device()
    message = str(raised.value)
    assert "TF_CONFIG names 2 workers" in message
    assert "keras-team/keras#20585" in message and "tensorflow/tensorflow#72388" in message
    assert "KERAS_BACKEND=jax" in message and "--coordinator HOST:PORT" in message
    # One worker is no cluster: training goes on.
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}}')
    assert training.setup_device().strategy is None


def test_seglab_train_with_tf_config_says_why_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TF_CONFIG", TWO_WORKERS)
    status = cli.main(
        ["train", "u2netp-sludge", "--smoke", "--synthetic", "--out", str(tmp_path / "run")]
    )
    error = capsys.readouterr().err
    assert status == cli.EXIT_ERROR
    lines = [line for line in error.splitlines() if line.startswith("seglab: error:")]
    assert len(lines) == 1 and lines[0].startswith("seglab: error: TF_CONFIG names 2 workers")
    assert "Traceback" not in error and "tf.Tensor" not in error


def test_several_processes_need_the_jax_backend():
    cluster = distributed.Cluster("127.0.0.1:1", 2, 1)
    with pytest.raises(training.TrainingError, match="needs the JAX backend.*KERAS_BACKEND=jax"):
        training.setup_device(cluster=cluster)


def test_cli_reports_incomplete_cluster_flags(tmp_path, capsys):
    status = cli.main(
        ["train", "u2netp-sludge", "--synthetic", "--coordinator", "127.0.0.1:9", "--out", "x"]
    )
    assert status == cli.EXIT_ERROR
    assert "missing: --num-processes N" in capsys.readouterr().err


def test_several_gpus_choose_mirrored_strategy(monkeypatch):
    monkeypatch.setattr(devices, "gpu_names", lambda backend=None: ["GPU A", "GPU B"])
    device = training.setup_device(mixed_precision=False, jit_compile=False)
    try:
        assert isinstance(device.strategy, tf.distribute.MirroredStrategy)
        assert device.to_dict()["strategy"] == "MirroredStrategy"
    finally:
        import keras

        keras.mixed_precision.set_global_policy("float32")
    # strategy=None keeps one device whatever the machine has.
    assert training.setup_device(mixed_precision=False, strategy=None).strategy is None
