"""Training on several devices and processes, with real processes.

- Two JAX processes on 127.0.0.1 (CPU, gloo collectives) train together through
  ``seglab train --coordinator ... --num-processes 2 --process-id I``: they read different
  halves of every global batch, hold the same weights after every step, and process 0's saved
  model equals what one process computes on the same global batches. A killed pair resumes
  from process 0's backup.
- TensorFlow ``MirroredStrategy`` over two logical CPU devices: a smoke recipe's model trains
  with the batch split between the replicas, resumes, evaluates and saves.

The quick tests use the u2netp-sludge smoke recipe with a small network in place of U^2-NetP
(same data, augmentation, loss, metrics and optimizer): compiling U^2-NetP's training step
takes minutes on 2 cores, and every process compiles it. The tests marked slow run the
recipe itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from seglab import training

pytest.importorskip("jax")

REPO_ROOT = Path(__file__).resolve().parent.parent

# The u2netp-sludge smoke recipe with a small network (batch norm included, so that the
# equality with one process also covers batch statistics over the global batch).
SMALL_RECIPE = textwrap.dedent(
    """
    from seglab.recipes import catalogue
    from seglab.testing.models import small_segmentation_net as small_net

    catalogue.RECIPES["small-sludge"] = catalogue.get("u2netp-sludge", smoke=True).replace(
        name="small-sludge",
        model=small_net,
        model_kwargs={},
        num_outputs=1,
        loss_weights=None,
    )
    """
)

LAUNCHER = SMALL_RECIPE + textwrap.dedent(
    """
    import sys

    from seglab import cli

    sys.exit(cli.main(sys.argv[1:]))
    """
)

# Per-process timeout: import, connect, compile and a few steps on a loaded 2-core machine.
TIMEOUT = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def jax_env(trace_dir: Path | None = None) -> dict:
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    for name in ("TF_CONFIG", "SEGLAB_COORDINATOR", "SEGLAB_NUM_PROCESSES", "SEGLAB_PROCESS_ID"):
        env.pop(name, None)
    env.pop("SEGLAB_TRACE_DIR", None)
    if trace_dir is not None:
        env["SEGLAB_TRACE_DIR"] = str(trace_dir)
    return env


# The small network at 32 px, or the recipe itself at its smoke size.
SMALL = ("small-sludge", "--image-size", "32")
U2NETP = ("u2netp-sludge", "--smoke")


def train_args(data_dir: Path, out: Path, *extra: str, epochs: int = 2, recipe=SMALL) -> list[str]:
    return [
        "train",
        *recipe,
        "--data-dir",
        str(data_dir),
        "--batch-size",
        "4",
        "--epochs",
        str(epochs),
        "--max-train-images",
        "8",
        "--max-val-images",
        "4",
        "--verbose",
        "0",
        "--out",
        str(out),
        *extra,
    ]


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, *args],
        env=env,
        cwd=REPO_ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(processes) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_all(processes, logs, timeout=TIMEOUT) -> None:
    """Wait for every process to exit 0; on failure or timeout kill them all and show logs."""
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        stop(processes)
        pytest.fail("timed out:\n" + tails(logs))
    finally:
        stop(processes)
    codes = [process.returncode for process in processes]
    assert codes == [0] * len(processes), f"exit codes {codes}:\n" + tails(logs)


def tails(logs) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)


def train_pair(data_dir, outs, trace_dir, tmp_path, tag, epochs=2, extra=(), recipe=SMALL):
    """Start the two processes of one run; returns (processes, logs)."""
    port = free_port()
    processes, logs = [], []
    for process_id in (0, 1):
        cluster = [
            "--coordinator",
            f"127.0.0.1:{port}",
            "--num-processes",
            "2",
            "--process-id",
            str(process_id),
        ]
        log = tmp_path / f"{tag}-process-{process_id}.log"
        processes.append(
            start(
                train_args(
                    data_dir, outs[process_id], *cluster, *extra, epochs=epochs, recipe=recipe
                ),
                jax_env(trace_dir),
                log,
            )
        )
        logs.append(log)
    return processes, logs


def read_trace(path: Path):
    """``(begin, steps)``: the weights digest at the start of fit, and per step
    ``(epoch, step, fingerprints of the batch this process fed, weights digest)``."""
    begin, steps, last_batch = None, [], None
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if "begin" in record:
            begin = record["begin"]
        elif "batch" in record:
            last_batch = record["batch"]
        else:
            steps.append((record["epoch"], record["step"], last_batch, record["weights"]))
    return begin, steps


def model_weights(path: Path):
    return training.load_model(path).get_weights()


def check_pair(outs, logs, trace_dir):
    """What every two-process run of 8 images, global batch 4, 2 epochs must show; returns
    the two processes' steps."""
    # Only process 0 wrote a run folder.
    assert not outs[1].exists()
    config = json.loads((outs[0] / "config.json").read_text())
    assert config["status"] == "finished"
    assert config["device"]["processes"] == 2 and config["device"]["replicas"] == 2
    assert "Done (process 1 of 2" in logs[1].read_text()
    _, steps0 = read_trace(trace_dir / "process-0.jsonl")
    _, steps1 = read_trace(trace_dir / "process-1.jsonl")
    assert [(e, s) for e, s, _, _ in steps0] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len(steps1) == 4
    for (_, _, batch0, weights0), (_, _, batch1, weights1) in zip(steps0, steps1, strict=True):
        assert len(batch0) == len(batch1) == 2
        assert not set(batch0) & set(batch1), "both processes fed the same images"
        assert weights0 == weights1, "the processes' weights differ after a step"
    # Every image of an epoch was seen once, by one of the processes.
    for epoch in (0, 1):
        seen = [f for e, _, batch, _ in steps0 + steps1 if e == epoch for f in batch]
        assert len(set(seen)) == 8
    return steps0, steps1


