"""The catalogue: one recipe per lesson, ``names()`` and ``get(name, smoke=False, ...)``."""

from __future__ import annotations

from seglab.recipes.recipe import Recipe, Reference, UnknownRecipeError

_PETS_TUTORIAL = (
    "TensorFlow image segmentation tutorial (tensorflow.org/tutorials/images/segmentation)"
)
_CIHP_TUTORIAL = (
    "keras.io example 'Multiclass semantic segmentation using DeepLabV3+' (Soumik Rakshit)"
)
_BASNET_EXAMPLE = (
    "keras.io example 'Highly accurate boundaries segmentation using BASNet' (Hamid Ali)"
)
_U2NET_PAPER = "Qin et al., 'U^2-Net: Going deeper with nested U-structure for salient object detection', Pattern Recognition 106 (2020), arXiv:2005.09007"
_SLUDGE_TUTORIAL = "PaddleSeg U^2-Net activated-sludge tutorial (AI Studio, 2021-03-25)"

# The tutorial's weighted variant: class weights [2, 2, 1], normalised to sum to 1 by the pipeline.
PETS_CLASS_WEIGHTS = (2.0, 2.0, 1.0)

_SMALL_RUN = "smoke run: small images, few pictures, one short epoch, no pretrained weights"

# The 'cpu' variant of unet-pets: what learned most within 300 s of training on 2 CPU cores, from
# scratch (no downloads), on the 120 trainval pairs of oxford_pets_sample (30 batches of 4): a
# narrow encoder and decoder (0.63 M weights), many small steps, zoom-crops against overfitting,
# the thin border class weighted double, cosine decay to 0 (tuning in BENCHMARKS.md).
PETS_CPU = {
    "encoder_weights": None,
    "model_kwargs": {
        "backbone": "mobilenetv2",
        "alpha": 0.35,
        "decoder_filters": (128, 64, 32, 16),
    },
    "image_size": 128,
    "batch_size": 4,
    "epochs": 38,
    "learning_rate": 2e-3,
    "learning_rate_schedule": {"class_name": "CosineDecay"},  # to 0 over the run
    "augment": {"flip": True, "scale": (1.0, 1.5)},
    # pet, background, border: the border is the class the model misses most.
    "class_weights": (1.0, 1.0, 2.0),
}

UNET_PETS = Recipe(
    name="unet-pets",
    title="U-Net (MobileNetV2 encoder) on the Oxford-IIIT Pet trimaps",
    task="multiclass",
    model="seglab.models.unet.unet.unet",
    # encoder_trainable left at its default: frozen with ImageNet weights (the tutorial),
    # trained when built with encoder_weights=None (frozen random features learn nothing).
    model_kwargs={"backbone": "mobilenetv2"},
    encoder_weights="imagenet",
    dataset="oxford_pets",
    num_classes=3,
    normalization="mobilenet",
    image_size=128,
    batch_size=64,
    epochs=20,
    optimizer="Adam",
    learning_rate=None,
    loss="sparse_categorical_crossentropy",
    augment={"flip": True, "scale": (1.0, 1.0)},
    reference=Reference(
        source=_PETS_TUTORIAL,
        dataset="Oxford-IIIT Pet test split",
        note="The tutorial reports no test metric: it shows loss/accuracy curves and example "
        "predictions after 20 epochs.",
    ),
    sources={
        "image_size": f"{_PETS_TUTORIAL}: images resized to 128x128",
        "batch_size": f"{_PETS_TUTORIAL}: BATCH_SIZE = 64",
        "epochs": f"{_PETS_TUTORIAL}: EPOCHS = 20",
        "optimizer": f"{_PETS_TUTORIAL}: optimizer='adam' (Keras default learning rate 0.001)",
        "loss": f"{_PETS_TUTORIAL}: SparseCategoricalCrossentropy(from_logits=True)",
        "model": f"{_PETS_TUTORIAL}: MobileNetV2 encoder with ImageNet weights, frozen; pix2pix upsample decoder",
        "normalization": "keras.applications.mobilenet_v2.preprocess_input: [-1, 1], the range "
        f"the ImageNet MobileNetV2 was trained on ({_PETS_TUTORIAL} feeds [0, 1], a mistake)",
        "augment": f"{_PETS_TUTORIAL}: random horizontal flip of image and mask",
        "class_weights": f"{_PETS_TUTORIAL}: weighted variant with class weights [2, 2, 1] (variant 'weighted')",
        "dataset": "trainval split trains, test split validates, as the tutorial's train/test",
        "variants": "cpu: this course's tuning for 300 s of training on 2 CPU cores from "
        "scratch (BENCHMARKS.md, CPU variants): test mIoU 0.499 / 0.494 (seeds 0 / 1, 211 / "
        "247 s) on oxford_pets_sample; goal 0.55 not reached",
    },
    smoke={
        "run_eagerly": True,
        "image_size": 64,
        "batch_size": 8,
        "epochs": 1,
        "encoder_weights": None,
        "max_train_images": 16,
        "max_val_images": 8,
    },
    variants={"weighted": {"class_weights": PETS_CLASS_WEIGHTS}, "cpu": PETS_CPU},
)

