"""Input-pipeline throughput: seglab's make_dataset against the seed notebooks' loader.

Both decode, resize to 288 px, flip at random and batch the same image/mask files. The seeds'
loader reads one pair at a time with PIL (keras.utils.load_img) inside tf.numpy_function, in a
map without num_parallel_calls. Comparisons:

- without a cache: every pass decodes every file (the cost of a first epoch), on all the
  cores the process may use, and on one core: a child process pinned to one CPU
  (``os.sched_setaffinity`` before TensorFlow starts) that also holds TensorFlow to one thread
  (inter- and intra-op parallelism 1, tf.data ``private_threadpool_size=1`` and
  ``max_intra_op_parallelism=1``), the same for both pipelines;
- as each is written for training: the seeds call ``.cache()`` on the file *paths*, before the
  map, so every epoch still decodes; ``make_dataset(cache=True)`` caches the decoded, resized
  pairs and augments after the cache, so later epochs skip decoding (the steady state of a
  multi-epoch run that fits in memory).

Passes alternate between the pipelines, so a change in the machine's load hits both alike.
Besides images/s (wall clock), each row gives the process's CPU time per image, which depends
much less on what else the machine runs.

    python benchmarks/pipeline_throughput.py [DATA_DIR] [--passes 7] [--batch-size 8]

DATA_DIR is a folder of images/ + masks/ (default ../shared/data/sod_sample beside the repo).
Prints a markdown table and the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ONE_CORE_FLAG = "--one-core-child"
if ONE_CORE_FLAG in sys.argv:
    # Pinned before TensorFlow starts, so every thread it makes shares this one CPU.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from seglab.data.folders import load_paired_folder  # noqa: E402
from seglab.data.pipeline import Augment, make_dataset  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "sod_sample"


def seeds_dataset(image_paths, mask_paths, size: int, batch_size: int, seed: int = 0, cache=False):
    """The seed notebooks' approach: PIL in tf.numpy_function, one example at a time."""
    rng = np.random.default_rng(seed)

    def load(image_path, mask_path):
        image = keras.utils.load_img(image_path.decode(), target_size=(size, size))
        mask = keras.utils.load_img(
            mask_path.decode(), color_mode="grayscale", target_size=(size, size)
        )
        image = keras.utils.img_to_array(image) / 255.0
        mask = keras.utils.img_to_array(mask) / 255.0
        if rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        return image.astype(np.float32), mask.astype(np.float32)

    def load_pair(image_path, mask_path):
        image, mask = tf.numpy_function(load, [image_path, mask_path], [tf.float32, tf.float32])
        image.set_shape([size, size, 3])
        mask.set_shape([size, size, 1])
        return image, mask

    dataset = tf.data.Dataset.from_tensor_slices((list(image_paths), list(mask_paths)))
    if cache:  # as the seed notebook writes it: the cache holds the paths, not the pixels
        dataset = dataset.cache().shuffle(buffer_size=1000, seed=seed)
    return dataset.map(load_pair).batch(batch_size)


def _one_pass(dataset) -> tuple[int, float, float]:
    start, cpu_start = time.perf_counter(), time.process_time()
    seen = sum(int(images.shape[0]) for images, *_ in dataset)
    return seen, time.perf_counter() - start, time.process_time() - cpu_start


def measure(datasets: dict, passes: int) -> dict[str, tuple[float, float]]:
    """Median images/s and median CPU ms per image of each dataset over ``passes`` full
    passes, after a warm-up pass; passes alternate between the datasets."""
    for dataset in datasets.values():
        _one_pass(dataset)
    rates = {name: [] for name in datasets}
    cpu = {name: [] for name in datasets}
    for _ in range(passes):
        for name, dataset in datasets.items():
            seen, seconds, cpu_seconds = _one_pass(dataset)
            rates[name].append(seen / seconds)
            cpu[name].append(1000 * cpu_seconds / seen)
    return {name: (float(np.median(rates[name])), float(np.median(cpu[name]))) for name in rates}


