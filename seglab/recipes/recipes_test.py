"""The recipes hold the tutorials' settings, their smoke versions are small, and every smoke
recipe builds, loads its sample data and takes a training step."""

import json
import math

import numpy as np
import pytest

from seglab import recipes
from seglab.errors import SettingError
from seglab.recipes import Recipe, UnknownRecipeError

ALL = ["unet-pets", "deeplabv3plus-cihp", "basnet-duts", "u2net-sludge", "u2netp-sludge"]
SAMPLES = {
    "unet-pets": "oxford_pets_sample",
    "deeplabv3plus-cihp": "cihp_sample",
    "basnet-duts": None,  # sod_sample is not in the DUTS-TE layout: see _duts_copy
    "u2net-sludge": "microscopy_sample",
    "u2netp-sludge": "microscopy_sample",
}


def test_names_in_lesson_order():
    assert recipes.names() == ALL


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(UnknownRecipeError, match="unknown recipe 'unet'.*unet-pets.*u2netp-sludge"):
        recipes.get("unet")
    with pytest.raises(UnknownRecipeError, match="no variant 'heavy'.*weighted"):
        recipes.get("unet-pets", variant="heavy")


@pytest.mark.parametrize(
    "name, expected",
    [
        (
            "unet-pets",
            dict(
                image_size=128,
                batch_size=64,
                epochs=20,
                optimizer="Adam",
                learning_rate=None,
                encoder_weights="imagenet",
                num_classes=3,
                normalization="mobilenet",  # MobileNetV2's own range, not the tutorial's [0, 1]
                num_outputs=1,
                loss="sparse_categorical_crossentropy",
                class_weights=None,
            ),
        ),
        (
            "deeplabv3plus-cihp",
            dict(
                image_size=512,
                batch_size=4,
                epochs=25,
                learning_rate=1e-3,
                encoder_weights="imagenet",
                num_classes=20,
                normalization="resnet",
                dataset_kwargs={"num_train": 1000, "num_val": 50},
            ),
        ),
        (
            "basnet-duts",
            dict(
                image_size=288,
                batch_size=4,
                learning_rate=1e-4,
                optimizer_kwargs={"epsilon": 1e-8},
                encoder_weights=None,
                num_classes=1,
                task="salient",
                num_outputs=8,
                loss="basnet_hybrid",
                dataset_kwargs={"limit": 140, "val_fraction": 0.1},
            ),
        ),
        (
            "u2net-sludge",
            dict(
                image_size=320,
                batch_size=12,
                epochs=400,
                learning_rate=1e-3,
                optimizer_kwargs={"epsilon": 1e-8},
                num_classes=2,
                num_outputs=7,
                model_kwargs={"head": "multiclass"},
                dataset="paddleseg",
            ),
        ),
        (
            "u2netp-sludge",
            dict(
                image_size=320,
                batch_size=12,
                epochs=400,
                num_outputs=7,
                model="seglab.models.u2net.u2net.u2netp",
            ),
        ),
    ],
)
def test_full_settings_are_the_tutorials(name, expected):
    recipe = recipes.get(name)
    for field, value in expected.items():
        assert getattr(recipe, field) == value, field


def test_pets_weighted_variant_uses_the_tutorial_class_weights():
    assert recipes.get("unet-pets", variant="weighted").class_weights == (2.0, 2.0, 1.0)


def test_basnet_reference_is_the_paper_mae():
    reference = recipes.get("basnet-duts").reference
    assert reference.metrics == {"mae": 0.047}  # the CVPR 2019 table, not keras.io's 0.042
    assert "BASNet" in reference.source and "0.042" in reference.note


@pytest.mark.parametrize("name", ALL)
def test_every_setting_says_where_it_comes_from(name):
    recipe = recipes.get(name)
    for field in ("image_size", "batch_size", "epochs", "dataset", "loss", "model"):
        assert recipe.sources.get(field), f"{name}: no source for {field}"
    assert recipe.reference.source
    assert recipe.reference.metrics or recipe.reference.note, (
        "say when the source reports no figure"
    )