DEEPLABV3PLUS_CIHP = Recipe(
    name="deeplabv3plus-cihp",
    title="DeepLabV3+ (ResNet50) on CIHP human parts (20 classes)",
    task="multiclass",
    model="seglab.models.deeplabv3plus.deeplabv3plus.deeplabv3plus",
    model_kwargs={"backbone": "resnet50"},
    encoder_weights="imagenet",
    dataset="cihp",
    dataset_kwargs={"num_train": 1000, "num_val": 50},
    num_classes=20,
    normalization="resnet",
    image_size=512,
    batch_size=4,
    epochs=25,
    optimizer="Adam",
    learning_rate=1e-3,
    loss="sparse_categorical_crossentropy",
    augment=False,
    cache=False,  # 1000 images at 512 px would hold ~0.8 GB in memory
    reference=Reference(
        source=_CIHP_TUTORIAL,
        dataset="50 CIHP Training images after the first 1000",
        note="The tutorial reports no mIoU: it plots training and validation loss and accuracy "
        "over 25 epochs.",
    ),
    sources={
        "image_size": f"{_CIHP_TUTORIAL}: IMAGE_SIZE = 512",
        "batch_size": f"{_CIHP_TUTORIAL}: BATCH_SIZE = 4",
        "epochs": f"{_CIHP_TUTORIAL}: epochs=25",
        "learning_rate": f"{_CIHP_TUTORIAL}: Adam(learning_rate=0.001)",
        "loss": f"{_CIHP_TUTORIAL}: SparseCategoricalCrossentropy(from_logits=True)",
        "dataset": f"{_CIHP_TUTORIAL}: NUM_TRAIN_IMAGES = 1000, NUM_VAL_IMAGES = 50 (sorted Training images)",
        "normalization": f"{_CIHP_TUTORIAL}: keras.applications.resnet50.preprocess_input",
        "model": f"{_CIHP_TUTORIAL}: ResNet50 with ImageNet weights, features of conv4_block6_2_relu and conv2_block3_2_relu",
        "augment": f"{_CIHP_TUTORIAL}: no augmentation",
    },
    smoke={
        "run_eagerly": True,
        "image_size": 64,
        "batch_size": 2,
        "epochs": 1,
        "encoder_weights": None,
        "max_train_images": 4,
        "max_val_images": 2,
    },
)

# The 'cpu' variants: what learns most in 300 s of training on 2 CPU cores, from scratch (no
# downloads), on the course samples; figures and what was tried in BENCHMARKS.md.
# basnet-duts on sod_sample: 72 training pairs, 18 batches of 4 per epoch.
BASNET_CPU = {
    # A quarter of the width on the ResNet-18 stages: 16x fewer weights per stage.
    "model_kwargs": {"backbone": "resnet18", "filters": 16},
    "image_size": 64,
    "batch_size": 4,
    "epochs": 8,
    "learning_rate": 1e-3,
    "learning_rate_schedule": {"class_name": "CosineDecay"},  # to 0 over the run
    # Zoom-crops slowed learning more than they helped in so short a run.
    "augment": {"flip": True, "scale": (1.0, 1.0)},
}

