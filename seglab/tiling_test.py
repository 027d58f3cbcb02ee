"""seglab.tiling with small fully convolutional models whose receptive field is known."""

import tracemalloc

import keras
import numpy as np
import pytest

from seglab.tiling import predict_flip_tta, predict_tiled, window_starts, window_step


def conv_model(radius=3, channels=2, seed=0, symmetric=False):
    """``radius`` 3x3 convolutions ("same" padding, stride 1): output pixels depend on the
    input within ``radius`` pixels, so the model is exact on a window away from its edges.
    ``symmetric``: kernels mirrored left-right, so the model commutes with horizontal flips."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for layer in range(radius):
        last = layer == radius - 1
        conv = keras.layers.Conv2D(
            channels if last else 8,
            3,
            padding="same",
            activation=None if last else "tanh",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + layer),
            bias_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=seed + 50 + layer),
        )
        x = conv(x)
        if symmetric:
            kernel, bias = conv.get_weights()
            conv.set_weights([(kernel + kernel[:, ::-1]) / 2, bias])
    return keras.Model(inputs, x)


def context_model(seed=0):
    """A 3x3 convolution plus the mean of the whole input: like a deep network, every output
    pixel depends on the whole window, so each window's prediction differs everywhere."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    local = keras.layers.Conv2D(
        1, 3, padding="same", kernel_initializer=keras.initializers.GlorotUniform(seed=seed)
    )(x)
    brightness = keras.layers.Conv2D(1, 1, kernel_initializer="ones")(x)
    context = keras.layers.GlobalAveragePooling2D(keepdims=True)(brightness)
    return keras.Model(inputs, local + 2.0 * context)


def whole(model, image):
    return model.predict_on_batch(image[None])[0]


def random_image(height, width, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (height, width, 3)).astype(np.float32)


def smooth_image(height, width):
    rows, columns = np.mgrid[0:height, 0:width]
    channels = [np.sin(columns / 30.0 + c) * np.cos(rows / 25.0 + c) for c in range(3)]
    return (127.0 + 100.0 * np.stack(channels, axis=-1)).astype(np.float32)


def exact_pixels(length, tile, starts, radius):
    """Pixels of one axis that every window covering them sees farther than ``radius`` from
    its cut edges (edges inside the image; windows on the image border pad as the model does)."""
    exact = np.ones(length, bool)
    for start in starts:
        end = start + tile
        if start > 0:
            exact[start : start + radius] = False
        if end < length:
            exact[end - radius : end] = False
    return exact


def ramp(distance, width):
    """The documented blending weight ``distance`` pixels inside a cut edge."""
    return 0.5 - 0.5 * np.cos(np.pi * (distance + 0.5) / width)


# 4x the tile in height; the width is not a multiple of the step, so the last window is flush.
TILE, HEIGHT, WIDTH, RADIUS = 64, 256, 280, 3
OVERLAP = 0.25  # 16 pixels >= 2 * RADIUS: every pixel has a window that sees it exactly
ROW_STARTS = [0, 48, 96, 144, 192]
COLUMN_STARTS = [0, 48, 96, 144, 192, 216]


@pytest.fixture(scope="module")
def receptive_field_case():
    model = conv_model(RADIUS)
    image = random_image(HEIGHT, WIDTH)
    full = whole(model, image)
    # The largest error of any single window: what hard stitching would show at a cut edge.
    window_error = max(
        np.abs(
            whole(model, image[y : y + TILE, x : x + TILE]) - full[y : y + TILE, x : x + TILE]
        ).max()
        for y in ROW_STARTS
        for x in COLUMN_STARTS
    )
    return model, image, full, window_error


def test_windows_lie_on_a_regular_grid_with_the_last_flush():
    assert window_step(TILE, OVERLAP) == 48
    assert window_starts(HEIGHT, TILE, 48) == ROW_STARTS
    assert window_starts(WIDTH, TILE, 48) == COLUMN_STARTS
    assert window_starts(64, 64, 48) == [0]
    assert window_starts(20, 64, 48) == [0]
    # The step is rounded down to the model's stride so windows share its grid.
    assert window_step(256, 0.25, multiple=32) == 192
    assert window_step(256, 0.1, multiple=32) == 224  # 230 rounded down
    assert window_step(64, 0.9, multiple=32) == 32  # at least one stride