@pytest.mark.parametrize("name", ALL)
def test_smoke_settings_are_small(name):
    smoke = recipes.get(name, smoke=True)
    assert 32 <= smoke.image_size <= 96
    assert smoke.epochs == 1
    assert smoke.max_train_images <= 16 and smoke.max_val_images <= 8
    assert smoke.encoder_weights is None
    assert smoke.run_eagerly, "tracing the graph would cost more than the few smoke steps"
    assert recipes.get(name).max_train_images is None, "the full recipe uses every image"


def test_overrides_apply_after_smoke_and_ignore_none():
    recipe = recipes.get("unet-pets", smoke=True, epochs=3, batch_size=None)
    assert (recipe.epochs, recipe.batch_size, recipe.image_size) == (3, 8, 64)
    with pytest.raises(TypeError, match="unknown recipe setting.*epoch_count"):
        recipes.get("unet-pets", epoch_count=3)
    with pytest.raises(ValueError, match="class_weights"):
        recipes.get("unet-pets", class_weights=(1.0, 2.0))


@pytest.mark.parametrize("name", ALL)
def test_to_dict_round_trips_through_json(name):
    recipe = recipes.get(name, smoke=True)
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_learning_rate_schedule_starts_from_the_learning_rate_and_decays():
    recipe = recipes.get("u2netp-sludge", smoke=True).replace(
        learning_rate=3e-3,
        learning_rate_schedule={"class_name": "CosineDecay", "decay_steps": 100},
    )
    optimizer = recipe.build_optimizer()
    values = []
    for step in (0, 50, 100, 150):
        optimizer.iterations.assign(step)
        values.append(float(optimizer.learning_rate))
    assert values == pytest.approx([3e-3, 1.5e-3, 0.0, 0.0], abs=1e-9)
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"learning_rate_schedule": {"class_name": "Cosine", "decay_steps": 9}}, "Cosine"),
        ({"learning_rate_schedule": {"decay_steps": 9}}, "class_name"),
        ({"learning_rate_schedule": {"class_name": "CosineDecay", "decay": 9}}, "decay"),
        (
            {
                "learning_rate": None,
                "learning_rate_schedule": {"class_name": "CosineDecay", "decay_steps": 9},
            },
            "set one",
        ),
    ],
)
def test_a_wrong_learning_rate_schedule_is_a_setting_error(changes, message):
    recipe = recipes.get("u2netp-sludge", smoke=True).replace(**changes)
    with pytest.raises(SettingError, match=message):
        recipe.build_optimizer()


# The cpu variants on their samples: (sample, the most weights they may have).
CPU_VARIANTS = {
    "unet-pets": ("oxford_pets_sample", 1_000_000),  # the tutorial's U-Net has 6.5 M
    "u2netp-sludge": ("microscopy_sample", 1_200_000),  # U²-NetP is small already
    "basnet-duts": ("sod_sample", 7_000_000),  # the full BASNet has 108.9 M
}