BASNET_DUTS = Recipe(
    name="basnet-duts",
    title="BASNet (predict-refine, hybrid loss) on 140 DUTS-TE images",
    task="salient",
    model="seglab.models.basnet.basnet.basnet",
    model_kwargs={"backbone": "resnet34"},
    encoder_weights=None,
    dataset="duts_te",
    dataset_kwargs={"limit": 140, "val_fraction": 0.1},
    num_classes=1,
    normalization="unit",
    image_size=288,
    batch_size=4,
    epochs=40,
    optimizer="Adam",
    learning_rate=1e-4,
    optimizer_kwargs={"epsilon": 1e-8},
    loss="basnet_hybrid",
    num_outputs=8,
    loss_weights=(1.0,) * 8,
    augment=False,
    reference=Reference(
        source="Qin et al., 'BASNet: Boundary-aware salient object detection', CVPR 2019, "
        "DUTS-TE column of its comparison table",
        metrics={"mae": 0.047},
        dataset="DUTS-TE (5019 images), model trained on DUTS-TR (10553 images) for 400k "
        "iterations at batch 8",
        note="The paper's table gives MAE 0.047; the keras.io example quotes 0.042 without a "
        "source. Neither is comparable with this recipe, which trains on 126 DUTS-TE images "
        "and validates on 14 of them.",
    ),
    sources={
        "image_size": f"{_BASNET_EXAMPLE}: IMAGE_SIZE = 288",
        "batch_size": f"{_BASNET_EXAMPLE}: BATCH_SIZE = 4",
        "learning_rate": f"{_BASNET_EXAMPLE}: Adam(learning_rate=1e-4, epsilon=1e-8)",
        "dataset": f"{_BASNET_EXAMPLE}: the first 140 sorted DUTS-TE images, 90/10 train/val split",
        "loss": f"{_BASNET_EXAMPLE}: BCE + SSIM + IoU hybrid loss on the refined map and the 7 side maps",
        "epochs": f"{_BASNET_EXAMPLE} trains 1 epoch for the demo; 40 epochs (1280 steps of "
        "126 images at batch 4) is this course's choice for a full run whose loss has levelled off",
        "normalization": f"{_BASNET_EXAMPLE}: images scaled to [0, 1]",
        "model": f"{_BASNET_EXAMPLE}: ResNet-34 encoder without pretrained weights",
        "variants": "cpu: this course's tuning for 300 s of training on 2 CPU cores from scratch "
        "(BENCHMARKS.md, CPU variants): validation MAE 0.225 / 0.225 (seeds 0 / 1, 264 / 256 s) "
        "on sod_sample, better than the all-zero map's 0.271; goal 0.17 not reached",
    },
    smoke={
        "run_eagerly": True,
        "image_size": 64,
        "batch_size": 2,
        "epochs": 1,
        "max_train_images": 4,
        "max_val_images": 2,
        # A quarter of the width: the same structure, about 16x fewer weights.
        "model_kwargs": {"backbone": "resnet34", "filters": 16},
    },
    variants={"cpu": BASNET_CPU},
)

_U2NET_SOURCES = {
    "image_size": f"{_U2NET_PAPER}: images resized to 320x320 (the paper then random-crops "
    "288x288; here the zoom-crop augmentation resizes back to 320)",
    "batch_size": f"{_U2NET_PAPER}: batch size 12",
    "learning_rate": f"{_U2NET_PAPER}: Adam, lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay",
    "epochs": f"{_SLUDGE_TUTORIAL}: NUM_EPOCHS 400",
    "dataset": f"{_SLUDGE_TUTORIAL}: 83 activated-sludge micrographs (4x-40x), background/floc, "
    "split 4:1 into PaddleSeg train_list.txt / val_list.txt",
    "model": f"{_SLUDGE_TUTORIAL}: multi-class head, 1x1 side convolutions, logits, no sigmoid",
    "loss": f"{_SLUDGE_TUTORIAL}: cross-entropy on the fused and the 6 side outputs "
    "(MULTI_LOSS_WEIGHT; equal weights as in the paper's deep supervision)",
    "augment": f"{_U2NET_PAPER}: random horizontal flip and crop",
    "normalization": "images scaled to [0, 1]",
}

