"""U²-Net and U²-NetP speed on one GPU under Keras' JAX backend: train images/s, inference FPS.

    KERAS_BACKEND=jax python benchmarks/gpu_u2net.py --out u2net_jax.json
    KERAS_BACKEND=jax python benchmarks/gpu_u2net.py --cpu-smoke --block-tensorflow --out /tmp/x.json

The models are seglab's (``seglab.models.u2net``: salient head, random weights, float32 0..255
input) and the loss is the recipes' deep supervision (``seglab.losses.u2net.u2net_loss``:
binary cross-entropy on the fused map and the six side maps, summed), with the paper's Adam
(lr 1e-3, eps 1e-8) and batch 12 at 320x320.

Measured, most wanted first (``--budget-s`` skips what would start after that many seconds):
for each training policy, the inference of both models, then their training; then the
inference-only policies.

- train images/s over one batch already on the device (no input pipeline):
  ``train_on_batch`` step by step (each step waits for its losses, as the recipes' benchmark
  does); with ``--fit`` also ``fit`` over the same batch repeated (steps queue up; ``fit``
  returns once the last step's losses are read), which traces and compiles the step again
  (its batches reach the step in another structure: on a CPU the first ``fit`` took longer
  than the first step). The first step (tracing and XLA compilation, ``compile_s``) and the
  warm-up steps are left out.
- inference FPS at batch 1: a jitted ``stateless_call`` returning the fused map, waited for
  (``block_until_ready``) after every image, as a per-image loop does; with
  ``--predict-on-batch`` also the Keras path (the seven maps copied back to the host). The
  paper quotes 30 FPS (U²-Net) and 40 FPS (U²-NetP) at 320x320 on a GTX 1080 Ti.

Policies: ``mixed_float16`` (with loss scaling, which Keras adds for it), ``mixed_bfloat16``,
and ``float32`` (inference only by default). The results go to ``--out`` as JSON, rewritten
after every configuration, so a run stopped by a timeout keeps what it finished.

Needs no TensorFlow: ``--block-tensorflow`` makes any import of it fail, to prove that.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Qin et al., 'U^2-Net: Going deeper with nested U-structure for salient object detection',
# Pattern Recognition 106 (2020): 320x320 on a GTX 1080 Ti; model sizes in MB (float32).
PAPER = {
    "u2net": {"fps_1080ti": 30.0, "params_m": 44.0, "size_mb": 176.3},
    "u2netp": {"fps_1080ti": 40.0, "params_m": 1.13, "size_mb": 4.7},
}
MODELS = ("u2net", "u2netp")
POLICIES = ("mixed_float16", "mixed_bfloat16", "float32")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument(
        "--train-policies",
        default="mixed_float16,mixed_bfloat16",
        help="policies to measure training (and inference) under; comma-separated",
    )
    parser.add_argument(
        "--infer-policies",
        default="float32",
        help="further policies to measure inference only under; comma-separated, may be empty",
    )
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=12, help="train batch (the paper's 12)")
    parser.add_argument("--train-warmup", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--infer-warmup", type=int, default=20)
    parser.add_argument("--infer-steps", type=int, default=100)
    parser.add_argument(
        "--fit",
        action="store_true",
        help="also time fit() over the batch repeated (it compiles the train step a second time)",
    )
    parser.add_argument(
        "--predict-on-batch",
        action="store_true",
        help="also time predict_on_batch at batch 1 (one more forward compilation per run)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start no new configuration after this many seconds (the rest is marked skipped)",
    )
    parser.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="tiny sizes and step counts, to check the script on a CPU",
    )
    parser.add_argument(
        "--block-tensorflow",
        action="store_true",
        help="make 'import tensorflow' fail (the benchmark must not need it)",
    )
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        args.size, args.batch = 64, 2
        args.train_warmup, args.train_steps = 1, 2
        args.infer_warmup, args.infer_steps = 1, 3
    for name in _split(args.models):
        if name not in MODELS:
            parser.error(f"--models: unknown model {name!r}; choose from {MODELS}")
    for policy in _split(args.train_policies) + _split(args.infer_policies):
        if policy not in POLICIES:
            parser.error(f"unknown policy {policy!r}; choose from {POLICIES}")
    return args


def _split(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def _nvidia_smi():
    try:
        return subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _timed(function, steps):
    """Seconds of each of ``steps`` calls of ``function`` (which must wait for its result)."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def _summary(times, images_per_call):
    total = sum(times)
    return {
        "calls": len(times),
        "images_per_s": images_per_call * len(times) / total,
        "median_ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "max_ms": 1000 * max(times),
    }


def _build(name, policy, args):
    import keras
    import numpy as np

    from seglab.models.u2net import u2net, u2netp

    keras.utils.clear_session(free_memory=True)
    keras.mixed_precision.set_global_policy(policy)
    build = {"u2net": u2net, "u2netp": u2netp}[name]
    model = build(num_classes=1, input_shape=(args.size, args.size, 3), head="salient")
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    record = {
        "params_total": int(model.count_params()),
        "params_trainable": trainable,
        "size_mb_float32": 4 * trainable / 1e6,
        "paper": PAPER[name],
    }
    return model, record


