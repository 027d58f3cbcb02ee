"""Lesson 04's "Starting from the official weights" cell, run on a checkpoint in the official format.

The lesson's own runs leave ``OFFICIAL_WEIGHTS = None`` (the authors' files are on Google
Drive and never downloaded by the notebook), so that cell would otherwise never run in CI.
Here its code, read from the notebook, runs with the course's fixture
``u2net_official_fixture/u2netp_random_init.pth`` (a U²-NetP state dict saved by the official
code, random weights) on a few pairs of the microscopy sample, in the smoke configuration.
"""

import json
from pathlib import Path

import numpy as np
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_u2net_sludge.ipynb"
CELL_START = "if OFFICIAL_WEIGHTS is None:"


def _code_cell(start: str) -> str:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    sources = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
    matches = [source for source in sources if source.startswith(start)]
    assert len(matches) == 1, f"{NOTEBOOK.name}: expected one code cell starting {start!r}"
    return matches[0]


@pytest.mark.slow
def test_official_weights_cell_loads_the_body_and_fine_tunes(sample_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("SEGLAB_MAX_STEPS", raising=False)
    import keras

    import seglab
    from seglab.models.u2net.checkpoint import read_torch_checkpoint

    checkpoint = sample_data("u2net_official_fixture") / "u2netp_random_init.pth"
    recipe = seglab.recipes.get("u2netp-sludge", smoke=True)
    train_set, val_set = recipe.load_data(sample_data("microscopy_sample"))
    train_set, val_set = train_set.take(4), val_set.take(2)  # one training step
    train_ds, val_ds = recipe.make_datasets(train_set, val_set, seed=0)
    eval_ds = recipe.make_eval_dataset(val_set)
    val_images, val_masks = next(iter(eval_ds))
    namespace = {
        "OFFICIAL_WEIGHTS": str(checkpoint),
        "SEED": 0,
        "keras": keras,
        "seglab": seglab,
        "recipe": recipe,
        "train_ds": train_ds,
        "val_ds": val_ds,
        "eval_ds": eval_ds,
        "val_images": val_images,
        "val_masks": val_masks,
        "class_names": train_set.class_names,
        "out_dir": tmp_path,
        "results": {"mean_iou": 0.5},  # the from-scratch model's, printed beside
    }

    with pytest.warns(UserWarning, match="loaded the body"):
        exec(_code_cell(CELL_START), namespace)

    official, tuned = namespace["official"], namespace["tuned"]
    assert official.get_layer("preprocessing").mode == "u2net_official"
    assert tuned.get_layer("preprocessing").mode == "u2net_official"
    assert seglab.models.output_info(tuned).kind == "logits"
    assert tuned.outputs[0].shape[-1] == recipe.num_classes

    # The published model holds the checkpoint's weights (PyTorch OIHW -> Keras HWIO).
    state = read_torch_checkpoint(checkpoint)

    def stage1_kernel(model):
        return keras.ops.convert_to_numpy(model.get_layer("stage1").input_unit.conv.kernel)

    official_kernel = stage1_kernel(official)
    expected = np.transpose(state["stage1.rebnconvin.conv_s1.weight"], (2, 3, 1, 0))
    np.testing.assert_allclose(official_kernel, expected, atol=1e-7)
    # The fine-tuned body started there: one Adam step (learning rate 1e-3) moves each weight
    # by about 1e-3, while a fresh initialisation differs by far more.
    tuned_kernel = stage1_kernel(tuned)
    assert np.max(np.abs(tuned_kernel - expected)) < 5e-3
    fresh = seglab.models.u2netp(num_classes=2, head="multiclass", input_shape=recipe.input_shape)
    fresh_kernel = stage1_kernel(fresh)
    assert np.max(np.abs(fresh_kernel - expected)) > 5e-2

    assert (tmp_path / "official" / "model.keras").is_file()
    assert 0.0 <= namespace["tuned_results"]["mean_iou"] <= 1.0
