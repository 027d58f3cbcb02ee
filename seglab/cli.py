"""The ``seglab`` command line: train, evaluate, predict, check, recipes.

    seglab recipes
    seglab train unet-pets --data-dir data/oxford_pets --out runs/pets
    seglab train unet-pets --data-dir data/oxford_pets --smoke --weights none
    seglab evaluate runs/pets --data-dir data/oxford_pets
    seglab predict runs/pets photo.jpg more_photos/ --out masks/
    seglab check data/oxford_pets
    seglab export runs/pets --format onnx --out pets.onnx

Bad arguments and bad data give a one-line (or one-list) message on stderr and exit status 1
(2 for usage errors); Ctrl-C during training exits with 130 after writing a checkpoint.
TensorFlow is imported only by the commands that need it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from seglab.errors import PathNotFoundError, SeglabError, SettingError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


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


def _print_error(message: str) -> None:
    print(f"seglab: error: {message}", file=sys.stderr, flush=True)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Commands


def _cmd_recipes(args) -> int:
    from seglab import recipes

    for name in recipes.names():
        recipe = recipes.get(name)
        print(f"{name:20s} {recipe.title}")
        print(f"{'':20s} {recipe.image_size} px, batch {recipe.batch_size}, {recipe.epochs} epochs")
    return EXIT_OK


def _check_data_dir(path: Path | None) -> None:
    if path is not None and not path.exists():
        raise PathNotFoundError(path, "data folder not found")
    if path is not None and not path.is_dir():
        raise SettingError(f"{path}: not a folder")


def _cmd_train(args) -> int:
    from seglab import recipes

    recipe = recipes.get(
        args.recipe,
        smoke=args.smoke,
        variant=args.variant,
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=args.image_size,
        learning_rate=args.learning_rate,
        max_train_images=args.max_train_images,
        max_val_images=args.max_val_images,
    )
    if not args.synthetic:
        _check_data_dir(args.data_dir)
    out = args.out or Path("runs") / (recipe.name + ("-smoke" if args.smoke else ""))
    from seglab.distributed import cluster_from

    cluster = cluster_from(args.coordinator, args.num_processes, args.process_id)

    from seglab import training

    # Fail before the slow imports when the folder holds a finished run.
    if training.run_status(out) == "finished" and not args.overwrite:
        raise training.RunExistsError(training.run_folder.finished_run_message(out))
    arguments = {
        key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()
    }
    result = training.train(
        recipe,
        out,
        data_dir=args.data_dir,
        synthetic=args.synthetic,
        seed=args.seed,
        encoder_weights=args.encoder_weights,
        weights=args.weights,
        overwrite=args.overwrite,
        verbose=args.verbose,
        backup_every=args.backup_every,
        arguments=arguments,
        log=_log,
        cluster=cluster,
    )
    if cluster is not None and not cluster.is_chief:
        print(f"Done ({cluster.describe()}); process 0 writes the run folder {out}")
        return EXIT_OK
    from seglab.metrics import format_table

    print(
        format_table(
            result.metrics,
            reference=dict(recipe.reference.metrics) or None,
            source=recipe.reference.source if recipe.reference.metrics else None,
        )
    )
    print(
        f"Run folder: {out} ({training.MODEL}, {training.HISTORY}, {training.METRICS}, {training.CONFIG})"
    )
    return EXIT_OK


def _run_config(run_dir: Path) -> dict:
    # Checked before importing seglab.training (and with it Keras and TensorFlow).
    if not run_dir.is_dir():
        raise PathNotFoundError(run_dir, "run folder not found")
    try:
        return json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        raise SettingError(
            f"{run_dir}: not a seglab run folder (no readable config.json)"
        ) from None


def _cmd_evaluate(args) -> int:
    config = _run_config(args.run_dir)
    if not args.synthetic:
        _check_data_dir(args.data_dir)
    from seglab import training
    from seglab.metrics import format_table
    from seglab.recipes import Recipe

    output = args.output or args.run_dir / training.EVALUATION
    results = training.evaluate_run(
        args.run_dir,
        data_dir=args.data_dir,
        synthetic=True if args.synthetic else None,
        batch_size=args.batch_size,
        output=output,
    )
    recipe = Recipe.from_dict(config["recipe"])
    print(
        format_table(
            results,
            reference=dict(recipe.reference.metrics) or None,
            source=recipe.reference.source if recipe.reference.metrics else None,
        )
    )
    print(f"Wrote {output}")
    return EXIT_OK


def _cmd_predict(args) -> int:
    from seglab import training

    if not args.model.exists():
        raise PathNotFoundError(args.model, "model not found")
    if args.model.is_dir():
        model, config = training.load_run(args.model)
    elif args.model.suffix == ".keras":
        model, config = training.load_model(args.model), {}
    else:
        raise SettingError(f"{args.model}: expected a .keras model file or a run folder")
    from seglab.predict import mirror_class_pairs, predict_files

    # A run folder's class names say which classes a mirror image swaps (left and right arm).
    flip_pairs = mirror_class_pairs(config.get("class_names")) if args.tta else ()
    result = predict_files(
        model,
        args.images,
        args.out,
        image_size=args.image_size or config.get("image_size"),
        tile=args.tile,
        overlap=args.overlap,
        flip=args.tta,
        flip_pairs=flip_pairs,
        write_overlay=not args.no_overlay,
        log=_log,
    )
    print(f"{result.summary()} (in {args.out})")
    return EXIT_ERROR if result.failed else EXIT_OK


def _cmd_export(args) -> int:
    from seglab import export

    try:
        result = export.export(
            args.model,
            args.out,
            args.format,
            image_size=args.image_size,
            overwrite=args.overwrite,
            check=not args.no_check,
        )
    except export.MissingPackageError as error:
        _print_error(str(error))
        return EXIT_ERROR
    print(result.summary())
    return EXIT_OK


def _cmd_check(args) -> int:
    from seglab.data.check import check_folder

    report = check_folder(
        args.data_dir,
        num_classes=args.num_classes,
        deep=args.deep,
        ignore_label=args.ignore_label,
    )
    print(report)
    return EXIT_OK if report.ok else EXIT_ERROR


_COMMANDS = {
    "recipes": _cmd_recipes,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "predict": _cmd_predict,
    "check": _cmd_check,
    "export": _cmd_export,
}


def _is_user_error(error: BaseException, args) -> bool:
    """Errors reported in one line, without a traceback: seglab's own types (``SeglabError``:
    bad data, bad settings, a run folder in the way, a download that cannot happen offline),
    and a missing file or folder that the command line itself named. Anything else is a bug
    and keeps its traceback."""
    if isinstance(error, SeglabError | UsageError):
        return True
    if isinstance(error, FileNotFoundError) and error.filename is not None:
        values = []
        for value in vars(args).values():
            values += value if isinstance(value, list) else [value]
        given = {
            os.path.abspath(os.fspath(value))
            for value in values
            if isinstance(value, str | os.PathLike)
        }
        return os.path.abspath(os.fspath(error.filename)) in given
    return False


def main(argv=None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        _print_error(str(error))
        return EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    # SIGTERM (a scheduler stopping the job) is handled like Ctrl-C: checkpoint, then exit.
    previous = signal.getsignal(signal.SIGTERM)
    if args.command == "train" and previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        _print_error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - filtered just below
        if os.environ.get("SEGLAB_DEBUG") or not _is_user_error(error, args):
            raise
        training = sys.modules.get("seglab.training")
        if training is not None and isinstance(error, training.TrainingInterrupted):
            _print_error(str(error))
            return EXIT_INTERRUPTED
        _print_error(_message(error))
        return EXIT_ERROR
    finally:
        if args.command == "train" and previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
