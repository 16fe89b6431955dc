"""RPN head shared across pyramid levels (Detectron): 3x3 conv + ReLU, 1x1 objectness and deltas."""
import keras
from keras import ops

from rethink_tf.modeling import init


@keras.saving.register_keras_serializable(package="rethink_tf")
class RPNHead(keras.layers.Layer):
    """{level: [B, H_l, W_l, C]} -> ({level: logits [B, H_l*W_l*A]}, {level: deltas [B, H_l*W_l*A, 4]}).

    Output order is (y, x, anchor), matching rethink_tf.ops.anchors.multilevel_anchors. No norm
    (modeling/README.md); all three convs are normal(std 0.01), bias 0.

    Args:
      num_anchors: anchors per location A (3 on FPN levels; 9 for single-level VGG).
      num_channels: width of the shared 3x3 conv (= input width).
    """

    def __init__(self, num_anchors=3, num_channels=256, **kwargs):
        kwargs.setdefault("name", "rpn_head")
        super().__init__(**kwargs)
        self.num_anchors = num_anchors
        self.num_channels = num_channels
        self.conv = keras.layers.Conv2D(num_channels, 3, padding="same", activation="relu",
                                        kernel_initializer=init.normal(0.01), name="conv")
        self.objectness = keras.layers.Conv2D(num_anchors, 1, kernel_initializer=init.normal(0.01),
                                              name="objectness")
        self.deltas = keras.layers.Conv2D(4 * num_anchors, 1, kernel_initializer=init.normal(0.01),
                                          name="deltas")

    def call(self, features):
        logits, deltas = {}, {}
        for level, x in features.items():
            h = self.conv(x)
            b = ops.shape(h)[0]
            # A_l = H * W * anchors spelled out: with a dynamic batch (serving), -1 would leave A_l
            # unknown, and the proposal top-k needs it static.
            anchors = -1 if None in h.shape[1:3] else h.shape[1] * h.shape[2] * self.num_anchors
            logits[level] = ops.reshape(self.objectness(h), (b, anchors))
            deltas[level] = ops.reshape(self.deltas(h), (b, anchors, 4))
        return logits, deltas

    def get_config(self):
        return {**super().get_config(), "num_anchors": self.num_anchors,
                "num_channels": self.num_channels}