def test_tiled_prediction_matches_the_whole_image_away_from_tile_edges(receptive_field_case):
    """A model with receptive radius r gives a window's exact whole-image output farther than
    r from the window's cut edges. Pixels that every covering window sees that way are exact
    (float32 rounding: 1e-5). Elsewhere, along one axis at most one covering window sees the
    pixel within r of its cut edge (the overlap of 16 >= 2r and no three windows overlap), with
    weight at most ramp(r-1) = 0.059 of a total >= 1, so the error is at most
    (1 - (1 - ramp(r-1))^2) = 0.115 of the largest single-window error."""
    model, image, full, window_error = receptive_field_case
    tiled = predict_tiled(model, image, TILE, overlap=OVERLAP, batch_size=4)
    assert tiled.shape == full.shape and tiled.dtype == np.float32
    error = np.abs(tiled - full).max(axis=-1)

    exact = np.outer(
        exact_pixels(HEIGHT, TILE, ROW_STARTS, RADIUS),
        exact_pixels(WIDTH, TILE, COLUMN_STARTS, RADIUS),
    )
    assert exact.mean() > 0.8
    assert error[exact].max() < 1e-5  # measured 1.2e-7

    overlap_pixels = 16
    bound = 1 - (1 - ramp(RADIUS - 1, overlap_pixels)) ** 2
    assert window_error > 0.5  # the windows' own edge errors are large (1.23) ...
    assert error[~exact].max() <= bound * window_error  # ... blending hides them: 0.016
    assert error[~exact].max() > 1e-3  # the check can fail: these pixels are not exact


def test_blending_leaves_no_seams_in_the_error(receptive_field_case):
    """The error of the tiled output changes smoothly from pixel to pixel: by at most twice
    the bound above (each neighbour is within it), whereas stitching windows without overlap
    jumps by about the full single-window error at each cut."""
    model, image, full, window_error = receptive_field_case
    bound = 1 - (1 - ramp(RADIUS - 1, 16)) ** 2

    def largest_step(tiled):
        error = tiled - full
        return max(np.abs(np.diff(error, axis=axis)).max() for axis in (0, 1))

    blended = predict_tiled(model, image, TILE, overlap=OVERLAP)
    stitched = predict_tiled(model, image, TILE, overlap=0.0)
    assert largest_step(stitched) > 0.5 * window_error  # measured 1.95: visible seams
    assert largest_step(blended) <= 2 * bound * window_error  # measured 0.021


def test_tile_boundaries_do_not_stand_out_when_every_window_differs():
    """With a window-wide context (as in deep networks) each window predicts differently
    everywhere; blending makes the output no steeper across the cut lines than elsewhere,
    whereas stitching without overlap steps at the cuts."""
    model = context_model()
    image = smooth_image(128, 128)

    def steps_at_and_away_from_cuts(overlap):
        tiled = predict_tiled(model, image, 32, overlap=overlap, batch_size=8)[..., 0]
        starts = window_starts(128, 32, window_step(32, overlap))
        cuts = {s for s in starts if s > 0} | {s + 32 for s in starts if s + 32 < 128}
        # Steps between neighbouring columns, away from the image border (zero padding).
        # A cut between columns c-1 and c: the steps that touch either column (the windows'
        # own zero padding changes the pixel on each side of the cut).
        steps = np.abs(np.diff(tiled, axis=1))[2:-2]
        at_cut = np.zeros(steps.shape[1], bool)
        at_cut[[c + offset for c in cuts for offset in (-2, -1, 0)]] = True
        at_cut[:2] = at_cut[-2:] = False
        away = ~at_cut
        away[:2] = away[-2:] = False
        return steps[:, at_cut].max(), steps[:, away].max()

    at_cuts, elsewhere = steps_at_and_away_from_cuts(0.25)
    assert at_cuts <= elsewhere  # measured 0.066 vs 0.161 (the ramps)
    at_cuts, elsewhere = steps_at_and_away_from_cuts(0.0)
    assert at_cuts > 5 * elsewhere  # stitched: 1.64 vs 0.026, a seam at every cut


