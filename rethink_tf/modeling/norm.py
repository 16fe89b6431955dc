"""Normalization factory shared by backbone, FPN and heads (SPEC.md §1, §2 "norm").

`build_norm(kind)` returns one Keras layer for NHWC (or [N, C]) tensors:
- "gn": GroupNorm, 32 groups, eps 1e-5 (the paper's choice from scratch).
- "syncbn": BatchNorm whose batch statistics are all-reduced across the replicas of the
  enclosing tf.distribute strategy (Keras `synchronized=True`).
- "bn": per-replica BatchNorm.
- "frozen_bn": fixed affine y = x * scale + shift from stored statistics (fine-tuning baseline).
- "none": identity (VGG-16, or "no norm" ablations).
BatchNorm momentum 0.9 in Keras terms equals torch/detectron2's momentum 0.1.
"""
import math

import gin
import keras
from keras import ops

NORM_KINDS = ("gn", "syncbn", "bn", "frozen_bn", "none")


@keras.saving.register_keras_serializable(package="rethink_tf")
class GroupNorm(keras.layers.GroupNormalization):
    """GroupNormalization whose group count adapts to narrow layers.

    Uses gcd(groups, channels) groups, so the paper's 32 groups apply to every real width
    (all multiples of 32) while narrow test models (e.g. 8 channels) still build.
    """

    def build(self, input_shape):
        channels = int(input_shape[self.axis])
        self.groups = math.gcd(self.groups, channels)
        super().build(input_shape)


@keras.saving.register_keras_serializable(package="rethink_tf")
class FrozenBatchNorm(keras.layers.Layer):
    """BatchNorm with frozen statistics and affine: y = (x - mean) / sqrt(var + eps) * gamma + beta.

    All four vectors are non-trainable; training=True behaves like inference. Pre-trained
    statistics are loaded into `gamma`, `beta`, `moving_mean`, `moving_variance` (same names as
    keras BatchNormalization, so weight files map one to one).
    """

    def __init__(self, epsilon=1e-5, gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.gamma_initializer = keras.initializers.get(gamma_initializer)

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.gamma = self.add_weight(
            name="gamma", shape=(c,), initializer=self.gamma_initializer, trainable=False)
        self.beta = self.add_weight(name="beta", shape=(c,), initializer="zeros", trainable=False)
        self.moving_mean = self.add_weight(
            name="moving_mean", shape=(c,), initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight(
            name="moving_variance", shape=(c,), initializer="ones", trainable=False)

    def call(self, x):
        scale = self.gamma * ops.rsqrt(self.moving_variance + self.epsilon)
        shift = self.beta - self.moving_mean * scale
        return x * ops.cast(scale, x.dtype) + ops.cast(shift, x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon,
                      gamma_initializer=keras.initializers.serialize(self.gamma_initializer))
        return config


# Layers whose variables get no weight decay (CONTRACT.md). Subclasses match via isinstance.
NORM_LAYER_TYPES = (keras.layers.GroupNormalization, keras.layers.BatchNormalization,
                    FrozenBatchNorm)


def has_norm(kind):
    """True when `kind` adds a normalization (then the preceding conv has no bias)."""
    _check_kind(kind)
    return kind != "none"


def _check_kind(kind):
    if kind not in NORM_KINDS:
        raise ValueError(f"Unknown norm kind {kind!r}; expected one of {NORM_KINDS}.")


@gin.configurable(denylist=["kind", "name", "zero_init"])
def build_norm(kind, name=None, zero_init=False, gn_groups=32, epsilon=1e-5, bn_momentum=0.9):
    """Returns a normalization layer of `kind` over the last axis.

    Args:
      kind: one of NORM_KINDS.
      name: layer name.
      zero_init: initialize gamma to 0 (the "zero-γ" option for the last norm of a block).
      gn_groups: GroupNorm groups (reduced to gcd(groups, channels) for narrow layers).
      epsilon: variance epsilon (1e-5 as Detectron).
      bn_momentum: Keras moving-average momentum for "bn"/"syncbn".
    """
    _check_kind(kind)
    gamma_init = "zeros" if zero_init else "ones"
    if kind == "gn":
        return GroupNorm(groups=gn_groups, epsilon=epsilon, gamma_initializer=gamma_init, name=name)
    if kind in ("bn", "syncbn"):
        return keras.layers.BatchNormalization(
            momentum=bn_momentum, epsilon=epsilon, gamma_initializer=gamma_init,
            synchronized=(kind == "syncbn"), name=name)
    if kind == "frozen_bn":
        return FrozenBatchNorm(epsilon=epsilon, gamma_initializer=gamma_init, name=name)
    return keras.layers.Identity(name=name)
