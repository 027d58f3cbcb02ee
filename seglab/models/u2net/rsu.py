"""The ReSidual U-block (RSU) of U²-Net and its conv-BN-ReLU unit.

An RSU-L block is a small U-Net of height L inside one layer:

- a 3×3 conv-BN-ReLU projects the input to ``out_channels`` (the residual branch);
- an encoder of L-1 conv-BN-ReLU units with ``mid_channels``, the first L-2 followed by a 2×2
  max-pool (ceil mode), then a bottom unit with dilation 2;
- a decoder that concatenates (deeper, skip), applies a conv-BN-ReLU and upsamples bilinearly to
  the next skip's size; the last decoder unit maps back to ``out_channels``;
- the output is decoder output + residual branch.

With ``dilated=True`` (RSU-4F) pooling and upsampling are replaced by growing dilations
1, 2, 4, 8 in the encoder and 4, 2, 1 in the decoder, so the resolution never changes.
"""

import keras
from keras import layers

from seglab.models.blocks import ResizeLike

# PyTorch's BatchNorm2d defaults (momentum 0.1 there is 0.9 here), so weights ported from the
# official models behave the same.
_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="seglab")
class ConvBNReLU(layers.Layer):
    """3×3 convolution (with bias, "same" padding, optional dilation), batch norm and ReLU.

    The official code calls this unit REBNCONV.
    """

    def __init__(self, filters, dilation_rate=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.dilation_rate = dilation_rate
        self.conv = layers.Conv2D(
            filters,
            3,
            padding="same",
            dilation_rate=dilation_rate,
            dtype=self.dtype_policy,
            name="conv",
        )
        self.bn = layers.BatchNormalization(
            epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, dtype=self.dtype_policy, name="bn"
        )
        self.relu = layers.ReLU(dtype=self.dtype_policy, name="relu")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.compute_output_shape(input_shape))
        self.built = True

    def call(self, inputs, training=None):
        return self.relu(self.bn(self.conv(inputs), training=training))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "dilation_rate": self.dilation_rate,
        }


@keras.saving.register_keras_serializable(package="seglab")
class RSU(layers.Layer):
    """Residual U-block RSU-``height`` (``dilated=True`` gives RSU-4F).

    Works on any spatial size: pooling uses ceil mode and every upsampling resizes to the
    skip connection's actual size, so odd sizes are fine.

    Args:
        height: L, the number of conv-BN-ReLU units on the encoder path including the
            bottom one (4 to 7 in U²-Net). At least 2.
        mid_channels: channels inside the U (M in the paper).
        out_channels: channels of the output and of the residual branch.
        dilated: if True, dilations 1, 2, 4, … replace pooling (RSU-4F).
    """

    def __init__(self, height, mid_channels, out_channels, dilated=False, **kwargs):
        super().__init__(**kwargs)
        if int(height) != height or height < 2:
            raise ValueError(f"RSU height must be an integer >= 2, got {height!r}")
        self.height = int(height)
        self.mid_channels = mid_channels
        self.out_channels = out_channels
        self.dilated = dilated

        if dilated:
            encoder_dilations = [2**i for i in range(self.height)]
            decoder_dilations = encoder_dilations[-2::-1]
        else:
            encoder_dilations = [1] * (self.height - 1) + [2]
            decoder_dilations = [1] * (self.height - 1)

        def unit(filters, dilation, name):
            return ConvBNReLU(filters, dilation, dtype=self.dtype_policy, name=name)

        self.input_unit = unit(out_channels, 1, "conv_in")
        self.encoder_units = [
            unit(mid_channels, d, f"conv{i + 1}") for i, d in enumerate(encoder_dilations)
        ]
        # decoder_units[0] is the deepest (conv{L-1}d); the last one maps back to out_channels.
        self.decoder_units = [
            unit(
                out_channels if level == 1 else mid_channels,
                decoder_dilations[self.height - 1 - level],
                f"conv{level}d",
            )
            for level in range(self.height - 1, 0, -1)
        ]
        if not dilated:
            # "same" padding with stride 2 is PyTorch's ceil_mode=True: ceil(n / 2) outputs.
            self.pool = layers.MaxPooling2D(
                2, strides=2, padding="same", dtype=self.dtype_policy, name="pool"
            )
            self.upsample = ResizeLike(dtype=self.dtype_policy, name="upsample")
        self.concat = layers.Concatenate(axis=-1, dtype=self.dtype_policy, name="concat")

    def build(self, input_shape):
        batch_and_space = tuple(input_shape[:-1])
        self.input_unit.build(input_shape)
        channels = self.out_channels
        for encoder_unit in self.encoder_units:
            encoder_unit.build((*batch_and_space, channels))
            channels = self.mid_channels
        for decoder_unit in self.decoder_units:
            decoder_unit.build((*batch_and_space, 2 * self.mid_channels))
        self.built = True

    def call(self, inputs, training=None):
        residual = self.input_unit(inputs, training=training)

        skips = []
        x = residual
        last = self.height - 1
        for level, encoder_unit in enumerate(self.encoder_units):
            x = encoder_unit(x, training=training)
            if level < last:
                skips.append(x)
            # Pool after all but the last two encoder units (the bottom one is dilated instead).
            if not self.dilated and level < last - 1:
                x = self.pool(x)

        for step, (decoder_unit, skip) in enumerate(
            zip(self.decoder_units, reversed(skips), strict=True)
        ):
            # The bottom unit already has the deepest skip's size.
            if step > 0 and not self.dilated:
                x = self.upsample([x, skip])
            x = decoder_unit(self.concat([x, skip]), training=training)
        return x + residual

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.out_channels)

    def get_config(self):
        return {
            **super().get_config(),
            "height": self.height,
            "mid_channels": self.mid_channels,
            "out_channels": self.out_channels,
            "dilated": self.dilated,
        }
