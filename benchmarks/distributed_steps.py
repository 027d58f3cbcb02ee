"""Steps per second of data-parallel training with several JAX processes against one process,
at the same global batch (on one machine: the cost of the collectives).

    python benchmarks/distributed_steps.py --data-dir ../shared/data/microscopy_sample
    python benchmarks/distributed_steps.py --data-dir ... --network small --processes 2

Each run is ``seglab train RECIPE --smoke`` on the JAX backend on the CPU, started as real
processes on 127.0.0.1 (``--coordinator``, ``--num-processes``, ``--process-id``), with the
training step compiled in both cases (the smoke recipes otherwise train eagerly). Steps per
second come from the ``SEGLAB_TRACE_DIR`` records of process 0: the steps of the last epoch,
first to last, so start-up and compilation are left out (each step also hashes the weights
for the record, in both runs). Prints markdown rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Registers "<recipe>-compiled" (the smoke recipe with a compiled step; with --network small,
# a two-convolution network with batch norm instead of the recipe's) and runs the command line.
WORKER = """
import sys

from seglab import cli
from seglab.recipes import catalogue
from seglab.testing.models import small_segmentation_net

name, network = sys.argv[1], sys.argv[2]
recipe = catalogue.get(name, smoke=True).replace(name=name + "-compiled", run_eagerly=False)
if network == "small":
    recipe = recipe.replace(
        model=small_segmentation_net, model_kwargs={}, num_outputs=1, loss_weights=None
    )
catalogue.RECIPES[recipe.name] = recipe
sys.exit(cli.main(["train", recipe.name, *sys.argv[3:]]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(args, processes: int, work: Path) -> dict:
    trace = work / f"trace-{processes}"
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "SEGLAB_TRACE_DIR": str(trace),
        "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    common = [
        "--data-dir",
        str(args.data_dir),
        "--batch-size",
        str(args.batch_size),
        "--epochs",
        str(args.epochs),
        "--max-train-images",
        str(args.train_images),
        "--max-val-images",
        str(args.batch_size),
        "--verbose",
        "0",
        # No backups while timing (process 0 would write one every few steps).
        "--backup-every",
        "1000000",
    ]
    if args.image_size:
        common += ["--image-size", str(args.image_size)]
    port = free_port()
    started = time.monotonic()
    children = []
    for process_id in range(processes):
        cluster = []
        if processes > 1:
            cluster = [
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                str(processes),
                "--process-id",
                str(process_id),
            ]
        out = work / f"run-{processes}-{process_id}"
        log = (work / f"log-{processes}-{process_id}.txt").open("w")
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, args.recipe, args.network]
                + common
                + ["--out", str(out), *cluster],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    codes = [child.wait() for child in children]
    wall = time.monotonic() - started
    if any(codes):
        raise SystemExit(f"a process failed ({codes}); see the logs in {work}")
    steps = [
        json.loads(line)
        for line in (trace / "process-0.jsonl").read_text().splitlines()
        if '"step"' in line
    ]
    last_epoch = max(step["epoch"] for step in steps)
    times = [step["time"] for step in steps if step["epoch"] == last_epoch]
    if len(times) < 3:
        raise SystemExit("too few steps in the last epoch to time; raise --train-images")
    return {
        "processes": processes,
        "steps": len(times) - 1,
        "steps_per_s": (len(times) - 1) / (times[-1] - times[0]),
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--recipe", default="u2netp-sludge")
    parser.add_argument("--network", choices=("recipe", "small"), default="recipe")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8, help="global batch")
    parser.add_argument("--train-images", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, help="default: the smoke recipe's")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="seglab-distributed-"))
    rows = [run(args, count, folder) for count in (1, args.processes)]
    shutil.rmtree(folder)  # kept when a run fails, for its logs
    load = os.getloadavg()[0]
    command = " ".join(["python", "benchmarks/distributed_steps.py", *sys.argv[1:]])
    print(f"`{command}` ({platform.machine()}, {os.cpu_count()} CPU cores, load {load:.1f})")
    print("| processes | global batch | steps timed | steps/s | relative | wall time s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['processes']} | {args.batch_size} | {row['steps']} | "
            f"{row['steps_per_s']:.2f} | {row['steps_per_s'] / rows[0]['steps_per_s']:.2f} | "
            f"{row['wall_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
