"""ResNet / ResNeXt backbone, outputs C2-C5.

Two switches cover the published ImageNet weights (set by `rethink_tf.import_weights`):
- `stride_in_1x1`: where a stage's first block downsamples. False (default): on the 3x3 conv
  (torchvision, detectron2, Detectron's GN and ResNeXt models). True: on the first 1x1 conv (the
  original MSRA/Caffe ResNets: Detectron's R-50.pkl / R-101.pkl, keras.applications ResNet50/101/152).
- `conv_bias`: a bias on every conv, also before a norm (keras.applications' ResNets); default off
  (a bias before a norm is redundant).

Widths follow detectron2's parametrization: stage i (i = 0..3 for res2..res5) has bottleneck
width groups * width_per_group * 2^i and output width 4 * base_width * 2^i. ResNet-50:
base_width 64, groups 1, width_per_group 64. ResNeXt-101 32x8d: groups 32, width_per_group 8.
Narrow test models only change base_width / width_per_group (and optionally block counts).
"""
import keras

from rethink_tf.modeling.layers import ConvNorm

BLOCKS_PER_DEPTH = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


@keras.saving.register_keras_serializable(package="rethink_tf")
class Bottleneck(keras.layers.Layer):
    """1x1 -> 3x3 (stride, groups) -> 1x1 bottleneck; conv->norm with no ReLU before the add.

    [B, H, W, Cin] -> [B, H / stride, W / stride, out_channels].
    """

    def __init__(self, bottleneck_channels, out_channels, strides=1, groups=1, norm="gn",
                 zero_init_last_norm=False, project=False, stride_in_1x1=False, conv_bias=False,
                 **kwargs):
        super().__init__(**kwargs)
        self._config = dict(bottleneck_channels=bottleneck_channels, out_channels=out_channels,
                            strides=strides, groups=groups, norm=norm,
                            zero_init_last_norm=zero_init_last_norm, project=project,
                            stride_in_1x1=stride_in_1x1, conv_bias=conv_bias)
        bias = True if conv_bias else None
        stride_1x1, stride_3x3 = (strides, 1) if stride_in_1x1 else (1, strides)
        self.conv1 = ConvNorm(bottleneck_channels, 1, strides=stride_1x1, norm=norm, use_bias=bias,
                              name="conv1")
        self.conv2 = ConvNorm(bottleneck_channels, 3, strides=stride_3x3, groups=groups, norm=norm,
                              use_bias=bias, name="conv2")
        self.conv3 = ConvNorm(out_channels, 1, norm=norm, activation=False, use_bias=bias,
                              zero_init_norm=zero_init_last_norm, name="conv3")
        self.shortcut = (ConvNorm(out_channels, 1, strides=strides, norm=norm, activation=False,
                                  use_bias=bias, name="shortcut") if project else None)

    def call(self, x, training=None):
        y = self.conv1(x, training=training)
        y = self.conv2(y, training=training)
        y = self.conv3(y, training=training)
        s = self.shortcut(x, training=training) if self.shortcut is not None else x
        return keras.ops.relu(y + s)

    def get_config(self):
        return {**super().get_config(), **self._config}


@keras.saving.register_keras_serializable(package="rethink_tf")
class ResNet(keras.layers.Layer):
    """ResNet/ResNeXt body. images [B, H, W, 3] -> {2: C2 (stride 4), ..., 5: C5 (stride 32)}.

    Args:
      depth: 50, 101 or 152.
      norm: norm kind for every conv (see norm.build_norm).
      base_width: stem width; stage outputs are 4 * base_width * 2^i.
      groups: 3x3 conv groups (32 for ResNeXt 32x8d).
      width_per_group: bottleneck width per group at res2 (None: base_width, i.e. plain ResNet).
      zero_init_last_norm: zero-γ on each block's last norm (off by default; modeling/README.md).
      freeze_at: 0 trains everything (from scratch); k >= 1 freezes the stem and res2..res(k)
        (Detectron's FREEZE_AT, 2 for the fine-tuning baseline), their norm layers included: Detectron
        stops the gradient at the output of res(k), so neither the convs nor the GN γ/β before it train.
      blocks_per_stage: overrides the block counts implied by `depth` (tiny test models).
      stride_in_1x1: downsample on each stage's first 1x1 conv instead of its 3x3 (module docstring).
      conv_bias: a bias on every conv, the stem's included, also before a norm.
    """

    def __init__(self, depth=50, norm="gn", base_width=64, groups=1, width_per_group=None,
                 zero_init_last_norm=False, freeze_at=0, blocks_per_stage=None,
                 stride_in_1x1=False, conv_bias=False, **kwargs):
        kwargs.setdefault("name", "resnet")
        super().__init__(**kwargs)
        if blocks_per_stage is None:
            if depth not in BLOCKS_PER_DEPTH:
                raise ValueError(f"ResNet depth must be one of {sorted(BLOCKS_PER_DEPTH)}, got {depth}.")
            blocks_per_stage = BLOCKS_PER_DEPTH[depth]
        blocks_per_stage = tuple(int(b) for b in blocks_per_stage)
        if len(blocks_per_stage) != 4 or min(blocks_per_stage) < 1:
            raise ValueError(f"blocks_per_stage must be 4 positive ints, got {blocks_per_stage}.")
        width_per_group = base_width if width_per_group is None else width_per_group
        self._config = dict(depth=depth, norm=norm, base_width=base_width, groups=groups,
                            width_per_group=width_per_group,
                            zero_init_last_norm=zero_init_last_norm, freeze_at=freeze_at,
                            blocks_per_stage=blocks_per_stage, stride_in_1x1=stride_in_1x1,
                            conv_bias=conv_bias)
        self.stem_conv = ConvNorm(base_width, 7, strides=2, norm=norm,
                                  use_bias=True if conv_bias else None, name="stem")
        # Max-pool padding of 1 with zeros equals -inf padding here: inputs are post-ReLU (>= 0).
        self.stem_pad = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")
        self.stem_pool = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_pool")
        self.stages = []
        in_channels = base_width
        for i, num_blocks in enumerate(blocks_per_stage):
            out_channels = 4 * base_width * 2 ** i
            bottleneck = groups * width_per_group * 2 ** i
            blocks = []
            for j in range(num_blocks):
                strides = 2 if (j == 0 and i > 0) else 1
                blocks.append(Bottleneck(
                    bottleneck, out_channels, strides=strides, groups=groups, norm=norm,
                    zero_init_last_norm=zero_init_last_norm, stride_in_1x1=stride_in_1x1,
                    conv_bias=conv_bias,
                    project=(j == 0 and (strides != 1 or in_channels != out_channels)),
                    name=f"res{i + 2}_{j}"))
                in_channels = out_channels
            self.stages.append(blocks)
        if freeze_at >= 1:
            self.stem_conv.trainable = False
            for blocks in self.stages[: freeze_at - 1]:
                for block in blocks:
                    block.trainable = False
        self.out_channels = {i + 2: 4 * base_width * 2 ** i for i in range(4)}
        self.strides = {2: 4, 3: 8, 4: 16, 5: 32}

    def call(self, images, training=None):
        x = self.stem_conv(images, training=training)
        x = self.stem_pool(self.stem_pad(x))
        features = {}
        for i, blocks in enumerate(self.stages):
            for block in blocks:
                x = block(x, training=training)
            features[i + 2] = x
        return features

    def get_config(self):
        return {**super().get_config(), **self._config}
