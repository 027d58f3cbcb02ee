"""Eager or graph training steps for a recipe variant: the seconds of each of the first steps.

    python benchmarks/step_modes.py u2netp-sludge --variant cpu --mode eager
    python benchmarks/step_modes.py u2netp-sludge --variant cpu --mode graph
    python benchmarks/step_modes.py u2netp-sludge --variant cpu --mode graph --build-state

``model.train_on_batch`` on one random in-memory batch of the variant's size; the first graph
step includes tracing. With ``--build-state`` the optimizer's and metrics' variables are
created first (``seglab.training.build_training_state``), so that step traces once, not twice.
Prints wall and CPU seconds per step.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--variant")
    parser.add_argument("--mode", choices=["eager", "graph"], required=True)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--build-state", action="store_true")
    args = parser.parse_args()

    import numpy as np

    from seglab import recipes
    from seglab.training import build_training_state

    recipe = recipes.get(args.recipe, variant=args.variant, run_eagerly=args.mode == "eager")
    model = recipe.compile(
        recipe.build_model(encoder_weights=None), jit_compile=False, total_steps=1000
    )
    rng = np.random.default_rng(0)
    shape = (recipe.batch_size, recipe.image_size, recipe.image_size)
    images = rng.uniform(0, 255, (*shape, 3)).astype("float32")
    if recipe.task == "salient":
        masks = (rng.random((*shape, 1)) > 0.5).astype("float32")
    else:
        masks = rng.integers(0, recipe.num_classes, (*shape, 1)).astype("int32")
    targets = [masks] * recipe.num_outputs if recipe.num_outputs > 1 else masks
    if args.build_state:
        wall = time.perf_counter()
        build_training_state(model, (images, targets))
        print(f"{recipe.name} build_training_state: {time.perf_counter() - wall:.2f} s wall")
    for step in range(args.steps):
        wall, cpu = time.perf_counter(), time.process_time()
        model.train_on_batch(images, targets)
        print(
            f"{recipe.name} {args.mode} step {step}: {time.perf_counter() - wall:.2f} s wall, "
            f"{time.process_time() - cpu:.2f} s CPU",
            flush=True,
        )


if __name__ == "__main__":
    main()