def uncached_pair(source, size: int, batch_size: int):
    """The seeds' loader and make_dataset, both flipping only, without a cache."""
    # The seeds only flip; seglab does the same work here, and its zoom-crop gets its own row.
    flip_only = Augment(flip=True, scale=(1.0, 1.0))
    ours = make_dataset(source, image_size=size, batch_size=batch_size, augment=flip_only, seed=0)
    seeds = seeds_dataset(source.image_paths, source.mask_paths, size, batch_size)
    return {"seeds": seeds, "seglab": ours}  # validate=True runs here, outside the timing


def one_core_child(args) -> None:
    """Runs pinned to one CPU (see the top of the file): both pipelines on one thread."""
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    one_thread = tf.data.Options()
    one_thread.threading.private_threadpool_size = 1
    one_thread.threading.max_intra_op_parallelism = 1
    datasets = uncached_pair(load_paired_folder(args.data_dir), args.size, args.batch_size)
    datasets = {name: dataset.with_options(one_thread) for name, dataset in datasets.items()}
    print(json.dumps(measure(datasets, args.passes)))


def run_one_core(args) -> dict:
    command = [sys.executable, os.path.abspath(__file__), args.data_dir, ONE_CORE_FLAG]
    command += ["--size", str(args.size), "--batch-size", str(args.batch_size)]
    command += ["--passes", str(args.passes)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return {name + "_1": tuple(value) for name, value in json.loads(result.stdout).items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", default=str(DEFAULT_DATA))
    parser.add_argument("--size", type=int, default=288)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument(ONE_CORE_FLAG, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_core_child:
        one_core_child(args)
        return

    source = load_paired_folder(args.data_dir)
    datasets = uncached_pair(source, args.size, args.batch_size)
    datasets["seglab_cached"] = make_dataset(
        source,
        image_size=args.size,
        batch_size=args.batch_size,
        augment=Augment(flip=True, scale=(1.0, 1.0)),
        seed=0,
        shuffle=True,
        cache=True,
    )  # the warm-up pass fills the cache
    datasets["seglab_cached_zoom"] = make_dataset(
        source,
        image_size=args.size,
        batch_size=args.batch_size,
        augment=True,
        seed=0,
        shuffle=True,
        cache=True,
    )
    datasets["seeds_cached"] = seeds_dataset(
        source.image_paths, source.mask_paths, args.size, args.batch_size, cache=True
    )

    load_before = os.getloadavg()[0]
    results = measure(datasets, args.passes)
    load_middle = os.getloadavg()[0]
    results.update(run_one_core(args))
    load_after = os.getloadavg()[0]
    cores = len(os.sched_getaffinity(0))

    print(
        f"{len(source)} pairs from {args.data_dir}, {args.size} px, batch {args.batch_size}, "
        f"median of {args.passes} alternating passes after a warm-up; {cores} cores; "
        f"1-minute load average {load_before:.1f} at the start, {load_middle:.1f} before the "
        f"one-core child, {load_after:.1f} at the end; "
        f"TensorFlow {tf.__version__}, Python {platform.python_version()}"
    )
    print()
    print(
        "| pipeline | threads | seeds images/s | seglab images/s | speed-up "
        "| seeds CPU ms/image | seglab CPU ms/image |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    work = f"decode + resize {args.size} + flip + batch {args.batch_size}"
    rows = (
        ("", f"{work}, no cache", f"{cores} cores"),
        ("_1", f"{work}, no cache", "1 core, 1 thread"),
        ("_cached", f"{work}, each pipeline's own cache, later epochs", f"{cores} cores"),
    )
    results["seeds_cached_zoom"] = results["seeds_cached"]  # the seeds have no zoom: same baseline
    rows += (
        (
            "_cached_zoom",
            "the same, seglab also zoom-cropping (scale 1-1.5), later epochs",
            f"{cores} cores",
        ),
    )
    for suffix, what, threads in rows:
        (seeds_rate, seeds_cpu), (ours_rate, ours_cpu) = (
            results["seeds" + suffix],
            results["seglab" + suffix],
        )
        print(
            f"| {what} | {threads} | {seeds_rate:.0f} | {ours_rate:.0f} | "
            f"{ours_rate / seeds_rate:.2f}x | {seeds_cpu:.2f} | {ours_cpu:.2f} |"
        )
    print()
    print("command: python " + " ".join([os.path.relpath(__file__, REPO_ROOT), *sys.argv[1:]]))


if __name__ == "__main__":
    main()
