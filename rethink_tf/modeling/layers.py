"""Small building blocks shared by backbones and heads."""
import keras

from rethink_tf.modeling import init
from rethink_tf.modeling.norm import build_norm, has_norm


@keras.saving.register_keras_serializable(package="rethink_tf")
class ConvNorm(keras.layers.Layer):
    """Conv2D (+ norm) (+ ReLU), with detectron2's explicit symmetric padding.

    Input [B, H, W, Cin] -> [B, ceil(H / stride), ceil(W / stride), filters]. The conv has a bias
    only when no norm follows, unless `use_bias` says otherwise (Keras's caffe-style ResNets have a
    bias before every BatchNorm). Padding is (kernel_size - 1) // 2 on every side, as in
    Caffe2/detectron2, so strided convs sample the same pixels as the reference models.
    """

    def __init__(self, filters, kernel_size, strides=1, groups=1, norm="none", activation=True,
                 zero_init_norm=False, kernel_initializer=None, use_bias=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.groups = groups
        self.norm_kind = norm
        self.activation = activation
        self.zero_init_norm = zero_init_norm
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer or init.msra_fill())
        pad = (kernel_size - 1) // 2
        # Stride 1: "same" pads symmetrically and avoids an explicit Pad (and its Slice in the
        # backward pass, about 2.5% of a GN 4conv1fc train step). Strided: TF's "same" would pad
        # asymmetrically (bottom/right only), so the explicit symmetric pad stays.
        self.pad = keras.layers.ZeroPadding2D(pad, name="pad") if pad and strides != 1 else None
        self.conv = keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding="same" if strides == 1 else "valid",
            groups=groups,
            use_bias=(not has_norm(norm)) if use_bias is None else bool(use_bias),
            kernel_initializer=self.kernel_initializer,
            bias_initializer="zeros", name="conv")
        self.norm = build_norm(norm, name="norm", zero_init=zero_init_norm) if has_norm(norm) else None

    def call(self, x, training=None):
        if self.pad is not None:
            x = self.pad(x)
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, training=training)
        if self.activation:
            x = keras.ops.relu(x)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                      groups=self.groups, norm=self.norm_kind, activation=self.activation,
                      zero_init_norm=self.zero_init_norm, use_bias=self.use_bias,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


def serialize(layer):
    """A sub-layer for a parent's `get_config` (None stays None). Without its build config: the parent
    builds its parts (MaskRCNN.build_networks) before Keras loads the weights."""
    if layer is None:
        return None
    config = keras.saving.serialize_keras_object(layer)
    config.pop("build_config", None)
    return config


def deserialize(value):
    """The inverse of `serialize` for a parent's __init__: a config dict -> the layer; a layer or None as is."""
    return keras.saving.deserialize_keras_object(value) if isinstance(value, dict) else value
