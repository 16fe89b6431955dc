"""Box heads (RoI features -> a 1024-d vector per RoI) and the box predictor."""
import keras
from keras import ops

from rethink_tf.modeling import init
from rethink_tf.modeling.heads.registry import register_head
from rethink_tf.modeling.layers import ConvNorm


def _flatten_rois(x):
    """[B, R, S, S, C] -> [B*R, S, S, C] (static shapes)."""
    s = x.shape
    return ops.reshape(x, (-1, s[2], s[3], s[4]))


@register_head("box", "2fc")
@keras.saving.register_keras_serializable(package="rethink_tf")
class TwoFCHead(keras.layers.Layer):
    """[B, R, S, S, C] -> [B, R, fc_dim]: flatten, fc + ReLU, fc + ReLU (Xavier, no norm).

    The frozen-BN baseline's head (fc_dim 1024) and VGG-16's fc6/fc7 (fc_dim 4096).
    """

    def __init__(self, fc_dim=1024, num_fcs=2, **kwargs):
        kwargs.setdefault("name", "box_head")
        super().__init__(**kwargs)
        self.fc_dim, self.num_fcs = fc_dim, num_fcs
        self.fcs = [keras.layers.Dense(fc_dim, activation="relu", kernel_initializer=init.xavier_fill(),
                                       name=f"fc{i + 1}") for i in range(num_fcs)]

    def call(self, x, training=None):
        b, r = x.shape[0], x.shape[1]
        x = ops.reshape(x, (-1 if b is None else b, r, x.shape[2] * x.shape[3] * x.shape[4]))
        for fc in self.fcs:
            x = fc(x)
        return x

    def get_config(self):
        return {**super().get_config(), "fc_dim": self.fc_dim, "num_fcs": self.num_fcs}


@register_head("box", "4conv1fc")
@keras.saving.register_keras_serializable(package="rethink_tf")
class ConvFCHead(keras.layers.Layer):
    """[B, R, S, S, C] -> [B, R, fc_dim]: num_convs x (3x3 conv + norm + ReLU), flatten, fc + ReLU.

    Convs are MSRA-filled (bias only without norm); the fc is Xavier with no norm (modeling/README.md).
    """

    def __init__(self, num_convs=4, conv_dim=256, fc_dim=1024, num_fcs=1, norm="gn", **kwargs):
        kwargs.setdefault("name", "box_head")
        super().__init__(**kwargs)
        self._config = dict(num_convs=num_convs, conv_dim=conv_dim, fc_dim=fc_dim, num_fcs=num_fcs,
                            norm=norm)
        self.convs = [ConvNorm(conv_dim, 3, norm=norm, name=f"conv{i + 1}") for i in range(num_convs)]
        self.fcs = [keras.layers.Dense(fc_dim, activation="relu", kernel_initializer=init.xavier_fill(),
                                       name=f"fc{i + 1}") for i in range(num_fcs)]

    def call(self, x, training=None):
        b, r = x.shape[0], x.shape[1]
        y = _flatten_rois(x)
        for conv in self.convs:
            y = conv(y, training=training)
        y = ops.reshape(y, (-1 if b is None else b, r, y.shape[1] * y.shape[2] * y.shape[3]))
        for fc in self.fcs:
            y = fc(y)
        return y

    def get_config(self):
        return {**super().get_config(), **self._config}


@keras.saving.register_keras_serializable(package="rethink_tf")
class BoxPredictor(keras.layers.Layer):
    """[B, R, D] -> (class logits [B, R, K+1] (index 0 = background), deltas [B, R, K', 4]).

    K' = K (class-specific, detectron2 style: no background regressor) or 1 (class-agnostic, as
    the cascade stages use). Init normal std 0.01 (cls) and 0.001 (box), bias 0.
    """

    def __init__(self, num_classes, class_agnostic=False, **kwargs):
        kwargs.setdefault("name", "box_predictor")
        super().__init__(**kwargs)
        self.num_classes, self.class_agnostic = num_classes, class_agnostic
        self.num_box_classes = 1 if class_agnostic else num_classes
        self.cls = keras.layers.Dense(num_classes + 1, kernel_initializer=init.normal(0.01),
                                      name="cls_logits")
        self.box = keras.layers.Dense(4 * self.num_box_classes, kernel_initializer=init.normal(0.001),
                                      name="box_deltas")

    def call(self, x):
        logits = self.cls(x)
        deltas = self.box(x)
        deltas = ops.reshape(deltas, (-1 if x.shape[0] is None else x.shape[0], x.shape[1],
                                      self.num_box_classes, 4))
        return logits, deltas

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "class_agnostic": self.class_agnostic}
