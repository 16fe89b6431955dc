"""Mask head (Mask R-CNN, FPN variant): 4 x conv, 2x2 deconv, 1x1 class-specific predictor."""
import keras
from keras import ops

from rethink_tf.modeling import init
from rethink_tf.modeling.heads.registry import register_head
from rethink_tf.modeling.layers import ConvNorm


@register_head("mask", "conv_upsample")
@keras.saving.register_keras_serializable(package="rethink_tf")
class MaskHead(keras.layers.Layer):
    """[B, R, S, S, C] -> mask logits [B, R, 2S, 2S, K] (K class channels, no background).

    num_convs x (3x3 conv + norm + ReLU, MSRA), 2x2 stride-2 deconv + ReLU (MSRA, bias),
    1x1 conv predictor (normal std 0.001). Logits are returned in float32.
    """

    def __init__(self, num_classes, num_convs=4, conv_dim=256, norm="gn", **kwargs):
        kwargs.setdefault("name", "mask_head")
        super().__init__(**kwargs)
        self._config = dict(num_classes=num_classes, num_convs=num_convs, conv_dim=conv_dim, norm=norm)
        self.convs = [ConvNorm(conv_dim, 3, norm=norm, name=f"conv{i + 1}") for i in range(num_convs)]
        self.deconv = keras.layers.Conv2DTranspose(conv_dim, 2, strides=2, activation="relu",
                                                   kernel_initializer=init.msra_fill(), name="deconv")
        self.predictor = keras.layers.Conv2D(num_classes, 1, kernel_initializer=init.normal(0.001),
                                             name="predictor")

    def call(self, x, training=None):
        b, r = ops.shape(x)[0], ops.shape(x)[1]  # R may be dynamic (graph-mode training)
        y = ops.reshape(x, (-1, x.shape[2], x.shape[3], x.shape[4]))
        for conv in self.convs:
            y = conv(y, training=training)
        y = self.predictor(self.deconv(y))
        y = ops.reshape(y, (b, r, y.shape[1], y.shape[2], y.shape[3]))
        return ops.cast(y, "float32")

    def get_config(self):
        return {**super().get_config(), **self._config}