def test_without_overlap_a_pointwise_model_is_exact():
    # A 1x1 convolution sees one pixel: any tiling gives the whole-image output exactly.
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(3, 1, kernel_initializer=keras.initializers.GlorotUniform(1))(
        inputs
    )
    model = keras.Model(inputs, outputs)
    image = random_image(70, 45)
    for overlap in (0.0, 0.5):
        tiled = predict_tiled(model, image, 16, overlap=overlap)
        np.testing.assert_allclose(tiled, whole(model, image), atol=1e-4, rtol=1e-5)


def test_an_image_smaller_than_the_tile_is_reflected_to_the_tile_and_cropped_back():
    model = conv_model(2, channels=1)
    image = random_image(20, 27)
    padded = np.pad(image, ((22, 22), (18, 19), (0, 0)), mode="reflect")  # centred to 64x64
    expected = whole(model, padded)[22:42, 18:45]
    tiled = predict_tiled(model, image, 64)
    assert tiled.shape == (20, 27, 1)
    np.testing.assert_allclose(tiled, expected, atol=1e-5)


def test_one_dimension_smaller_than_the_tile_is_padded_only_along_it():
    model = conv_model(1, channels=1)
    image = random_image(10, 100)
    tiled = predict_tiled(model, image, 32, overlap=0.5)
    assert tiled.shape == (10, 100, 1)
    # A 3x3 model on the rows reflected to 32: rows inside stay as on the padded image.
    padded = np.pad(image, ((11, 11), (0, 0), (0, 0)), mode="reflect")
    expected = whole(model, padded)[11:21]
    np.testing.assert_allclose(tiled, expected, atol=0.05)
    # Columns 2 pixels or more from every cut edge are exact.
    assert np.abs(tiled - expected)[:, :14].max() < 1e-5


class CountingModel:
    """Stands in for a model: records the batches it gets, outputs the red channel / 255."""

    def __init__(self):
        self.batch_shapes = []

    def predict_on_batch(self, batch):
        self.batch_shapes.append(batch.shape)
        return [batch[..., :1] / 255.0, np.zeros_like(batch[..., :1])]


