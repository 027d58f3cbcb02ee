"""Train a recipe as ``seglab train`` does and time ``model.fit``: wall seconds and the CPU
seconds of this process (on a shared machine the CPU seconds of a run pinned to one core,
``taskset -c 0``, say what it costs better than the wall clock). Prints one JSON line.

    taskset -c 0 python benchmarks/timed_training.py unet-pets --variant cpu --seed 0 \\
        --data-dir ../shared/data/oxford_pets_sample --out runs/unet-pets-cpu-seed0

``--set '{"image_size": 128, "epochs": 12}'`` overrides recipe settings (the tuning runs).
"""

import argparse
import json
import os
import time
from pathlib import Path

import keras

from seglab import recipes, training


class FitTimer(keras.callbacks.Callback):
    """Wall and process CPU seconds from the start to the end of ``fit`` (validation included)."""

    def on_train_begin(self, logs=None):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def on_train_end(self, logs=None):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--variant")
    parser.add_argument("--set", default="{}", help="recipe overrides as JSON")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    recipe = recipes.get(args.recipe, variant=args.variant, **json.loads(args.set))
    timer = FitTimer()
    result = training.train(
        recipe,
        args.out,
        data_dir=args.data_dir,
        seed=args.seed,
        overwrite=True,
        verbose=0,
        callbacks=[timer],
        log=lambda message: None,
    )
    print(
        json.dumps(
            {
                "recipe": args.recipe,
                "variant": args.variant,
                "set": json.loads(args.set),
                "seed": args.seed,
                "parameters": result.model.count_params(),
                "fit_cpu_s": round(timer.cpu, 1),
                "fit_wall_s": round(timer.wall, 1),
                "load_average": os.getloadavg(),
                "metrics": result.metrics,
            }
        )
    )


if __name__ == "__main__":
    main()