# 49-88 s on a 2-core machine at load 2-4, but the test: in the default run.
def test_two_processes_train_as_one(sample_data, tmp_path):
    data_dir = sample_data("microscopy_sample")
    outs = [tmp_path / "run", tmp_path / "process-1-out"]
    pair, pair_logs = train_pair(data_dir, outs, tmp_path / "trace-pair", tmp_path, "pair")
    # The same run in one process, at the same time (the machine waits on connections).
    single_log = tmp_path / "single.log"
    single = start(
        train_args(data_dir, tmp_path / "single"), jax_env(tmp_path / "trace-single"), single_log
    )
    wait_all([*pair, single], [*pair_logs, single_log])

    steps0, steps1 = check_pair(outs, pair_logs, tmp_path / "trace-pair")
    _, single_steps = read_trace(tmp_path / "trace-single" / "process-0.jsonl")
    assert len(single_steps) == 4
    for (_, _, batch0, _), (_, _, batch1, _), (_, _, whole, _) in zip(
        steps0, steps1, single_steps, strict=True
    ):
        # Together they fed the global batch that one process feeds, in order.
        assert batch0 + batch1 == whole

    distributed = model_weights(outs[0] / "model.keras")
    alone = model_weights(tmp_path / "single" / "model.keras")
    assert len(distributed) == len(alone)
    for a, b in zip(distributed, alone, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # Training and validation metrics, epoch by epoch, are those of one process.
    pair_history = training.dedupe_history(outs[0] / "history.csv")
    single_history = training.dedupe_history(tmp_path / "single" / "history.csv")
    assert [row.keys() for row in pair_history] == [row.keys() for row in single_history]
    for pair_row, single_row in zip(pair_history, single_history, strict=True):
        for key in ("loss", "mean_iou", "val_loss", "val_mean_iou"):
            assert float(pair_row[key]) == pytest.approx(float(single_row[key]), abs=1e-4), key
    metrics = json.loads((outs[0] / "metrics.json").read_text())
    assert metrics["mean_iou"] == pytest.approx(
        json.loads((tmp_path / "single" / "metrics.json").read_text())["mean_iou"], abs=1e-4
    )


@pytest.mark.slow  # two launches of a pair: 63-151 s on a 2-core machine at load 2-4
def test_two_processes_resume_from_process_0s_backup(sample_data, tmp_path):
    data_dir = sample_data("microscopy_sample")
    outs = [tmp_path / "run", tmp_path / "process-1-out"]
    epochs = 8
    first_trace = tmp_path / "trace-first"
    pair, logs = train_pair(
        data_dir, outs, first_trace, tmp_path, "first", epochs, ("--backup-every", "1")
    )
    metadata = outs[0] / "backup" / "training_metadata.json"
    deadline = time.monotonic() + TIMEOUT
    try:
        # Kill both (as a crash would) once process 0 has backed up a finished epoch.
        while time.monotonic() < deadline:
            if any(process.poll() is not None for process in pair):
                pytest.fail("a process ended before it was killed:\n" + tails(logs))
            try:
                backed_up = json.loads(metadata.read_text())["epoch"]
            except (OSError, ValueError, KeyError):
                backed_up = 0
            if backed_up >= 1:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no backup in time:\n" + tails(logs))
    finally:
        stop(pair)
    config = json.loads((outs[0] / "config.json").read_text())
    assert config["status"] == "running", "the run finished before it was killed"
    _, killed_steps = read_trace(first_trace / "process-0.jsonl")

    second_trace = tmp_path / "trace-second"
    pair, logs = train_pair(
        data_dir, outs, second_trace, tmp_path, "second", epochs, ("--backup-every", "1")
    )
    wait_all(pair, logs)
    assert "Resuming" in logs[0].read_text()
    begin0, steps0 = read_trace(second_trace / "process-0.jsonl")
    begin1, steps1 = read_trace(second_trace / "process-1.jsonl")
    # Both processes started from weights process 0 backed up during the killed run (process
    # 1 has no backup of its own), and went on from the backed-up epoch.
    assert begin0 == begin1
    assert begin0 in {weights for _, _, _, weights in killed_steps}
    assert steps0[0][0] >= backed_up and steps0[-1][0] == epochs - 1
    assert [w for *_, w in steps0] == [w for *_, w in steps1]
    config = json.loads((outs[0] / "config.json").read_text())
    assert config["status"] == "finished" and config["epochs_completed"] == epochs
    assert not outs[1].exists()


@pytest.mark.slow  # about 45 s on 2 cores
def test_a_process_that_cannot_start_stops_the_others(sample_data, tmp_path):
    """Started together: a pair whose process 1 finds no dataset, a pair started with
    different seeds, and a process 1 whose process 0 never comes."""
    data_dir = sample_data("microscopy_sample")
    empty = tmp_path / "empty"
    empty.mkdir()
    runs, processes, logs = {}, [], []
    for tag, data_dirs, extras in (
        ("no-data", (data_dir, empty), ((), ())),
        ("seeds", (data_dir, data_dir), (("--seed", "0"), ("--seed", "1"))),
    ):
        port = free_port()
        runs[tag] = []
        for process_id in (0, 1):
            log = tmp_path / f"{tag}-{process_id}.log"
            args = train_args(
                data_dirs[process_id],
                tmp_path / f"{tag}-out-{process_id}",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(process_id),
                *extras[process_id],
            )
            runs[tag].append(log)
            processes.append(start(args, jax_env(), log))
            logs.append(log)
    lone_log = tmp_path / "alone.log"
    lone_args = train_args(
        data_dir,
        tmp_path / "alone-out",
        "--coordinator",
        f"127.0.0.1:{free_port()}",
        "--num-processes",
        "2",
        "--process-id",
        "1",
    )
    processes.append(start(lone_args, {**jax_env(), "SEGLAB_INIT_TIMEOUT": "15"}, lone_log))
    logs.append(lone_log)
    deadline = time.monotonic() + TIMEOUT
    try:
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail("a process kept waiting:\n" + tails(logs))
    finally:
        stop(processes)
    assert [process.returncode for process in processes] == [1] * 5, tails(logs)

    def error(log):
        lines = [line for line in log.read_text().splitlines() if "seglab: error:" in line]
        assert len(lines) == 1, log.read_text()[-3000:]
        return lines[0]

    assert "process(es) 1 failed while reading the data" in error(runs["no-data"][0])
    assert str(empty) in error(runs["no-data"][1])
    for log in runs["seeds"]:
        assert "process(es) 1 were started with other training settings" in error(log)
    assert "could not connect to the other processes within 15 s" in error(lone_log)
    assert "nothing answers at 127.0.0.1:" in error(lone_log)
    assert not (tmp_path / "no-data-out-0" / "model.keras").exists()


@pytest.mark.slow  # about 45 s on 2 cores
def test_one_process_with_two_jax_devices_trains_as_one_device(sample_data, tmp_path):
    """Several GPUs in one machine on the JAX backend: one process, data-parallel over its
    devices (here two CPU devices made by XLA), equals one device on the same batches."""
    data_dir = sample_data("microscopy_sample")
    two_env = {
        **jax_env(tmp_path / "trace-two"),
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    logs = [tmp_path / "two.log", tmp_path / "one.log"]
    processes = [
        start(train_args(data_dir, tmp_path / "two"), two_env, logs[0]),
        start(train_args(data_dir, tmp_path / "one"), jax_env(tmp_path / "trace-one"), logs[1]),
    ]
    wait_all(processes, logs)
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["device"]["replicas"] == 2 and config["device"]["processes"] == 1
    _, two = read_trace(tmp_path / "trace-two" / "process-0.jsonl")
    _, one = read_trace(tmp_path / "trace-one" / "process-0.jsonl")
    assert [batch for _, _, batch, _ in two] == [batch for _, _, batch, _ in one]
    for a, b in zip(
        model_weights(tmp_path / "two" / "model.keras"),
        model_weights(tmp_path / "one" / "model.keras"),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_two_processes_train_the_u2netp_smoke_recipe(sample_data, tmp_path):
    """The recipe itself, through the seglab command (minutes: every process compiles
    U^2-NetP's training step)."""
    data_dir = sample_data("microscopy_sample")
    outs = [tmp_path / "run", tmp_path / "process-1-out"]
    pair, logs = train_pair(data_dir, outs, tmp_path / "trace", tmp_path, "u2netp", recipe=U2NETP)
    wait_all(pair, logs, timeout=1500)
    check_pair(outs, logs, tmp_path / "trace")
    assert json.loads((outs[0] / "config.json").read_text())["recipe"]["name"] == "u2netp-sludge"
    model_weights(outs[0] / "model.keras")


MIRRORED = SMALL_RECIPE + textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    import keras

    from seglab import recipes, training

    out, data_dir, name, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    # What each replica's training step is given (smoke recipes train eagerly: shapes and
    # devices are concrete).
    seen = []
    train_step = keras.Model.train_step

    def recording_train_step(self, data):
        images = tf.nest.flatten(data)[0]
        seen.append((int(images.shape[0]), images.device.split(":")[-1]))
        return train_step(self, data)

    keras.Model.train_step = recording_train_step


    class CtrlC(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt


    class KeepModel(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            trained.append(self.model)


    trained = []
    recipe = recipes.get(
        name, smoke=True, image_size=size, batch_size=4, epochs=2, max_train_images=8,
        max_val_images=4,
    )


    def run(folder, strategy):
        # Epoch 1, Ctrl-C at the start of epoch 2, then the same call again resumes.
        try:
            training.train(recipe, folder, data_dir=data_dir, verbose=0, strategy=strategy,
                           callbacks=[CtrlC()], log=print)
        except training.TrainingInterrupted:
            print("INTERRUPTED")
        before = len(seen)
        result = training.train(recipe, folder, data_dir=data_dir, verbose=0,
                                strategy=strategy, callbacks=[KeepModel()], log=print)
        return before, seen, result


    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    steps_before, mirrored_seen, result = run(out + "/mirrored", strategy)
    model = trained[-1]
    # Each mirrored variable holds one copy per replica; they must be equal.
    copies = [
        [np.asarray(t) for t in strategy.experimental_local_results(v.value)]
        for v in model.weights
    ]
    spread = max(float(np.max(np.abs(c[0] - c[1]))) for c in copies)
    # The saved model (which train() evaluated) computes what the trained mirrored one does.
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    loaded = training.load_model(out + "/mirrored/model.keras")
    difference = float(np.max(np.abs(
        np.asarray(loaded(images, training=False)[0])
        - np.asarray(model(images, training=False)[0])
    )))
    # Metrics under the strategy: Keras' evaluate with the mirrored model and with the saved
    # copy on one device agree on the same validation batches.
    _, val_ds = recipe.make_datasets(*recipe.load_data(data_dir), seed=0)
    mirrored_metrics = model.evaluate(val_ds, return_dict=True, verbose=0)
    plain = recipe.compile(training.load_model(out + "/mirrored/model.keras"))
    plain_metrics = plain.evaluate(val_ds, return_dict=True, verbose=0)
    metric_gap = max(abs(mirrored_metrics[k] - plain_metrics[k]) for k in plain_metrics)
    print("RESULT", json.dumps({
        "seen": mirrored_seen, "steps_before": steps_before, "metric_gap": metric_gap,
        "metric_names": sorted(plain_metrics),
        "resumed_from": result.resumed_from_epoch, "spread": spread,
        "copies": sorted({len(c) for c in copies}), "difference": difference,
        "metrics": result.metrics,
        "replicas": strategy.num_replicas_in_sync,
    }))
    """
)


@pytest.mark.parametrize(
    "recipe, size",
    [("small-sludge", 32), pytest.param("u2netp-sludge", 64, marks=pytest.mark.slow)],
)
def test_mirrored_strategy_on_two_logical_cpus(sample_data, tmp_path, recipe, size):
    data_dir = sample_data("microscopy_sample")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    completed = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(tmp_path / "run"), str(data_dir), recipe, str(size)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT if recipe == "small-sludge" else 1500,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-5000:]
    assert "INTERRUPTED" in output
    result = json.loads(output.split("RESULT ", 1)[1].splitlines()[0])
    assert result["replicas"] == 2
    # Epoch 1 (2 steps), Ctrl-C at epoch 2, resumed from the backup: 2 more steps. In each
    # step both replicas took half of the global batch of 4.
    assert result["resumed_from"] == 1
    seen = [tuple(item) for item in result["seen"]]
    assert len(seen) == 8 and result["steps_before"] == 4
    for step in range(4):
        assert sorted(seen[2 * step : 2 * step + 2]) == [(2, "0"), (2, "1")]
    # The replicas' copies of every variable are equal, batch-norm statistics included.
    assert result["copies"] == [2] and result["spread"] == 0.0
    assert result["difference"] < 1e-5
    assert any(name.endswith("mean_iou") for name in result["metric_names"])
    assert result["metric_gap"] < 1e-5
    assert 0.0 <= result["metrics"]["mean_iou"] <= 1.0
    config = json.loads((tmp_path / "run" / "mirrored" / "config.json").read_text())
    assert config["status"] == "finished" and config["device"]["replicas"] == 2
    assert config["device"]["strategy"] == "MirroredStrategy"