def measure_train(name, policy, args):
    """Train images/s of ``train_on_batch`` and ``fit`` over one batch kept on the device."""
    import jax
    import keras
    import numpy as np

    from seglab.losses.u2net import u2net_loss

    model, record = _build(name, policy, args)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-8),
        **u2net_loss("salient"),
    )
    rng = np.random.default_rng(0)
    shape = (args.batch, args.size, args.size)
    images = jax.device_put(rng.uniform(0, 255, (*shape, 3)).astype("float32"))
    mask = jax.device_put((rng.uniform(0, 1, (*shape, 1)) > 0.5).astype("float32"))
    targets = [mask] * 7

    def step():
        return model.train_on_batch(images, targets)

    start = time.perf_counter()
    first_loss = step()
    record["compile_s"] = time.perf_counter() - start
    _timed(step, args.train_warmup)
    times = _timed(step, args.train_steps)
    record["train_on_batch"] = {"batch": args.batch, **_summary(times, args.batch)}
    last_loss = step()
    record["loss_first_last"] = [float(np.ravel(first_loss)[0]), float(np.ravel(last_loss)[0])]

    if args.fit:

        def batches():
            while True:
                yield images, targets

        # The first fit() builds its iterator and callbacks (and traces again if its batches
        # reach the step in another structure): its time is reported, not counted.
        start = time.perf_counter()
        model.fit(batches(), steps_per_epoch=max(args.train_warmup, 1), epochs=1, verbose=0)
        warmup_s = time.perf_counter() - start
        start = time.perf_counter()
        model.fit(batches(), steps_per_epoch=args.train_steps, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
        record["fit"] = {
            "batch": args.batch,
            "steps": args.train_steps,
            "images_per_s": args.batch * args.train_steps / seconds,
            "mean_step_ms": 1000 * seconds / args.train_steps,
            "first_fit_s": warmup_s,
        }
    return record


def measure_inference(name, policy, args):
    """Batch-1 FPS of a jitted forward pass (and of ``predict_on_batch`` if asked)."""
    import jax
    import numpy as np

    model, record = _build(name, policy, args)
    rng = np.random.default_rng(1)
    image = jax.device_put(rng.uniform(0, 255, (1, args.size, args.size, 3)).astype("float32"))
    trainable_values = [v.value for v in model.trainable_variables]
    non_trainable_values = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def fused_map(trainable_values, non_trainable_values, batch):
        outputs, _ = model.stateless_call(
            trainable_values, non_trainable_values, batch, training=False
        )
        return outputs[0]

    def jitted():
        return fused_map(trainable_values, non_trainable_values, image).block_until_ready()

    start = time.perf_counter()
    jitted()
    record["compile_s"] = time.perf_counter() - start
    _timed(jitted, args.infer_warmup)
    record["jit_forward"] = _summary(_timed(jitted, args.infer_steps), 1)
    record["jit_forward"]["vs_paper_fps"] = (
        record["jit_forward"]["images_per_s"] / PAPER[name]["fps_1080ti"]
    )

    if args.predict_on_batch:

        def predict():
            return model.predict_on_batch(image)

        start = time.perf_counter()
        predict()
        record["predict_compile_s"] = time.perf_counter() - start
        _timed(predict, args.infer_warmup)
        record["predict_on_batch"] = _summary(_timed(predict, args.infer_steps), 1)
    return record


def main(argv=None):
    args = parse_args(argv)
    if args.block_tensorflow:
        sys.modules["tensorflow"] = None  # any 'import tensorflow' now raises ImportError
    backend = os.environ.setdefault("KERAS_BACKEND", "jax")
    if backend != "jax":
        raise SystemExit(f"this benchmark is for KERAS_BACKEND=jax, got {backend!r}")
    sys.path.insert(0, str(REPO))
    started = time.perf_counter()

    import jax
    import keras

    devices = jax.devices()
    result = {
        "benchmark": "benchmarks/gpu_u2net.py",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "nvidia_smi": _nvidia_smi(),
            "jax_devices": [f"{d.platform}:{d.device_kind}" for d in devices],
            "python": platform.python_version(),
            "jax": jax.__version__,
            "keras": keras.__version__,
            "keras_backend": keras.backend.backend(),
            "cpu_count": os.cpu_count(),
        },
        "settings": {
            "size": args.size,
            "train_batch": args.batch,
            "train_warmup": args.train_warmup,
            "train_steps": args.train_steps,
            "infer_warmup": args.infer_warmup,
            "infer_steps": args.infer_steps,
            "optimizer": "Adam(lr=1e-3, epsilon=1e-8)",
            "loss": "u2net_loss('salient'): BCE on fused + 6 sides, weights 1",
        },
        "runs": [],
    }
    print(json.dumps(result["machine"]), flush=True)

    # Most wanted first (the budget skips the tail): float16 inference and training, then the
    # other policies.
    models = _split(args.models)
    train_policies = _split(args.train_policies)
    plan = []
    for policy in train_policies:
        plan += [(policy, name, "inference") for name in models]
        plan += [(policy, name, "train") for name in models]
    plan += [
        (policy, name, "inference")
        for policy in _split(args.infer_policies)
        if policy not in train_policies
        for name in models
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for policy, name, kind in plan:
        record = {"model": name, "policy": policy, "kind": kind}
        elapsed = time.perf_counter() - started
        if args.budget_s is not None and elapsed > args.budget_s:
            record["skipped"] = f"budget spent ({elapsed:.0f} s)"
        else:
            measure = measure_train if kind == "train" else measure_inference
            try:
                record.update(measure(name, policy, args))
            except Exception as error:  # noqa: BLE001 - report it and go on with the next one
                record["error"] = f"{type(error).__name__}: {error}"
        record["elapsed_s"] = time.perf_counter() - started
        result["runs"].append(record)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(record), flush=True)
    result["tensorflow_imported"] = sys.modules.get("tensorflow") is not None
    out.write_text(json.dumps(result, indent=1) + "\n")
    return 1 if any("error" in r for r in result["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
