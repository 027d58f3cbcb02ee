"""Input-pipeline throughput: seglab's make_dataset against the seed notebooks' loader.

Both decode, resize to 288 px, flip at random and batch the same image/mask files. The seeds'
loader reads one pair at a time with PIL (keras.utils.load_img) inside tf.numpy_function, in a
map without num_parallel_calls. Two comparisons:

- without a cache: every pass decodes every file (the cost of a first epoch);
- as each is written for training: the seeds call ``.cache()`` on the file *paths*, before the
  map, so every epoch still decodes; ``make_dataset(cache=True)`` caches the decoded, resized
  pairs and augments after the cache, so later epochs skip decoding (the steady state of a
  multi-epoch run that fits in memory).

    python benchmarks/pipeline_throughput.py [DATA_DIR] [--passes 5] [--batch-size 8]

DATA_DIR is a folder of images/ + masks/ (default ../shared/data/sod_sample beside the repo).
Prints a markdown table row and the command that produced it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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


def _one_pass(dataset) -> tuple[int, float]:
    start = time.perf_counter()
    seen = sum(int(images.shape[0]) for images, _ in dataset)
    return seen, time.perf_counter() - start


def images_per_second(datasets: dict, passes: int) -> dict[str, float]:
    """Median images/s of each dataset over ``passes`` full passes, after a warm-up pass.

    Passes alternate between the datasets, so a change in the machine's load hits both alike.
    """
    for dataset in datasets.values():
        _one_pass(dataset)
    rates = {name: [] for name in datasets}
    for _ in range(passes):
        for name, dataset in datasets.items():
            seen, seconds = _one_pass(dataset)
            rates[name].append(seen / seconds)
    return {name: float(np.median(values)) for name, values in rates.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", default=str(DEFAULT_DATA))
    parser.add_argument("--size", type=int, default=288)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args(argv)

    source = load_paired_folder(args.data_dir)
    # The seeds only flip; seglab does the same work here, and its zoom-crop gets its own row.
    flip_only = Augment(flip=True, scale=(1.0, 1.0))
    ours = make_dataset(
        source, image_size=args.size, batch_size=args.batch_size, augment=flip_only, seed=0
    )  # validate=True runs here, outside the timing
    seeds = seeds_dataset(source.image_paths, source.mask_paths, args.size, args.batch_size)
    ours_cached = make_dataset(
        source,
        image_size=args.size,
        batch_size=args.batch_size,
        augment=flip_only,
        seed=0,
        shuffle=True,
        cache=True,
    )  # the warm-up pass fills the cache
    ours_cached_zoom = make_dataset(
        source,
        image_size=args.size,
        batch_size=args.batch_size,
        augment=True,
        seed=0,
        shuffle=True,
        cache=True,
    )
    seeds_cached = seeds_dataset(
        source.image_paths, source.mask_paths, args.size, args.batch_size, cache=True
    )

    # The same pipelines held to one thread: the cost per image, apart from parallelism.
    one_thread = tf.data.Options()
    one_thread.threading.private_threadpool_size = 1
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rates = images_per_second(
        {
            "seeds": seeds,
            "seglab": ours,
            "seeds_1": seeds.with_options(one_thread),
            "seglab_1": ours.with_options(one_thread),
            "seeds_cached": seeds_cached,
            "seglab_cached": ours_cached,
            "seglab_cached_zoom": ours_cached_zoom,
        },
        args.passes,
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    print(
        f"{len(source)} pairs from {args.data_dir}, {args.size} px, batch {args.batch_size}, "
        f"median of {args.passes} alternating passes after a warm-up; {cores} cores, "
        f"1-minute load average {load_before:.1f} before, {load_after:.1f} after; "
        f"TensorFlow {tf.__version__}, Python {platform.python_version()}"
    )
    print()
    print(
        "| pipeline | threads | seeds (PIL in numpy_function), images/s | seglab make_dataset, images/s | speed-up |"
    )
    print("| --- | --- | --- | --- | --- |")
    work = f"decode + resize {args.size} + flip + batch {args.batch_size}"
    rows = (
        ("", f"{work}, no cache", f"{cores} cores"),
        ("_1", f"{work}, no cache", "1 thread"),
        ("_cached", f"{work}, each pipeline's own cache, later epochs", f"{cores} cores"),
    )
    rates["seeds_cached_zoom"] = rates["seeds_cached"]  # the seeds have no zoom: same baseline
    rows += (
        (
            "_cached_zoom",
            "the same, seglab also zoom-cropping (scale 1-1.5), later epochs",
            f"{cores} cores",
        ),
    )
    for suffix, what, threads in rows:
        seeds_rate, ours_rate = rates["seeds" + suffix], rates["seglab" + suffix]
        print(
            f"| {what} | {threads} | {seeds_rate:.1f} | {ours_rate:.1f} | "
            f"{ours_rate / seeds_rate:.1f}x |"
        )
    print()
    print("command: python " + " ".join([os.path.relpath(__file__, REPO_ROOT), *sys.argv[1:]]))


if __name__ == "__main__":
    main()
