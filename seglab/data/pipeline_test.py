import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from seglab.data.check import read_mask
from seglab.data.folders import load_paired_folder
from seglab.data.paddleseg import load_paddleseg
from seglab.data.pipeline import (
    Augment,
    add_sample_weights,
    class_frequencies,
    make_dataset,
)
from seglab.data.sets import DataError, SegmentationSet, TensorSource


def _write_pair(folder, stem, image, mask, image_suffix=".png", image_format=None):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    image_path = folder / "images" / f"{stem}{image_suffix}"
    mask_path = folder / "masks" / f"{stem}.png"
    image = image if isinstance(image, Image.Image) else Image.fromarray(image)
    mask = mask if isinstance(mask, Image.Image) else Image.fromarray(mask)
    image.save(image_path, format=image_format)
    mask.save(mask_path)
    return str(image_path), str(mask_path)


def _class_set(pairs, num_classes, label_offset=0):
    return SegmentationSet("test", tuple(pairs), "class", num_classes, label_offset)


def _one_batch(dataset):
    return next(iter(dataset))


def _blocks(rng, shape, values, block=8):
    """Random class ids in blocks of ``block`` pixels: large regions with sharp edges."""
    coarse = rng.choice(values, size=(shape[0] // block, shape[1] // block))
    return np.kron(coarse, np.ones((block, block), dtype=coarse.dtype))


def test_microscopy_lists_give_52_and_13_pairs_with_labels_0_and_1(sample_data):
    train, val = load_paddleseg(sample_data("microscopy_sample"), num_classes=2)
    assert (len(train), len(val)) == (52, 13)
    seen = set()
    for subset in (train, val):
        for images, masks in make_dataset(subset, image_size=96, batch_size=16):
            assert images.dtype == tf.float32 and images.shape[1:] == (96, 96, 3)
            assert masks.dtype == tf.int32 and masks.shape[1:] == (96, 96, 1)
            # RGB 0..255: the models normalise their own input.
            assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
            assert float(tf.reduce_max(images)) > 1.0
            seen |= set(np.unique(masks.numpy()).tolist())
    assert seen == {0, 1}


def test_sod_sample_masks_are_soft_in_unit_range(sample_data):
    dataset = load_paired_folder(sample_data("sod_sample"))
    assert len(dataset) == 80 and dataset.mask_kind == "soft"
    images, masks = _one_batch(make_dataset(dataset.take(8), image_size=(64, 80), batch_size=8))
    assert images.shape == (8, 64, 80, 3) and masks.shape == (8, 64, 80, 1)
    assert masks.dtype == tf.float32
    values = masks.numpy()
    assert values.min() == 0.0 and values.max() == 1.0
    # Bilinear resize of a 0/255 mask gives intermediate values along the edges.
    assert np.any((values > 0.05) & (values < 0.95))


@pytest.mark.parametrize("image_size", [(37, 53), (200, 150)])
def test_nearest_neighbour_mask_resize_never_creates_new_ids(tmp_path, image_size):
    rng = np.random.default_rng(0)
    mask = _blocks(rng, (96, 96), np.array([0, 3, 7], np.uint8), block=3)
    image = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
    pair = _write_pair(tmp_path, "a", image, mask)
    _, masks = _one_batch(make_dataset(_class_set([pair], 8), image_size=image_size, batch_size=1))
    assert set(np.unique(masks.numpy())) == {0, 3, 7}


def test_gif_and_png_named_jpg_decode_like_real_png(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    # GIF stores a palette: compare with the same palette image saved as PNG.
    palette = Image.fromarray(image).quantize(64)
    mask = np.zeros((32, 48), np.uint8)
    gif = _write_pair(tmp_path / "gif", "x", palette, mask, ".jpg", "GIF")
    png_as_jpg = _write_pair(tmp_path / "png", "x", palette.convert("RGB"), mask, ".jpg", "PNG")
    reference = _write_pair(tmp_path / "ref", "x", palette.convert("RGB"), mask, ".png")
    outputs = [
        _one_batch(make_dataset(_class_set([pair], 2), image_size=(32, 48), batch_size=1))[0]
        for pair in (gif, png_as_jpg, reference)
    ]
    np.testing.assert_array_equal(outputs[0], outputs[2])
    np.testing.assert_array_equal(outputs[1], outputs[2])


def test_rgba_grayscale_and_16bit_images_become_8bit_rgb(tmp_path):
    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
    rgba = np.dstack([gray, gray // 2, gray // 4, np.full_like(gray, 7)])
    sixteen = gray.astype(np.uint16) * 257  # full 16-bit range
    mask = np.zeros((16, 16), np.uint8)
    pairs = [
        _write_pair(tmp_path, "gray", gray, mask),
        _write_pair(tmp_path, "rgba", rgba, mask),
        _write_pair(tmp_path, "sixteen", Image.fromarray(sixteen), mask),
    ]
    assert Image.open(pairs[2][0]).mode.startswith("I")
    images, _ = _one_batch(make_dataset(_class_set(pairs, 2), image_size=16, batch_size=3))
    pixels = images.numpy().astype(np.uint8)
    assert images.dtype == tf.float32 and np.array_equal(pixels, images.numpy())  # 0..255
    np.testing.assert_array_equal(pixels[0], np.dstack([gray] * 3))
    np.testing.assert_array_equal(pixels[1], rgba[..., :3])  # alpha dropped, not blended
    np.testing.assert_array_equal(pixels[2], np.dstack([gray] * 3))


def test_masks_keep_stored_values_whatever_the_encoding(tmp_path):
    ids = _blocks(np.random.default_rng(2), (16, 16), np.array([0, 1, 2, 300]), block=4)
    image = np.zeros((16, 16, 3), np.uint8)
    palette_mask = Image.fromarray((ids % 256).astype(np.uint8), mode="L").convert("P")
    palette_mask.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [9] * 759)
    rgb_mask = np.dstack([ids % 256, np.full_like(ids, 200), np.full_like(ids, 100)]).astype(
        np.uint8
    )
    cases = {
        "sixteen": (Image.fromarray(ids.astype(np.uint16)), ids),
        "palette": (palette_mask, ids % 256),
        "rgb": (rgb_mask, ids % 256),
    }
    for stem, (mask, expected) in cases.items():
        pair = _write_pair(tmp_path / stem, stem, image, mask)
        _, masks = _one_batch(make_dataset(_class_set([pair], 301), image_size=16, batch_size=1))
        np.testing.assert_array_equal(masks.numpy()[0, ..., 0], expected, err_msg=stem)


def _mask_encodings(ids):
    """The same 0/1 mask stored in the encodings masks come in."""
    palette = Image.fromarray(ids.astype(np.uint8)).convert("P")
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    return {
        "one_bit": Image.fromarray(ids.astype(bool)),
        "grey_0_1": Image.fromarray(ids.astype(np.uint8)),
        "grey_0_255": Image.fromarray((ids * 255).astype(np.uint8)),
        "sixteen_0_65535": Image.fromarray((ids * 65535).astype(np.uint16)),
        "palette": palette,
        "rgba": Image.fromarray(np.dstack([ids * 255] * 4).astype(np.uint8)),
    }


@pytest.mark.parametrize("mask_kind", ["class", "soft"])
def test_check_reads_masks_exactly_as_the_pipeline_decodes_them(tmp_path, mask_kind):
    ids = _blocks(np.random.default_rng(6), (16, 16), np.array([0, 1]), block=4)
    image = np.zeros((16, 16, 3), np.uint8)
    encodings = _mask_encodings(ids)
    pairs = [_write_pair(tmp_path, name, image, mask) for name, mask in encodings.items()]
    num_classes = 256 if mask_kind == "class" else 1
    single_sets = [
        SegmentationSet(name, (pair,), mask_kind, num_classes)
        for name, pair in zip(encodings, pairs, strict=True)
    ]
    # A set of one encoding uses that encoding's decoder; a mixed set reads each file's header.
    mixed = SegmentationSet("mixed", tuple(pairs), mask_kind, num_classes)
    # validate=False: check rightly refuses a soft mask stored as 0/1.
    one_by_one = [
        _one_batch(make_dataset(d, image_size=16, batch_size=1, validate=False))[1][0]
        for d in single_sets
    ]
    all_at_once = _one_batch(make_dataset(mixed, image_size=16, batch_size=8, validate=False))[1]
    scale = 255.0 if mask_kind == "soft" else 1
    for index, (name, (_, mask_path)) in enumerate(zip(encodings, pairs, strict=True)):
        decoded = one_by_one[index].numpy()[..., 0]
        np.testing.assert_array_equal(all_at_once[index].numpy()[..., 0], decoded, err_msg=name)
        np.testing.assert_array_equal(
            decoded * scale, read_mask(mask_path, mask_kind), err_msg=name
        )
        if mask_kind == "soft":
            # Whatever the encoding, white is 1 (a 0/1 grey mask is the odd one out: check says so).
            expected = ids if name != "grey_0_1" else ids / 255
            np.testing.assert_allclose(decoded, expected, err_msg=name)
        elif name in ("one_bit", "grey_0_1", "palette"):
            np.testing.assert_array_equal(decoded, ids, err_msg=name)


def test_label_offset_maps_trimap_values_to_class_ids(tmp_path):
    trimap = _blocks(np.random.default_rng(3), (16, 16), np.array([1, 2, 3], np.uint8), block=4)
    pair = _write_pair(tmp_path, "t", np.zeros((16, 16, 3), np.uint8), trimap)
    _, masks = _one_batch(
        make_dataset(_class_set([pair], 3, label_offset=1), image_size=16, batch_size=1)
    )
    np.testing.assert_array_equal(masks.numpy()[0, ..., 0], trimap - 1)


@pytest.fixture
def encoded_set(tmp_path):
    """Images whose pixels encode their masks (grey = 80 * class id), in big blocks."""
    rng = np.random.default_rng(4)
    pairs = []
    for index in range(6):
        mask = _blocks(rng, (64, 64), np.array([0, 1, 2], np.uint8), block=16)
        image = np.dstack([mask * 80] * 3).astype(np.uint8)
        pairs.append(_write_pair(tmp_path, f"{index}", image, mask))
    return _class_set(pairs, 3)


@pytest.mark.parametrize("cache", [False, True], ids=["per-example", "batched-after-cache"])
def test_joint_augmentation_moves_image_and_mask_together(encoded_set, cache):
    plain = _one_batch(make_dataset(encoded_set, image_size=64, batch_size=6))
    augmented = _one_batch(
        make_dataset(encoded_set, image_size=64, batch_size=6, augment=True, seed=3, cache=cache)
    )
    images, masks = (t.numpy() for t in augmented)
    assert not np.array_equal(masks, plain[1].numpy())  # augmentation changed something
    decoded = np.round(images[..., :1] / 80)
    # Bilinear image edges blur over a pixel; everywhere else the image gives the mask back.
    assert np.mean(decoded == masks) > 0.95


def test_augmentation_is_reproducible_per_seed_and_new_every_epoch(encoded_set):
    def epochs(seed, count=2, **kwargs):
        dataset = make_dataset(
            encoded_set,
            image_size=64,
            batch_size=6,
            augment=Augment(scale=(1.0, 2.0)),
            shuffle=True,
            seed=seed,
            **kwargs,
        )
        return [np.concatenate([m.numpy() for _, m in dataset]) for _ in range(count)]

    first, second = epochs(seed=7), epochs(seed=7)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], epochs(seed=8, count=1)[0])
    # Cached: the cache holds the unaugmented examples, so epochs still differ.
    cached = epochs(seed=7, cache=True)
    assert not np.array_equal(cached[0], cached[1])


def test_files_and_decoded_tensors_give_identical_tensors(encoded_set):
    images = [np.asarray(Image.open(i).convert("RGB")) for i in encoded_set.image_paths]
    masks = [np.asarray(Image.open(m))[..., None] for m in encoded_set.mask_paths]
    tensors = TensorSource(
        "decoded",
        tf.data.Dataset.from_tensor_slices((np.stack(images), np.stack(masks))),
        mask_kind="class",
        num_classes=3,
        size=len(images),
    )
    for options in ({}, {"augment": True, "seed": 5}):
        from_files = _one_batch(make_dataset(encoded_set, image_size=48, batch_size=6, **options))
        from_tensors = _one_batch(make_dataset(tensors, image_size=48, batch_size=6, **options))
        for a, b in zip(from_files, from_tensors, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_sample_weights_are_normalised_class_weights_per_pixel(encoded_set):
    images, masks, weights = _one_batch(
        make_dataset(encoded_set, image_size=64, batch_size=6, class_weights=[2.0, 2.0, 1.0])
    )
    assert weights.dtype == tf.float32 and weights.shape == masks.shape
    expected = np.array([0.4, 0.4, 0.2], np.float32)[masks.numpy()]
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)
    # The function also works on its own, as in the TensorFlow tutorial.
    _, _, direct = add_sample_weights([1.0, 3.0])(images, tf.constant([[0, 1], [1, 1]]))
    np.testing.assert_allclose(direct.numpy(), [[0.25, 0.75], [0.75, 0.75]])
    with pytest.raises(ValueError, match="2 class_weights for 3 classes"):
        make_dataset(encoded_set, image_size=64, batch_size=6, class_weights=[1.0, 1.0])


def test_num_outputs_repeats_the_mask_and_keras_fits_it(encoded_set):
    dataset = make_dataset(
        encoded_set, image_size=32, batch_size=3, num_outputs=2, class_weights=[1.0, 1.0, 2.0]
    )
    images, masks, weights = _one_batch(dataset)
    assert isinstance(masks, tuple) and len(masks) == 2 and len(weights) == 2
    np.testing.assert_array_equal(masks[0], masks[1])
    inputs = keras.Input((32, 32, 3))
    outputs = [keras.layers.Conv2D(3, 1)(inputs), keras.layers.Conv2D(3, 3, padding="same")(inputs)]
    model = keras.Model(inputs, outputs)
    model.compile("adam", loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * 2)
    history = model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


def test_static_shapes_batching_and_repeat(encoded_set):
    dataset = make_dataset(encoded_set, image_size=(40, 24), batch_size=4, drop_remainder=True)
    assert dataset.element_spec[0].shape == (4, 40, 24, 3)
    assert dataset.element_spec[1].shape == (4, 40, 24, 1)
    assert sum(1 for _ in dataset) == 1
    assert [len(m) for _, m in make_dataset(encoded_set, image_size=8, batch_size=4)] == [4, 2]
    repeated = make_dataset(encoded_set, image_size=8, batch_size=4, repeat=True)
    assert sum(1 for _ in repeated.take(5)) == 5


def test_cache_in_memory_and_in_a_file_gives_the_same_tensors(encoded_set, tmp_path):
    reference = _one_batch(make_dataset(encoded_set, image_size=32, batch_size=6))
    for cache in (True, str(tmp_path / "cache")):
        dataset = make_dataset(encoded_set, image_size=32, batch_size=6, cache=cache)
        for _ in range(2):
            for a, b in zip(_one_batch(dataset), reference, strict=True):
                np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_class_frequencies_count_pixels_after_offset(tmp_path, encoded_set):
    trimap = np.array([[1, 1, 2], [3, 3, 3]], np.uint8)
    pair = _write_pair(tmp_path / "t", "t", np.zeros((2, 3, 3), np.uint8), trimap)
    np.testing.assert_array_equal(class_frequencies(_class_set([pair] * 2, 3, 1)), [4, 2, 6])
    batches = make_dataset(encoded_set, image_size=64, batch_size=4)
    from_batches = class_frequencies(batches, num_classes=3)
    np.testing.assert_array_equal(from_batches, class_frequencies(encoded_set))


def test_validation_names_the_corrupt_file_before_the_pipeline_is_built(encoded_set, tmp_path):
    broken = tmp_path / "broken.png"
    shutil.copy(encoded_set.image_paths[0], broken)
    broken.write_bytes(broken.read_bytes()[:60])
    bad = encoded_set.replace(pairs=((str(broken), encoded_set.mask_paths[0]),) + encoded_set.pairs)
    with pytest.raises(DataError, match="broken.png: corrupt or unreadable image"):
        make_dataset(bad, image_size=32, batch_size=2)
    with pytest.raises(DataError, match="no image/mask pairs"):
        make_dataset(encoded_set.take(0), image_size=32, batch_size=2)


@pytest.mark.parametrize("channels", [1, 3])
def test_flip_left_right_mirrors_the_width_for_any_channel_count(channels):
    from seglab.data.transforms import flip_left_right

    tensor = np.arange(4 * 5 * channels, dtype=np.float32).reshape(4, 5, channels)
    np.testing.assert_array_equal(flip_left_right(tf.constant(tensor)).numpy(), tensor[:, ::-1])


@pytest.mark.parametrize("shrink", [1.5, 3.0], ids=["bilinear", "antialiased"])
def test_resize_image_rounds_like_clipping_would_on_extreme_pixels(shrink):
    """resize_image does not clip before rounding (bilinear weights keep 0..255): on black and
    white stripes, the hardest case for both kernels, it gives the clipped result exactly."""
    from seglab.data.transforms import resize_image

    image = np.zeros((90, 90, 3), np.uint8)
    image[:, ::2] = 255
    image[::3, :, 1] = 255
    size = (round(90 / shrink), round(90 / shrink))
    clipped = tf.clip_by_value(
        tf.image.resize(image, size, method="bilinear", antialias=shrink > 2), 0.0, 255.0
    )
    expected = tf.cast(tf.round(clipped), tf.uint8).numpy()
    np.testing.assert_array_equal(resize_image(image, size).numpy(), expected)


def test_flip_only_gives_the_same_tensors_with_and_without_cache(tmp_path):
    """Both paths flip the resized pair, and soft masks are converted after resizing in both,
    so a first (uncached) epoch and later (cached) epochs see the same flipped examples."""
    rng = np.random.default_rng(2)
    for index in range(8):
        image = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
        _write_pair(tmp_path, f"{index}", image, rng.integers(0, 256, (70, 90), dtype=np.uint8))
    source = load_paired_folder(tmp_path)
    flip = Augment(flip=True, scale=(1.0, 1.0))
    batches = [
        _one_batch(make_dataset(source, image_size=32, batch_size=8, augment=flip, seed=1, cache=c))
        for c in (False, True)
    ]
    for uncached, cached in zip(*batches, strict=True):
        np.testing.assert_array_equal(uncached.numpy(), cached.numpy())
    plain_masks = _one_batch(make_dataset(source, image_size=32, batch_size=8))[1].numpy()
    flipped = [
        not np.array_equal(m, p) for m, p in zip(batches[0][1].numpy(), plain_masks, strict=True)
    ]
    assert 0 < sum(flipped) < 8  # some flipped, some not
    flipped_back = np.where(
        np.array(flipped)[:, None, None, None], batches[0][1].numpy()[:, :, ::-1], batches[0][1]
    )
    np.testing.assert_array_equal(flipped_back, plain_masks)
    assert 0.0 <= plain_masks.min() and plain_masks.max() <= 1.0
