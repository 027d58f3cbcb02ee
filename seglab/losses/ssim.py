"""Structural similarity (SSIM) in ``keras.ops``, computed like ``tf.image.ssim``.

Wang et al., "Image quality assessment: from error visibility to structural similarity",
IEEE TIP 2004. A Gaussian window slides over each channel without padding ("valid"); the
SSIM map is averaged over height, width and channels into one value per image.
"""

import numpy as np
from keras import backend, ops


def gaussian_window(filter_size=11, filter_sigma=1.5):
    """The normalised 2-D Gaussian window, ``(filter_size, filter_size)`` float32 numpy."""
    coords = np.arange(filter_size, dtype=np.float64) - (filter_size - 1) / 2.0
    exponent = -0.5 * (coords[None, :] ** 2 + coords[:, None] ** 2) / filter_sigma**2
    window = np.exp(exponent - exponent.max())
    return (window / window.sum()).astype(np.float32)


def ssim(y_true, y_pred, max_val=1.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03):
    """SSIM between two batches of images ``(B, H, W, C)`` (or one image ``(H, W, C)``).

    Args:
        y_true, y_pred: images with values in ``[0, max_val]``; H and W must be at least
            ``filter_size``.
        max_val: the dynamic range of the values (1 for probabilities and unit images).
        filter_size, filter_sigma: size and standard deviation of the Gaussian window.
        k1, k2: the stabilising constants of the luminance and contrast terms.

    Returns:
        SSIM per image, shape ``(B,)`` (a scalar for a single image), in float32 (float64
        inputs stay float64). 1 means identical.
    """
    dtype = "float64" if "float64" in (_dtype_name(y_true), _dtype_name(y_pred)) else "float32"
    y_true = ops.cast(y_true, dtype)
    y_pred = ops.cast(y_pred, dtype)
    single_image = len(y_true.shape) == 3
    if single_image:
        y_true, y_pred = y_true[None], y_pred[None]
    if len(y_true.shape) != 4 or len(y_pred.shape) != 4:
        raise ValueError(
            "ssim expects images of shape (batch, height, width, channels) or (height, width, "
            f"channels); got {tuple(y_true.shape)} and {tuple(y_pred.shape)}."
        )
    for side in (*y_true.shape[1:3], *y_pred.shape[1:3]):
        if side is not None and side < filter_size:
            raise ValueError(
                f"ssim needs images at least filter_size={filter_size} pixels high and wide; "
                f"got {tuple(y_true.shape)} and {tuple(y_pred.shape)}."
            )

    # Filter the four local statistics in one convolution: each channel of each one becomes
    # a single-channel image in the batch, so the channel count need not be static.
    stats = ops.concatenate(
        [y_true, y_pred, y_true * y_pred, ops.square(y_true) + ops.square(y_pred)], axis=-1
    )
    stats = ops.transpose(stats, (0, 3, 1, 2))  # (B, 4C, H, W)
    batch_channels = ops.shape(stats)[:2]
    height, width = ops.shape(stats)[2], ops.shape(stats)[3]
    stats = ops.reshape(stats, (-1, height, width, 1))
    window = ops.cast(gaussian_window(filter_size, filter_sigma)[:, :, None, None], dtype)
    filtered = ops.conv(stats, window, strides=1, padding="valid")
    filtered = ops.reshape(
        filtered,
        (batch_channels[0], 4, -1, height - filter_size + 1, width - filter_size + 1),
    )
    mean_true, mean_pred = filtered[:, 0], filtered[:, 1]
    mean_product, mean_squares = filtered[:, 2], filtered[:, 3]

    c1 = (k1 * max_val) ** 2
    c2 = (k2 * max_val) ** 2
    # luminance = (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1); contrast-structure uses
    # cov_xy = E[xy] - mu_x mu_y, so 2 cov_xy / (var_x + var_y) with the same means.
    means_product = 2.0 * mean_true * mean_pred
    means_squares = ops.square(mean_true) + ops.square(mean_pred)
    luminance = (means_product + c1) / (means_squares + c1)
    contrast_structure = (2.0 * mean_product - means_product + c2) / (
        mean_squares - means_squares + c2
    )
    per_image = ops.mean(luminance * contrast_structure, axis=(1, 2, 3))
    return per_image[0] if single_image else per_image


def _dtype_name(x):
    return backend.standardize_dtype(x.dtype) if hasattr(x, "dtype") else "float32"
