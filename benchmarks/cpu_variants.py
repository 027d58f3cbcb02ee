"""The figure of a recipe's ``cpu`` variant: the same run as

    seglab train RECIPE --variant cpu --data-dir SAMPLE --seed SEED --out OUT

(``seglab.training.train`` with the same arguments), plus the time ``model.fit`` took: wall
seconds (the variants' budget: 300 s of training on 2 idle cores, tracing and per-epoch
validation included) and the CPU seconds of the process during the fit. Run it on an idle
machine; ``--threads 1`` under ``taskset -c 1`` gives one core's CPU seconds instead.

    python benchmarks/cpu_variants.py u2netp-sludge \\
        --data-dir ../shared/data/microscopy_sample --seed 0 --out runs/cpu/u2netp-s0

Writes OUT/cpu_timing.json and prints one markdown row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variant", default="cpu")
    parser.add_argument(
        "--backup-every", type=int, help="as seglab train (default: a quarter of an epoch)"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="TensorFlow threads (0: TensorFlow's default)"
    )
    parser.add_argument(
        "--max-fit-seconds",
        type=float,
        default=300.0,
        help="stop before an epoch that would end past this many wall seconds of fit (a guard: "
        "the variant's epochs should end sooner). The first epoch, which traces the training "
        "step, is not taken as the cost of the next ones",
    )
    parser.add_argument(
        "--override",
        type=json.loads,
        default={},
        help="settings on top of the variant, as JSON (e.g. '{\"epochs\": 30}'), for tuning",
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras

    if args.threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    from seglab import recipes, training

    class FitTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.wall, self.cpu = time.perf_counter(), time.process_time()
            self.epoch_cpu, self.epoch_wall = [], []

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_cpu.append(round(time.process_time() - self.cpu, 1))
            self.epoch_wall.append(round(time.perf_counter() - self.wall, 1))
            print(
                f"epoch {epoch + 1}: {self.epoch_wall[-1]} s wall, {self.epoch_cpu[-1]} CPU s, "
                f"{logs}",
                flush=True,
            )
            # Another epoch like the last would pass the limit (the first traces: not a guide).
            last = self.epoch_wall[-1] - self.epoch_wall[-2] if len(self.epoch_wall) > 1 else 0
            if self.epoch_wall[-1] + last > args.max_fit_seconds:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            self.wall = time.perf_counter() - self.wall
            self.cpu = time.process_time() - self.cpu

    recipe = recipes.get(args.recipe, variant=args.variant, **args.override)
    timer = FitTimer()
    load_before = os.getloadavg()
    result = training.train(
        recipe,
        args.out,
        data_dir=args.data_dir,
        seed=args.seed,
        overwrite=True,
        verbose=0,
        callbacks=[timer],
        backup_every=args.backup_every,
        arguments={
            "benchmark": "benchmarks/cpu_variants.py",
            **{key: str(value) for key, value in vars(args).items()},
        },
    )
    metrics = result.metrics
    figure = (
        {"mae": metrics["mae"]}
        if recipe.task == "salient"
        else {"foreground_iou": metrics["per_class_iou"][1], "mean_iou": metrics["mean_iou"]}
    )
    record = {
        "recipe": recipe.name,
        "variant": args.variant,
        "seed": args.seed,
        "command": f"seglab train {recipe.name} --variant {args.variant} --data-dir "
        f"{args.data_dir} --seed {args.seed}"
        + (f" --backup-every {args.backup_every}" if args.backup_every else ""),
        **figure,
        "fit_wall_s": round(timer.wall, 1),
        "fit_cpu_s": round(timer.cpu, 1),
        "cpu_s_at_each_epoch_end": timer.epoch_cpu,
        "wall_s_at_each_epoch_end": timer.epoch_wall,
        "epochs": len(timer.epoch_wall),
        "stopped_by_guard": len(timer.epoch_wall) < recipe.epochs,
        "threads": args.threads,
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
    }
    (args.out / "cpu_timing.json").write_text(json.dumps(record, indent=1) + "\n")
    shown = ", ".join(f"{key} {value:.3f}" for key, value in figure.items())
    print(
        f"| {recipe.name} | {args.seed} | {shown} | {timer.cpu:.0f} s CPU ({timer.wall:.0f} s wall) "
        f"| `{record['command']}` |"
    )


if __name__ == "__main__":
    main()
