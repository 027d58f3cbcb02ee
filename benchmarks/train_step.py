"""Training speed of every recipe: train-step and input-pipeline images/s, peak memory.

    python benchmarks/train_step.py                       # all recipes, smoke and full size
    python benchmarks/train_step.py --recipes unet-pets --sizes full --steps 5

Each (recipe, size) runs in its own process, so the peak resident memory
(``resource.getrusage``) is that configuration's. Prints markdown rows for BENCHMARKS.md with
the machine and the command. On a CPU the full size runs at batch 1 (``--full-batch``);
with a GPU the recipe's own batch size is used.

- train images/s: ``train_on_batch`` on one in-memory batch after ``--warmup`` steps (the
  first traces and compiles), so it measures the model, loss and optimizer only;
- pipeline images/s: ``make_dataset`` with the recipe's settings (decode, resize, augment,
  normalise; no cache) over a synthetic set on disk of 256 px images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def measure(
    name: str, size: str, steps: int, warmup: int, full_batch: int | None, pipeline_images: int
) -> dict:
    import numpy as np

    from seglab import recipes, training

    device = training.setup_device()
    recipe = recipes.get(name, smoke=(size == "smoke"))
    if size == "full":
        batch_size = full_batch or (recipe.batch_size if device.gpus else 1)
        recipe = recipe.replace(batch_size=batch_size)
    # Graph mode also for the smoke sizes (whose recipes train eagerly): the step is measured.
    model = recipe.compile(
        recipe.build_model(encoder_weights=None), jit_compile=device.jit_compile, run_eagerly=False
    )

    rng = np.random.default_rng(0)
    shape = (recipe.batch_size, recipe.image_size, recipe.image_size)
    images = rng.uniform(0, 1, (*shape, 3)).astype("float32")
    if recipe.task == "salient":
        masks = rng.uniform(0, 1, (*shape, 1)).astype("float32")
    else:
        masks = rng.integers(0, recipe.num_classes, (*shape, 1)).astype("int32")
    targets = tuple([masks] * recipe.num_outputs) if recipe.num_outputs > 1 else masks

    for _ in range(warmup):
        model.train_on_batch(images, targets)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, targets)
    step_seconds = (time.perf_counter() - start) / steps

    pipeline = _pipeline_images_per_second(recipe, pipeline_images)
    return {
        "recipe": name,
        "size": size,
        "image_size": recipe.image_size,
        "batch_size": recipe.batch_size,
        "parameters": model.count_params(),
        "step_ms": step_seconds * 1000,
        "train_images_per_s": recipe.batch_size / step_seconds,
        "pipeline_images_per_s": pipeline,
        "peak_rss_mib": _peak_rss_mib(),
        "device": device.description,
    }


def _pipeline_images_per_second(recipe, min_images: int) -> float:
    """Images/s out of ``make_dataset`` (no cache, so every epoch decodes again) over at least
    ``min_images`` images, after the first batch; enough batches that the prefetch buffer
    filled before the clock starts does not count for much."""
    from seglab.data.synthetic import make_synthetic_multiclass, make_synthetic_salient

    batches = max(2, -(-min_images // recipe.batch_size))
    with tempfile.TemporaryDirectory() as root:
        if recipe.task == "salient":
            source = make_synthetic_salient(root, count=64, size=256, seed=0)
        else:
            source = make_synthetic_multiclass(
                root, count=64, size=256, num_classes=recipe.num_classes, seed=0, val_fraction=0.1
            )[0]
        dataset, _ = recipe.replace(cache=False).make_datasets(source, source, seed=0)
        iterator = iter(dataset.repeat())
        next(iterator)  # the first batch builds the pipeline
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        return batches * recipe.batch_size / (time.perf_counter() - start)


def main(argv=None) -> int:
    from seglab.recipes import names

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=names(), metavar="RECIPE")
    parser.add_argument("--sizes", nargs="+", default=["smoke", "full"], choices=["smoke", "full"])
    parser.add_argument("--steps", type=int, default=3, help="timed steps (default 3)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--full-batch", type=int, help="batch size at full size (CPU default 1)")
    parser.add_argument(
        "--pipeline-images", type=int, default=256, help="images timed through make_dataset"
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        # Child process: one configuration, one JSON line.
        result = measure(
            args.recipes[0],
            args.sizes[0],
            args.steps,
            args.warmup,
            args.full_batch,
            args.pipeline_images,
        )
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    command = "python benchmarks/train_step.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    rows = []
    for name in args.recipes:
        for size in args.sizes:
            child = [
                sys.executable,
                __file__,
                "--one",
                "--recipes",
                name,
                "--sizes",
                size,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--pipeline-images",
                str(args.pipeline_images),
            ]
            if args.full_batch:
                child += ["--full-batch", str(args.full_batch)]
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
            done = subprocess.run(child, capture_output=True, text=True, env=env)
            line = next(
                (out for out in done.stdout.splitlines() if out.startswith("RESULT ")), None
            )
            if line is None:
                print(f"{name} {size}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(line[len("RESULT ") :]))
            print(f"{name} {size}: done", file=sys.stderr, flush=True)

    if not rows:
        return 1
    print(f"Machine: {rows[0]['device']}; Python {platform.python_version()}")
    print(f"Command: `{command.strip()}`")
    print()
    print(
        "| recipe | size | image px | batch | parameters | step ms | train images/s | pipeline images/s | peak RSS MiB |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['recipe']} | {r['size']} | {r['image_size']} | {r['batch_size']} | "
            f"{r['parameters'] / 1e6:.2f} M | {r['step_ms']:.0f} | {r['train_images_per_s']:.2f} | "
            f"{r['pipeline_images_per_s']:.1f} | {r['peak_rss_mib']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
