"""What each ``seglab`` command does, given its parsed arguments; ``COMMANDS`` maps the
command names to them. Each returns the exit status; Keras and TensorFlow are imported only by
the commands that need them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from seglab.errors import PathNotFoundError, SettingError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def print_error(message: str) -> None:
    print(f"seglab: error: {message}", file=sys.stderr, flush=True)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
        print_error(str(error))
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


COMMANDS = {
    "recipes": _cmd_recipes,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "predict": _cmd_predict,
    "check": _cmd_check,
    "export": _cmd_export,
}
