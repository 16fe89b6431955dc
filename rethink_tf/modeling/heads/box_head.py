"""Box heads (RoI features -> a 1024-d vector per RoI), their gin builders, and the box predictor.

A box head is selected by name (`build_model.box_head`) from the registry ("box" category). What is
registered is a *builder*, a gin configurable that owns the head's own parameters (widths, depth):
`conv_fc_box_head.*` for "4conv1fc", `fc_box_head.*` for "2fc". The model calls a builder as
`builder(name=..., norm=..., default_fc_dim=...)`: the layer name (one per cascade stage), the
model's head norm (`build_model.head_norm`, else `build_model.norm`) and the fc width the backbone
implies (1024; 4096 for VGG-16's fc6 / fc7). A new head registers a builder the same way.
"""
import gin
import keras
from keras import ops

from rethink_tf.modeling import init
from rethink_tf.modeling.heads.registry import register_head
from rethink_tf.modeling.layers import ConvNorm
from rethink_tf.modeling.norm import NORM_KINDS
from rethink_tf.utils import validate

BUILDER_ARGS = ("name", "norm", "default_fc_dim")  # what the model passes to every box-head builder


def _flatten_rois(x):
    """[B, R, S, S, C] -> [B*R, S, S, C] (static shapes)."""
    s = x.shape
    return ops.reshape(x, (-1, s[2], s[3], s[4]))


@keras.saving.register_keras_serializable(package="rethink_tf")
class TwoFCHead(keras.layers.Layer):
    """[B, R, S, S, C] -> [B, R, fc_dim]: flatten, fc + ReLU, fc + ReLU (no norm).

    The frozen-BN baseline's head (fc_dim 1024, Xavier as Detectron's) and VGG-16's fc6/fc7 (fc_dim 4096;
    the VGG configs use MSRA, as the ImageNet VGG-16 classifier's fc6 / fc7). `kernel_init`: "xavier" or
    "msra" (`rethink_tf.modeling.init`).
    """

    def __init__(self, fc_dim=1024, num_fcs=2, kernel_init="xavier", **kwargs):
        kwargs.setdefault("name", "box_head")
        super().__init__(**kwargs)
        self.fc_dim, self.num_fcs, self.kernel_init = fc_dim, num_fcs, kernel_init
        fill = {"xavier": init.xavier_fill, "msra": init.msra_fill}[kernel_init]
        self.fcs = [keras.layers.Dense(fc_dim, activation="relu", kernel_initializer=fill(),
                                       name=f"fc{i + 1}") for i in range(num_fcs)]

    def call(self, x, training=None):
        b, r = x.shape[0], x.shape[1]
        x = ops.reshape(x, (-1 if b is None else b, r, x.shape[2] * x.shape[3] * x.shape[4]))
        for fc in self.fcs:
            x = fc(x)
        return x

    def get_config(self):
        return {**super().get_config(), "fc_dim": self.fc_dim, "num_fcs": self.num_fcs,
                "kernel_init": self.kernel_init}


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


def check_conv_fc_arguments(args):
    validate.integer("conv_fc_box_head.num_convs", args["num_convs"], minimum=0)
    validate.integer("conv_fc_box_head.conv_dim", args["conv_dim"], minimum=1)
    validate.integer("conv_fc_box_head.fc_dim", args["fc_dim"], minimum=1, allow_none=True)


def check_fc_arguments(args):
    validate.integer("fc_box_head.fc_dim", args["fc_dim"], minimum=1, allow_none=True)
    validate.one_of("fc_box_head.kernel_init", args["kernel_init"], ("xavier", "msra"))


@register_head("box", "4conv1fc")
@gin.configurable(denylist=list(BUILDER_ARGS))
def conv_fc_box_head(name="box_head", norm="gn", default_fc_dim=1024, num_convs=4, conv_dim=256, fc_dim=None):
    """Builder of the "4conv1fc" head (ConvFCHead): num_convs x (3x3 conv conv_dim + norm + ReLU), fc.

    fc_dim: None takes `default_fc_dim` (1024; 4096 on VGG-16).
    """
    check_conv_fc_arguments(locals())
    validate.one_of("build_model.head_norm", norm, NORM_KINDS)
    return ConvFCHead(num_convs=num_convs, conv_dim=conv_dim, fc_dim=fc_dim or default_fc_dim, norm=norm,
                      name=name)


@register_head("box", "2fc")
@gin.configurable(denylist=list(BUILDER_ARGS))
def fc_box_head(name="box_head", norm="none", default_fc_dim=1024, fc_dim=None, kernel_init="xavier"):
    """Builder of the "2fc" head (TwoFCHead: two fc fc_dim + ReLU, no norm; `norm` is not used).

    fc_dim: None takes `default_fc_dim` (1024; 4096 on VGG-16, its fc6 / fc7).
    kernel_init: "xavier" (Detectron's 2fc head) or "msra" (the VGG-16 configs: the paper initializes
      VGG-16 with MSRA for ImageNet and for COCO from scratch alike).
    """
    del norm  # the fc layers have no norm (Detectron's 2fc head)
    check_fc_arguments(locals())
    return TwoFCHead(fc_dim=fc_dim or default_fc_dim, kernel_init=kernel_init, name=name)