def test_a_large_image_goes_through_the_model_a_few_windows_at_a_time():
    image = random_image(2048, 2048)
    model = CountingModel()
    tracemalloc.start()
    try:
        tiled = predict_tiled(model, image, 256, overlap=0.25, batch_size=4, flip=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    windows = len(window_starts(2048, 256, 192)) ** 2  # 11 x 11
    assert windows == 121
    assert len(model.batch_shapes) == 2 * -(-windows // 4)  # two flip passes per batch
    assert all(shape[0] <= 4 and shape[1:] == (256, 256, 3) for shape in model.batch_shapes)
    # The blended output is exact for a pointwise model.
    np.testing.assert_allclose(tiled[..., 0], image[..., 0] / 255.0, atol=1e-6)
    # Memory: the one-channel result (16 MiB) plus a few batches (3 MiB each; measured 27 MiB
    # in all), never a copy of the RGB image (48 MiB) or the stack of all windows (95 MiB).
    assert peak < 2048 * 2048 * 4 + 24 * 2**20


def test_progress_reports_windows_done():
    calls = []
    predict_tiled(
        CountingModel(),
        random_image(100, 100),
        32,
        batch_size=5,
        progress=lambda done, total: calls.append((done, total)),
    )
    # Steps of 24: starts 0, 24, 48, 68 per axis, 16 windows in batches of 5.
    assert calls == [(5, 16), (10, 16), (15, 16), (16, 16)]


def test_output_index_chooses_the_output():
    model = CountingModel()
    image = random_image(40, 40)
    assert np.all(predict_tiled(model, image, 32, output_index=1) == 0)
    with pytest.raises(ValueError, match="out of range: the model has 2 outputs"):
        predict_tiled(model, image, 32, output_index=2)


def test_flip_tta_of_a_mirror_symmetric_model_is_its_plain_output():
    model = conv_model(2, symmetric=True)
    image = random_image(40, 56)
    plain = whole(model, image)
    np.testing.assert_allclose(predict_flip_tta(model, image), plain, atol=1e-5)
    tiled = predict_tiled(model, image, 32, flip=True)
    np.testing.assert_allclose(tiled, predict_tiled(model, image, 32), atol=1e-5)
    # Not symmetric up-down: the vertical passes differ from the plain output.
    assert np.abs(predict_flip_tta(model, image, flip="vertical") - plain).max() > 1e-2


def test_flip_tta_is_the_mean_of_the_flipped_passes():
    model = conv_model(2)
    image = random_image(40, 56)

    def flipped_pass(axes):
        return np.flip(whole(model, np.flip(image, axes).copy()), axes)

    plain = whole(model, image)
    horizontal = (plain + flipped_pass(1)) / 2
    assert np.abs(horizontal - plain).max() > 1e-2  # the check can fail
    np.testing.assert_allclose(predict_flip_tta(model, image), horizontal, atol=1e-5)
    np.testing.assert_allclose(predict_flip_tta(model, image, flip=True), horizontal, atol=1e-5)
    both = (plain + flipped_pass(1) + flipped_pass(0) + flipped_pass((0, 1))) / 4
    np.testing.assert_allclose(predict_flip_tta(model, image, flip="both"), both, atol=1e-5)
    # A batch works as well as one image.
    batch = np.stack([image, image[::-1]])
    outputs = predict_flip_tta(model, batch)
    np.testing.assert_allclose(outputs[0], horizontal, atol=1e-5)


def test_tiled_flip_tta_flips_each_window():
    """Flipping each window and its output back is tiling the mirrored model."""
    model = conv_model(2)
    image = random_image(60, 90)

    def mirrored(batch):
        return np.flip(model.predict_on_batch(np.flip(batch, 2).copy()), 2)

    expected = (predict_tiled(model, image, 32) + predict_tiled(mirrored, image, 32)) / 2
    np.testing.assert_allclose(predict_tiled(model, image, 32, flip=True), expected, atol=1e-5)


def test_a_fixed_size_model_takes_its_own_tile_size():
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same")(inputs))
    image = random_image(50, 70)
    assert predict_tiled(model, image).shape == (50, 70, 2)  # tile_size: the model's 32
    with pytest.raises(ValueError, match="height 32 only, so the tile height must be 32"):
        predict_tiled(model, image, 64)
    with pytest.raises(ValueError, match="takes any input size: give tile_size"):
        predict_tiled(conv_model(1), image)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"tile_size": 100, "multiple": 32}, "100 is not a multiple of 32.*use 96 or 128"),
        ({"tile_size": 16, "multiple": 32}, "16 is not a multiple of 32.*use 32"),
        ({"tile_size": 64, "overlap": 16}, r"fraction of the tile .* in \[0, 1\)"),
        ({"tile_size": 64, "overlap": 1.0}, r"in \[0, 1\)"),
        ({"tile_size": 2, "overlap": 0.8}, "leaves no step between windows"),
        ({"tile_size": 0}, "tile_size must be a positive integer"),
        ({"tile_size": (64, 64, 3)}, "tile_size must be a positive integer or"),
        ({"tile_size": 64, "batch_size": 0}, "batch_size must be a positive integer"),
        ({"tile_size": 64, "flip": "diagonal"}, "flip must be False, True"),
        ({"tile_size": 64, "multiple": 0}, "multiple must be a positive integer"),
    ],
)
def test_bad_arguments_say_what_is_wrong(arguments, message):
    with pytest.raises(ValueError, match=message):
        predict_tiled(CountingModel(), random_image(80, 80), **arguments)


def test_bad_images_and_outputs_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"image must be \(height, width, channels\)"):
        predict_tiled(CountingModel(), np.zeros((80, 80), np.float32), 32)

    def shrinking_model(batch):
        return batch[:, ::2, ::2, :1]

    with pytest.raises(ValueError, match="output must have the size of its input"):
        predict_tiled(shrinking_model, random_image(40, 40), 32)
