"""The ``seglab`` command line's arguments: ``build_parser()`` and the types that check them."""

from __future__ import annotations

import argparse
from pathlib import Path


class UsageError(Exception):
    """Bad command-line arguments."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing the usage and exiting, so every error is
    reported the same way."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _number(kind, minimum, description):
    """An argparse type: ``kind(text)``, at least ``minimum`` (exclusive for floats)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}") from None
        too_small = value <= minimum if kind is float else value < minimum
        if too_small:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, 1, "a positive whole number")
_non_negative_int = _number(int, 0, "a whole number >= 0")
_positive_float = _number(float, 0.0, "a positive number")


def _encoder_weights(text: str):
    if text == "default":
        return text
    if text.lower() in ("none", "imagenet"):
        return None if text.lower() == "none" else "imagenet"
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(
            f"{text}: not 'imagenet', 'none' or an existing weights file"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="seglab", description="Train, evaluate and apply the seglab segmentation recipes."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    commands.add_parser("recipes", help="list the recipes")

    train = commands.add_parser("train", help="train a recipe into a run folder (resumable)")
    train.add_argument("recipe", metavar="RECIPE", help="recipe name (see: seglab recipes)")
    train.add_argument(
        "--data-dir", type=Path, help="dataset folder; without it the dataset is downloaded"
    )
    train.add_argument(
        "--synthetic", action="store_true", help="train on a small synthetic dataset instead"
    )
    train.add_argument("--smoke", action="store_true", help="the recipe's tiny smoke settings")
    train.add_argument("--variant", help="a named variant of the recipe (e.g. unet-pets: weighted)")
    train.add_argument("--epochs", type=_non_negative_int)
    train.add_argument("--batch-size", type=_positive_int)
    train.add_argument("--image-size", type=_positive_int)
    train.add_argument("--learning-rate", type=_positive_float)
    train.add_argument(
        "--max-train-images", type=_positive_int, help="use only the first N training pairs"
    )
    train.add_argument(
        "--max-val-images", type=_positive_int, help="use only the first N validation pairs"
    )
    train.add_argument(
        "--encoder-weights",
        type=_encoder_weights,
        default="default",
        help="the backbone's start: 'imagenet', 'none' (offline: train from scratch) or a "
        "weights file; default: the recipe's",
    )
    train.add_argument(
        "--weights",
        help="start the whole model from these weights (fine-tuning): a .keras or "
        ".weights.h5 file, the official u2net.pth / u2netp.pth, or 'basnet_duts'",
    )
    train.add_argument("--out", type=Path, help="run folder (default: runs/RECIPE[-smoke])")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    train.add_argument(
        "--backup-every",
        type=_positive_int,
        metavar="STEPS",
        help="steps between backups (default: a quarter of an epoch)",
    )
    train.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="Keras fit verbosity: 1 progress bar, 2 one line per epoch",
    )
    cluster = train.add_argument_group(
        "several processes (JAX backend; README: 'Several GPUs, several machines')",
        "Every process runs the same command, only --process-id differing. Also read from "
        "SEGLAB_COORDINATOR, SEGLAB_NUM_PROCESSES, SEGLAB_PROCESS_ID, or a Slurm job step "
        "(srun: SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_STEP_NODELIST).",
    )
    cluster.add_argument(
        "--coordinator", metavar="HOST:PORT", help="address of process 0, the same for all"
    )
    cluster.add_argument(
        "--num-processes", type=_positive_int, metavar="N", help="processes training together"
    )
    cluster.add_argument(
        "--process-id",
        type=_non_negative_int,
        metavar="I",
        help="this process, 0..N-1; process 0 writes the run folder",
    )

    evaluate = commands.add_parser(
        "evaluate", help="metrics of a trained run on its validation data"
    )
    evaluate.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    evaluate.add_argument(
        "--data-dir", type=Path, help="dataset folder (default: the one the run used)"
    )
    evaluate.add_argument("--synthetic", action="store_true", help=argparse.SUPPRESS)
    evaluate.add_argument("--batch-size", type=_positive_int)
    evaluate.add_argument(
        "--output", type=Path, help="JSON file (default: RUN_DIR/evaluation.json)"
    )

    predict = commands.add_parser("predict", help="masks for images, at their original size")
    predict.add_argument("model", type=Path, metavar="MODEL", help="a run folder or a .keras file")
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE_OR_DIR")
    predict.add_argument(
        "--out", type=Path, required=True, help="folder for the PNG masks and overlays"
    )
    predict.add_argument(
        "--image-size",
        type=_positive_int,
        help="resize to this size for a model that takes any size (default: the run's)",
    )
    predict.add_argument(
        "--tile",
        type=_positive_int,
        metavar="SIZE",
        help="predict large images at full resolution in overlapping SIZE-pixel windows "
        "(a multiple of 32)",
    )
    predict.add_argument(
        "--overlap",
        type=float,
        default=0.25,
        help="overlap of the windows, as a fraction of the tile (default 0.25)",
    )
    predict.add_argument(
        "--tta",
        action="store_true",
        help="average with the mirror image's prediction (a run folder's classes named "
        "left/right are swapped in the mirror's)",
    )
    predict.add_argument("--no-overlay", action="store_true")

    check = commands.add_parser("check", help="report every problem of a dataset folder")
    check.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    check.add_argument(
        "--num-classes", type=_positive_int, help="check class ids of PaddleSeg / labels folders"
    )
    check.add_argument("--deep", action="store_true", help="decode every image fully")
    check.add_argument(
        "--ignore-label",
        type=_ignore_label,
        default=255,
        metavar="N|none",
        help="mask value of pixels to ignore, allowed in class masks (default 255; none: no value)",
    )

    export = commands.add_parser(
        "export", help="write a trained model as a SavedModel, TFLite or ONNX file for serving"
    )
    export.add_argument("model", type=Path, metavar="MODEL", help="a run folder or a .keras file")
    export.add_argument("--format", required=True, choices=("saved_model", "tflite", "onnx"))
    export.add_argument(
        "--out", type=Path, required=True, help="a folder (saved_model) or a file (.tflite, .onnx)"
    )
    export.add_argument(
        "--image-size",
        type=_positive_int,
        help="height and width of the exported input for a model that takes any size "
        "(default: the run's image size)",
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    export.add_argument(
        "--no-check",
        action="store_true",
        help="skip running the file with its runtime and comparing with Keras",
    )
    return parser


def _ignore_label(text: str):
    return None if text.lower() == "none" else _non_negative_int(text)


def _version() -> str:
    import seglab

    return seglab.__version__