@pytest.mark.parametrize("name", sorted(CPU_VARIANTS))
def test_cpu_variant_is_small_from_scratch_and_decays_over_its_run(name, sample_data, monkeypatch):
    import keras

    def no_download(*args, **kwargs):
        raise AssertionError("the cpu variant must not download anything")

    monkeypatch.setattr(keras.utils, "get_file", no_download)
    sample, most_weights = CPU_VARIANTS[name]
    recipe = recipes.get(name, variant="cpu")
    assert recipe.encoder_weights is None
    assert recipe.image_size <= min(160, recipes.get(name).image_size)
    assert "cpu" in recipe.sources.get("variants", "")
    model = recipe.build_model()
    assert model.count_params() <= most_weights
    # The cosine decay ends with the run: epochs times the batches of the sample's training set.
    train_set, _ = recipe.load_data(sample_data(sample), download=False)
    total_steps = recipe.epochs * -(-len(train_set) // recipe.batch_size)
    optimizer = recipe.build_optimizer(total_steps)
    half = total_steps // 2
    optimizer.iterations.assign(half)
    cosine = 0.5 * (1 + math.cos(math.pi * half / total_steps))
    assert float(optimizer.learning_rate) == pytest.approx(recipe.learning_rate * cosine, rel=1e-4)
    optimizer.iterations.assign(total_steps)
    assert float(optimizer.learning_rate) == pytest.approx(0.0)
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_a_schedule_without_decay_steps_decays_over_the_steps_it_is_given():
    recipe = recipes.get("u2netp-sludge", smoke=True).replace(
        learning_rate=1e-3, learning_rate_schedule={"class_name": "CosineDecay"}
    )
    with pytest.raises(SettingError, match="total_steps"):
        recipe.build_optimizer()
    for total_steps in (10, 300):  # e.g. --epochs changed: the decay follows
        optimizer = recipe.build_optimizer(total_steps)
        optimizer.iterations.assign(total_steps)
        assert float(optimizer.learning_rate) == pytest.approx(0.0)
        optimizer.iterations.assign(total_steps - 1)
        assert float(optimizer.learning_rate) > 0


def test_models_without_a_backbone_refuse_imagenet_and_load_a_weights_file(tmp_path):
    recipe = recipes.get("u2netp-sludge", smoke=True)
    with pytest.raises(ValueError, match="no backbone"):
        recipe.build_model(encoder_weights="imagenet")
    model = recipe.build_model(encoder_weights=None)
    path = tmp_path / "u2netp.weights.h5"
    model.save_weights(path)
    again = recipe.build_model(weights=str(path))
    for a, b in zip(model.weights, again.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(FileNotFoundError):
        recipe.build_model(weights=str(tmp_path / "missing.weights.h5"))


def test_sludge_without_a_data_dir_trains_on_bbbc038(monkeypatch):
    from seglab.data import bbbc038

    calls = []
    monkeypatch.setattr(bbbc038, "load_bbbc038", lambda: calls.append("bbbc038") or ("t", "v"))
    assert recipes.get("u2net-sludge").load_data(None) == ("t", "v") and calls == ["bbbc038"]
    with pytest.raises(ValueError, match="PaddleSeg folder"):
        recipes.get("u2net-sludge").load_data(None, download=False)
    with pytest.raises(FileNotFoundError, match="/no/such/folder"):
        recipes.get("u2net-sludge").load_data("/no/such/folder")


def test_cihp_split_follows_the_tutorial_and_keeps_its_proportion_on_a_small_copy(sample_data):
    train, val = recipes.get("deeplabv3plus-cihp").load_data(sample_data("cihp_sample"))
    # 5 images: the 1000:50 split would leave nothing to validate; one image validates.
    assert (len(train), len(val)) == (4, 1)
    assert set(train.pairs).isdisjoint(val.pairs)
    assert train.num_classes == 20 and len(train.class_names) == 20


def _duts_copy(sample_data, tmp_path):
    """sod_sample laid out as DUTS-TE (DUTS-TE-Image/, DUTS-TE-Mask/), by symbolic links."""
    source = sample_data("sod_sample")
    root = tmp_path / "DUTS-TE"
    for folder, target in (("images", "DUTS-TE-Image"), ("masks", "DUTS-TE-Mask")):
        (root / target).mkdir(parents=True)
        for path in sorted((source / folder).iterdir()):
            (root / target / path.name).symlink_to(path)
    return root


@pytest.mark.parametrize("name", ALL)
def test_smoke_recipe_trains_a_step_on_its_sample(name, sample_data, tmp_path):
    recipe = recipes.get(name, smoke=True)
    data_dir = (
        _duts_copy(sample_data, tmp_path) if SAMPLES[name] is None else sample_data(SAMPLES[name])
    )
    train_set, val_set = recipe.load_data(data_dir)
    assert len(train_set) == recipe.max_train_images  # every sample holds more pairs
    assert 1 <= len(val_set) <= recipe.max_val_images
    train_ds, val_ds = recipe.make_datasets(train_set, val_set, seed=0)
    images, targets = next(iter(train_ds))[:2]
    assert tuple(images.shape[1:]) == (recipe.image_size, recipe.image_size, 3)
    targets = targets if isinstance(targets, tuple) else (targets,)
    assert len(targets) == recipe.num_outputs

    model = recipe.compile(recipe.build_model(encoder_weights=None))
    history = model.fit(train_ds.take(1), validation_data=val_ds.take(1), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # Deep-supervision models name their metrics after output 0 (e.g. "val_refined_mean_iou").
    assert any(key.startswith("val_") and key.endswith("mean_iou") for key in history.history)
