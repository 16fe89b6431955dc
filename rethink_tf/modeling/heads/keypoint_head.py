"""Keypoint head (Keypoint R-CNN, Detectron's KRCNN "v1convX" head with deconv output + 2x upsample)."""
import keras
import numpy as np
from keras import ops

from rethink_tf.modeling import init
from rethink_tf.modeling.heads.registry import register_head
from rethink_tf.modeling.layers import ConvNorm


def bilinear_upsample_kernel(channels, factor=2):
    """Detectron's fixed BilinearInterpolation deconv kernel [2f, 2f, C, C] (channel-diagonal; with
    stride f and padding f / 2 it upsamples each channel bilinearly, zeros outside the map)."""
    size = 2 * factor
    centre = factor - 0.5
    taps = 1.0 - np.abs(np.arange(size) - centre) / factor
    kernel = np.zeros((size, size, channels, channels), np.float32)
    kernel[:, :, np.arange(channels), np.arange(channels)] = np.outer(taps, taps)[:, :, None]
    return kernel


@register_head("keypoint", "conv_deconv")
@keras.saving.register_keras_serializable(package="rethink_tf")
class KeypointHead(keras.layers.Layer):
    """[B, R, S, S, C] -> heatmap logits float32 [B, R, 4S, 4S, K] (K keypoints, channels last).

    num_convs x (3x3 conv conv_dim (+ norm) + ReLU, MSRA), a 4x4 stride-2 deconv to K channels
    (MSRA, bias 0: Detectron's USE_DECONV_OUTPUT with KRCNN.CONV_INIT = MSRAFill), then a fixed 2x
    bilinear upsample (Detectron's BilinearInterpolation, UP_SCALE 2): 14 -> 28 -> 56.
    """

    def __init__(self, num_keypoints=17, num_convs=8, conv_dim=512, norm="none", **kwargs):
        kwargs.setdefault("name", "keypoint_head")
        super().__init__(**kwargs)
        self._config = dict(num_keypoints=num_keypoints, num_convs=num_convs, conv_dim=conv_dim, norm=norm)
        self.convs = [ConvNorm(conv_dim, 3, norm=norm, name=f"conv_fcn{i + 1}") for i in range(num_convs)]
        self.predictor = keras.layers.Conv2DTranspose(num_keypoints, 4, strides=2, padding="same",
                                                      kernel_initializer=init.msra_fill(), name="predictor")
        self._upsample = bilinear_upsample_kernel(num_keypoints)

    def call(self, x, training=None):
        b, r = ops.shape(x)[0], ops.shape(x)[1]  # R may be dynamic (graph-mode training)
        y = ops.reshape(x, (-1, x.shape[2], x.shape[3], x.shape[4]))
        for conv in self.convs:
            y = conv(y, training=training)
        y = ops.cast(self.predictor(y), "float32")
        y = ops.conv_transpose(y, ops.convert_to_tensor(self._upsample), strides=2, padding="same")
        y = ops.reshape(y, (b, r, y.shape[1], y.shape[2], y.shape[3]))
        return y

    def get_config(self):
        return {**super().get_config(), **self._config}