U2NET_SLUDGE = Recipe(
    name="u2net-sludge",
    title="U^2-Net (multi-class head) on activated-sludge micrographs (PaddleSeg layout)",
    task="multiclass",
    model="seglab.models.u2net.u2net.u2net",
    model_kwargs={"head": "multiclass"},
    encoder_weights=None,
    dataset="paddleseg",
    num_classes=2,
    class_names=("background", "floc"),
    normalization="unit",
    image_size=320,
    batch_size=12,
    epochs=400,
    optimizer="Adam",
    learning_rate=1e-3,
    optimizer_kwargs={"epsilon": 1e-8},
    loss="sparse_categorical_crossentropy",
    num_outputs=7,
    loss_weights=(1.0,) * 7,
    augment={"flip": True, "scale": (1.0, 320 / 288)},
    reference=Reference(
        source=_U2NET_PAPER,
        # Only the MAE is quoted: it is the figure cited consistently for the paper's
        # DUTS-TE table; see the paper's Table 3 for max F-beta, S-measure and the rest.
        metrics={"mae": 0.044},
        dataset="DUTS-TE salient objects (sigmoid head trained on DUTS-TR)",
        note=f"The {_SLUDGE_TUTORIAL} reports its sludge mIoU only in a screenshot (on par with "
        "HRNet-W18 after 400 epochs); no number is quoted here. The paper's figures are for "
        "salient objects, not sludge.",
    ),
    sources=_U2NET_SOURCES,
    smoke={
        "run_eagerly": True,
        "image_size": 64,
        "batch_size": 4,
        "epochs": 1,
        "max_train_images": 8,
        "max_val_images": 4,
    },
)

# u2netp-sludge on microscopy_sample: 52 training pairs, 7 batches of 8 per epoch.
U2NETP_CPU = {
    "image_size": 96,
    "batch_size": 8,
    "epochs": 10,
    "learning_rate": 3e-3,
    "learning_rate_schedule": {"class_name": "CosineDecay"},  # to 0 over the run
    "augment": {"flip": True, "scale": (1.0, 1.25)},
}

U2NETP_SLUDGE = U2NET_SLUDGE.replace(
    name="u2netp-sludge",
    title="U^2-NetP (the 1.1 M-parameter U^2-Net) on activated-sludge micrographs",
    model="seglab.models.u2net.u2net.u2netp",
    reference=Reference(
        source=_U2NET_PAPER,
        metrics={"mae": 0.054},
        dataset="DUTS-TE salient objects (U^2-Net-dagger, sigmoid head trained on DUTS-TR)",
        note=U2NET_SLUDGE.reference.note,
    ),
    smoke={**U2NET_SLUDGE.smoke, "batch_size": 8},
    sources={
        **_U2NET_SOURCES,
        "variants": "cpu: this course's tuning for 300 s of training on 2 CPU cores from "
        "scratch (BENCHMARKS.md, CPU variants): validation foreground IoU 0.355 / 0.451 (seeds "
        "0 / 1, 254 / 245 s) on microscopy_sample; above Otsu's 0.29 over the set, goal 0.75 "
        "not reached",
    },
    variants={"cpu": U2NETP_CPU},
)

# Recipes by name, in lesson order; tests and benchmarks add stand-ins here.
RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (UNET_PETS, DEEPLABV3PLUS_CIHP, BASNET_DUTS, U2NET_SLUDGE, U2NETP_SLUDGE)
}


def names() -> list[str]:
    """The names of the recipes, in lesson order."""
    return list(RECIPES)


def get(name: str, smoke: bool = False, variant: str | None = None, **overrides) -> Recipe:
    """The recipe ``name``; with ``smoke=True`` its smoke settings, then ``variant``'s and
    ``overrides`` on top (``None`` values are ignored, so CLI options can be passed as is).

    Raises:
        UnknownRecipeError: a ``KeyError``; unknown name or variant (the message lists the
            known ones).
    """
    if name not in RECIPES:
        raise UnknownRecipeError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    if variant is not None:
        if variant not in recipe.variants:
            known = ", ".join(recipe.variants) or "none"
            raise UnknownRecipeError(
                f"recipe {name!r} has no variant {variant!r}; variants: {known}"
            )
    if smoke:
        recipe = recipe.smoke_version()
    from seglab.course import max_batch_size

    if max_batch_size() is not None and recipe.batch_size > max_batch_size():
        recipe = recipe.replace(batch_size=max_batch_size())
    if variant is not None:
        recipe = recipe.replace(**recipe.variants[variant])
    changes = {key: value for key, value in overrides.items() if value is not None}
    return recipe.replace(**changes) if changes else recipe
