"""``evaluate_run``: the validation metrics of a run, the one evaluation behind both
``seglab.training.train`` (``metrics.json``) and ``seglab evaluate`` (``evaluation.json``)."""

from __future__ import annotations

from pathlib import Path

from seglab.errors import PathNotFoundError
from seglab.training.errors import TrainingError
from seglab.training.run_folder import (
    CONFIG,
    EVALUATION,
    SYNTHETIC_DATA,
    finite_json,
    read_config,
    write_json,
)


def evaluate_run(
    run_dir,
    *,
    recipe=None,
    model=None,
    val_set=None,
    data_dir=None,
    synthetic: bool | None = None,
    batch_size: int | None = None,
    output=None,
) -> dict:
    """The metrics (``seglab.metrics.evaluate``) of the run in ``run_dir`` on its validation
    set, written as JSON to ``output`` (default ``run_dir/evaluation.json``) and returned;
    values that are not finite become ``None``.

    Args:
        run_dir: a run folder (its ``config.json`` says the recipe, data and class names).
        recipe: the run's ``Recipe`` (default: rebuilt from the config).
        model: the model to evaluate (default: the run's saved model, ``load_run``).
        val_set: the validation set (default: loaded again, as the run loaded it).
        data_dir: the dataset folder (default: the one the run used).
        synthetic: evaluate on the run's synthetic set (default: when the run trained on one
            and no ``data_dir`` is given).
        batch_size: the evaluation batch size (default: the recipe's).
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if config is None:
        raise TrainingError(f"{run_dir}: not a seglab run folder (no readable {CONFIG})")
    if recipe is None:
        from seglab.recipes import Recipe

        recipe = Recipe.from_dict(config["recipe"])
    if val_set is None:
        run = config.get("run", {})
        if synthetic is None:
            synthetic = data_dir is None and bool(run.get("synthetic", False))
        if synthetic and data_dir is None:
            data_dir = run_dir / SYNTHETIC_DATA
        elif data_dir is None and run.get("data_dir"):
            data_dir = Path(run["data_dir"])
            if not data_dir.is_dir():
                raise PathNotFoundError(
                    data_dir,
                    "the run's data folder, not found (give another: data_dir, --data-dir)",
                )
        _, val_set = recipe.load_data(data_dir, synthetic=synthetic)
    if model is None:
        from seglab.training.loading import load_run

        model, _ = load_run(run_dir)

    from seglab.metrics import evaluate

    multiclass = recipe.task == "multiclass"
    metrics = finite_json(
        evaluate(
            model,
            recipe.make_eval_dataset(val_set, batch_size=batch_size),
            recipe.task,
            num_classes=recipe.num_classes if multiclass else None,
            class_names=config.get("class_names") or None,
            ignore_label=recipe.ignore_label if multiclass else None,
        )
    )
    write_json(output or run_dir / EVALUATION, metrics)
    return metrics
