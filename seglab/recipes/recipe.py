"""The ``Recipe`` type: one named configuration (model, data, optimiser, loss) and where each
number comes from. The five lessons' recipes are in ``seglab.recipes.catalogue``.

A ``Recipe`` holds the full (tutorial or paper) settings and, in ``smoke``, the overrides of a
run small enough for a test or a laptop (small images, few pictures, one short epoch, no
pretrained weights). The notebooks and the ``seglab`` command read the same objects:

    recipe = seglab.recipes.get("unet-pets", smoke=True)
    train_set, val_set = recipe.load_data("/data/oxford_pets")
    train_ds, val_ds = recipe.make_datasets(train_set, val_set, seed=0)
    model = recipe.compile(recipe.build_model(encoder_weights=None))
    model.fit(train_ds, validation_data=val_ds, epochs=recipe.epochs)
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from seglab.errors import SeglabError, SettingError

Task = Literal["multiclass", "salient"]

# Sentinel of build_model(encoder_weights=...): the recipe's own choice.
DEFAULT = "default"


class UnknownRecipeError(SeglabError, KeyError):
    """No recipe (or variant) of that name; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclasses.dataclass(frozen=True)
class Reference:
    """A published figure to compare a full run with, and where it was published.

    ``metrics`` is empty when the source reports no number (a tutorial that only shows plots).
    """

    source: str
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    dataset: str = ""
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A complete training configuration. Build variants with ``get(name, **overrides)`` or
    ``recipe.replace(...)``; a recipe itself never changes.

    Attributes:
        name: the key given to ``seglab.recipes.get`` and ``seglab train``.
        title: one line for people.
        task: ``"multiclass"`` (class ids, model gives logits) or ``"salient"`` (one soft
            0..1 map, model gives probabilities).
        model: dotted path of the model constructor (or the callable itself).
        model_kwargs: keyword arguments of the constructor besides ``num_classes``,
            ``input_shape``, ``normalization``, ``encoder_weights`` and ``weights``.
        encoder_weights: how ``build_model()`` initialises the backbone by default:
            ``"imagenet"`` or ``None`` (also ``None`` for models without a backbone).
        dataset: the loader: ``"oxford_pets"``, ``"cihp"``, ``"duts_te"`` or ``"paddleseg"``.
        dataset_kwargs: loader options (e.g. how many images, the validation fraction).
        num_classes: classes of the masks (1 for saliency).
        class_names: one name per class, for tables and plots (by default the dataset's).
        normalization: how the model scales its 0..255 input (``seglab.models.preprocessing``).
        image_size: square side in pixels, for training and evaluation.
        batch_size, epochs: as in the source.
        steps_per_epoch: ``None`` runs through the training set once per epoch.
        optimizer: a ``keras.optimizers`` class name.
        learning_rate: ``None`` keeps the Keras default of that optimizer.
        learning_rate_schedule: ``None`` (constant), or a ``keras.optimizers.schedules`` class
            that starts from ``learning_rate`` and its other arguments, e.g.
            ``{"class_name": "CosineDecay"}``: a ``CosineDecay`` or ``PolynomialDecay``
            without ``decay_steps`` decays over the whole run (epochs times the batches of
            one epoch, whatever ``--epochs`` or ``--batch-size`` say).
        optimizer_kwargs: other optimizer arguments (``epsilon``...).
        loss: ``"sparse_categorical_crossentropy"`` (from logits), ``"binary_crossentropy"``
            or ``"basnet_hybrid"``; applied to each of the ``num_outputs`` outputs.
        num_outputs: outputs of the model (deep supervision when more than 1).
        loss_weights: one weight per output, or ``None`` for equal weights.
        class_weights: one weight per class: per-pixel sample weights (multi-class only).
        ignore_label: mask value of pixels that count in no loss or metric (multi-class; 255
            as in PaddleSeg), or ``None``.
        augment: ``False``, ``True`` or the options of ``seglab.data.Augment``.
        cache: keep the decoded, resized training images in memory.
        run_eagerly: train without tracing a graph. The smoke runs use it: tracing the
            training step of U²-Net takes about 35 s on 2 cores, the few smoke steps 3 s.
        reference: the published figure and its source.
        sources: where each setting comes from, keyed by field name.
        smoke: overrides of the smoke run (fields, plus ``max_train_images`` and
            ``max_val_images``).
        max_train_images, max_val_images: keep only the first N pairs (``None``: all).
        variants: named sets of overrides, e.g. ``{"weighted": {"class_weights": ...}}``.
    """

    name: str
    title: str
    task: Task
    model: str | Callable
    dataset: str
    num_classes: int
    normalization: str
    image_size: int
    batch_size: int
    epochs: int
    model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    encoder_weights: str | None = None
    dataset_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    steps_per_epoch: int | None = None
    optimizer: str = "Adam"
    learning_rate: float | None = None
    learning_rate_schedule: Mapping[str, Any] | None = None
    optimizer_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    loss: str = "sparse_categorical_crossentropy"
    num_outputs: int = 1
    loss_weights: tuple[float, ...] | None = None
    class_weights: tuple[float, ...] | None = None
    ignore_label: int | None = 255
    augment: bool | Mapping[str, Any] = False
    cache: bool = True
    run_eagerly: bool = False
    reference: Reference = dataclasses.field(default_factory=lambda: Reference(source=""))
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict)
    smoke: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    max_train_images: int | None = None
    max_val_images: int | None = None
    variants: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for field in ("loss_weights", "class_weights", "class_names"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, field, tuple(value))
        if self.task not in ("multiclass", "salient"):
            raise SettingError(
                f"{self.name}: task must be 'multiclass' or 'salient', got {self.task!r}"
            )
        for field in ("image_size", "batch_size", "num_outputs"):
            if int(getattr(self, field)) < 1:
                raise SettingError(
                    f"{self.name}: {field} must be at least 1, got {getattr(self, field)}"
                )
        if int(self.epochs) < 0:
            raise SettingError(f"{self.name}: epochs must not be negative, got {self.epochs}")
        if self.loss_weights is not None and len(self.loss_weights) != self.num_outputs:
            raise SettingError(
                f"{self.name}: {len(self.loss_weights)} loss_weights for {self.num_outputs} outputs"
            )
        if self.class_weights is not None and len(self.class_weights) != self.num_classes:
            raise SettingError(
                f"{self.name}: {len(self.class_weights)} class_weights for {self.num_classes} classes"
            )

    # ------------------------------------------------------------------------------------------
    # Variants

    def replace(self, **changes) -> Recipe:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"{self.name}: unknown recipe setting(s) {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def smoke_version(self) -> Recipe:
        """This recipe with its ``smoke`` overrides applied."""
        return self.replace(**self.smoke)

    def to_dict(self) -> dict[str, Any]:
        """The resolved settings as plain JSON-able values (for ``config.json``)."""
        values = dataclasses.asdict(self)
        if callable(self.model):
            values["model"] = f"{self.model.__module__}.{self.model.__qualname__}"
        return _jsonable(values)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Recipe:
        """The recipe that ``to_dict`` described (e.g. ``config.json["recipe"]`` of a run)."""
        values = dict(values)
        for key in ("smoke", "variants", "model_kwargs"):
            if key in values:
                values[key] = _tuples(values[key])
        if isinstance(values.get("reference"), Mapping):
            values["reference"] = Reference(**values["reference"])
        if isinstance(values.get("augment"), Mapping) and "scale" in values["augment"]:
            values["augment"] = {**values["augment"], "scale": tuple(values["augment"]["scale"])}
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    # ------------------------------------------------------------------------------------------
    # Model

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    def model_constructor(self) -> Callable:
        if callable(self.model):
            return self.model
        module, _, function = self.model.rpartition(".")
        return getattr(importlib.import_module(module), function)

    def build_model(self, encoder_weights=DEFAULT, weights=None, input_shape=None):
        """The model of this recipe (not compiled).

        Args:
            encoder_weights: ``"default"`` (the recipe's), ``"imagenet"``, ``None`` or a
                weights file for the backbone (models with one).
            weights: ``None``, or what the whole model starts from: a ``.keras`` /
                ``.weights.h5`` file of the same model, or a family's own weights (the
                official ``u2net.pth``, keras-hub's ``basnet_duts``); see
                ``seglab.models.weights``.
            input_shape: defaults to ``(image_size, image_size, 3)``.
        """
        if encoder_weights == DEFAULT:
            encoder_weights = self.encoder_weights
        kwargs = dict(self.model_kwargs)
        kwargs.update(
            num_classes=self.num_classes,
            input_shape=tuple(input_shape or self.input_shape),
            normalization=self.normalization,
            weights=weights,
        )
        # Models with a backbone name it in model_kwargs; only they take encoder_weights.
        if "backbone" in kwargs:
            kwargs["encoder_weights"] = encoder_weights
        elif encoder_weights is not None:
            raise SettingError(
                f"{self.name}: the model has no backbone to load encoder_weights="
                f"{encoder_weights!r} into; use weights= for a whole trained model"
            )
        return self.model_constructor()(**kwargs)

    def build_optimizer(self, total_steps=None):
        """The recipe's optimizer. ``total_steps``: the training steps of the whole run, for a
        ``learning_rate_schedule`` that gives no ``decay_steps`` (it then decays over the run;
        ``seglab.training.train`` passes it)."""
        import keras

        kwargs = dict(self.optimizer_kwargs)
        if self.learning_rate is not None:
            kwargs["learning_rate"] = self.learning_rate
        if self.learning_rate_schedule is not None:
            kwargs["learning_rate"] = self._learning_rate_schedule(total_steps)
        return getattr(keras.optimizers, self.optimizer)(**kwargs)

    def _learning_rate_schedule(self, total_steps=None):
        import keras

        options = dict(self.learning_rate_schedule)
        name = options.pop("class_name", None)
        if "decay_steps" not in options and name in ("CosineDecay", "PolynomialDecay"):
            if total_steps is None:
                raise SettingError(
                    f"{self.name}: learning_rate_schedule {name} decays over the whole run when it "
                    "gives no decay_steps, and the run's steps are not known here: give "
                    "decay_steps, or build the optimizer with total_steps"
                )
            options["decay_steps"] = int(total_steps)
        schedule = getattr(keras.optimizers.schedules, str(name), None)
        if not isinstance(schedule, type) or "initial_learning_rate" not in (
            schedule.__init__.__code__.co_varnames
        ):
            raise SettingError(
                f"{self.name}: learning_rate_schedule needs a class_name of "
                "keras.optimizers.schedules that starts from initial_learning_rate "
                f"(CosineDecay, ExponentialDecay...), got {name!r}"
            )
        if self.learning_rate is None:
            raise SettingError(
                f"{self.name}: learning_rate_schedule {name} starts from learning_rate; set one"
            )
        try:
            return schedule(initial_learning_rate=self.learning_rate, **options)
        except TypeError as error:
            raise SettingError(f"{self.name}: learning_rate_schedule {name}: {error}") from None

    def build_loss(self):
        """One loss object (applied to each output)."""
        import keras

        if self.loss == "sparse_categorical_crossentropy":
            return keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, ignore_class=self.ignore_label
            )
        if self.loss == "binary_crossentropy":
            return keras.losses.BinaryCrossentropy()
        if self.loss == "basnet_hybrid":
            from seglab.losses.basnet import BASNetHybridLoss

            return BASNetHybridLoss()
        raise SettingError(f"{self.name}: unknown loss {self.loss!r}")

    def build_metrics(self):
        from seglab.metrics.training import segmentation_metrics

        return segmentation_metrics(
            self.num_classes,
            from_logits=False,
            num_outputs=self.num_outputs,
            ignore_label=self.ignore_label,
        )

    def compile(self, model, *, jit_compile="auto", optimizer=None, total_steps=None, **kwargs):
        """``model.compile`` with this recipe's optimizer, loss (one per output), loss weights
        and metrics (on output 0). Returns the model."""
        if self.num_outputs > 1:
            from seglab.losses.u2net import deep_supervision_loss

            losses = deep_supervision_loss(self.build_loss(), self.num_outputs, self.loss_weights)
        else:
            losses = {
                "loss": self.build_loss(),
                "loss_weights": self.loss_weights and list(self.loss_weights),
            }
        kwargs.setdefault("run_eagerly", self.run_eagerly)
        if kwargs["run_eagerly"]:
            jit_compile = False
        model.compile(
            optimizer=optimizer or self.build_optimizer(total_steps),
            **losses,
            metrics=self.build_metrics(),
            jit_compile=jit_compile,
            **kwargs,
        )
        return model

    # ------------------------------------------------------------------------------------------
    # Data

    def load_data(self, data_dir=None, *, download=True, synthetic=False):
        """``(train_set, val_set)``.

        Args:
            data_dir: the dataset folder in its original layout (see ``seglab check``). Without
                one the real dataset is downloaded (``download=True``) into the Keras cache.
            synthetic: make a small synthetic set instead, in ``data_dir`` (or a temporary
                folder); only when asked for, never as a silent fallback.
        """
        if synthetic:
            train, val = _synthetic_sets(self, data_dir)
        else:
            from seglab.data.registry import load_for_training

            train, val = load_for_training(
                self.dataset,
                data_dir,
                download=download,
                num_classes=self.num_classes,
                class_names=self.class_names,
                who=self.name,
                **self.dataset_kwargs,
            )
        if self.max_train_images is not None:
            train = train.take(self.max_train_images)
        if self.max_val_images is not None:
            val = val.take(self.max_val_images)
        return train, val

    def make_datasets(self, train_set, val_set, *, seed=None, batch_size=None, **kwargs):
        """``(train_ds, val_ds)`` ready for ``model.fit``: the training set shuffled and
        augmented, both with this recipe's size, normalisation, class weights and outputs.
        ``kwargs`` go to both ``make_dataset`` calls."""
        from seglab.data.pipeline import make_dataset

        common = dict(
            image_size=self.image_size,
            batch_size=batch_size or self.batch_size,
            num_outputs=self.num_outputs,
            **kwargs,
        )
        train_ds = make_dataset(
            train_set,
            augment=_augment_value(self.augment),
            shuffle=True,
            seed=seed,
            cache=self.cache,
            class_weights=self.class_weights,
            **common,
        )
        val_ds = make_dataset(
            val_set, shuffle=False, cache=self.cache, class_weights=self.class_weights, **common
        )
        return train_ds, val_ds

    def make_eval_dataset(self, val_set, *, batch_size=None):
        """Validation batches of ``(images, masks)`` for ``seglab.metrics.evaluate``."""
        from seglab.data.pipeline import make_dataset

        return make_dataset(
            val_set, image_size=self.image_size, batch_size=batch_size or self.batch_size
        )


def _tuples(value):
    """JSON lists back to the tuples a recipe holds."""
    if isinstance(value, Mapping):
        return {key: _tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def _augment_value(augment):
    return dict(augment) if isinstance(augment, Mapping) else bool(augment)


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _synthetic_sets(recipe: Recipe, data_dir):
    import tempfile

    from seglab.data import synthetic

    root = (
        Path(data_dir)
        if data_dir is not None
        else Path(tempfile.mkdtemp(prefix="seglab-synthetic-"))
    )
    count = max(8, (recipe.max_train_images or 24) + (recipe.max_val_images or 8))
    size = max(32, min(recipe.image_size, 128))
    if recipe.task == "salient":
        return synthetic.make_synthetic_salient(root, count=count, size=size, seed=0).split(0.25)
    return synthetic.make_synthetic_multiclass(
        root, count=count, size=size, num_classes=recipe.num_classes, seed=0, val_fraction=0.25
    )
