"""SGD with momentum, coupled L2 weight decay, and Detectron's per-variable rules for biases and norms.

Detectron / torch SGD add `weight_decay * w` to the gradient, so the decay passes through momentum
("coupled L2"); Keras's `weight_decay=` argument is decoupled (AdamW style) and is a different
hyper-parameter, so it is not used. Keras's SGD update (v = m·v − lr·g; w += v) is Caffe2's
MomentumSGDUpdate, i.e. Detectron's.

Per-variable rules (`parameter_groups`), Detectron's by default:
  * normalization γ (GroupNorm / BatchNorm scale): never decayed (Detectron's WEIGHT_DECAY_GN = 0,
    detectron2's WEIGHT_DECAY_NORM = 0), LR × 1.
  * biases: conv / dense `bias` and normalization β. Detectron tags both as biases (Caffe2 gives the GN
    β blob `_gn_b` the BIAS tag) and gives every bias no weight decay and a 2× LR (its optimizer scales
    their gradient by 2). Switches: `parameter_groups.bias_lr_factor` (Detectron 2.0, detectron2
    BIAS_LR_FACTOR 1.0) and `parameter_groups.bias_weight_decay` (Detectron False, detectron2 True).
    Normalization β is never decayed, whatever `bias_weight_decay` says: detectron2's default
    (WEIGHT_DECAY_BIAS unset) leaves norm β at WEIGHT_DECAY_NORM = 0 too.
  * every other trainable variable (kernels): decayed, LR × 1.
A per-variable LR factor is applied by multiplying that variable's (decayed) gradient: with
SGD + momentum the velocity is linear in the gradients, so this is exactly an LR × factor for it.
Frozen variables (`trainable=False`, e.g. stem + res2 with freeze_at=2) are not trainable variables,
so they get neither gradient nor decay, as in Detectron where no gradient reaches them.
"""

from __future__ import annotations

import dataclasses

import gin
import keras

from rethink_tf.utils import validate


def norm_layer_types() -> tuple[type, ...]:
    """The layer classes whose γ/β get no weight decay.

    `rethink_tf.modeling.norm.NORM_LAYER_TYPES` when the modeling package provides it, plus Keras's
    own normalization layers (so toy models and any stray Keras norm layer are covered too).
    """
    types: tuple[type, ...] = (
        keras.layers.GroupNormalization,
        keras.layers.BatchNormalization,
        keras.layers.LayerNormalization,
    )
    try:
        from rethink_tf.modeling.norm import NORM_LAYER_TYPES
    except ImportError:
        return types
    return tuple(NORM_LAYER_TYPES) + types


def _all_layers(model: keras.layers.Layer):
    # Keras 3 private helper; it walks nested layers and models, deduplicated.
    return model._flatten_layers(include_self=True, recursive=True)


@dataclasses.dataclass(frozen=True)
class ParameterGroups:
    """Per-variable optimizer rules, aligned with `model.trainable_variables`.

    Attributes:
      decay_mask: True where coupled L2 weight decay is added to the gradient.
      lr_multipliers: factor on the LR of each variable (1.0, or `bias_lr_factor` for biases).
    """

    decay_mask: tuple[bool, ...]
    lr_multipliers: tuple[float, ...]


@gin.configurable
def parameter_groups(model: keras.layers.Layer, bias_lr_factor: float = 2.0,
                     bias_weight_decay: bool = False) -> ParameterGroups:
    """Decay mask and LR factors for `model.trainable_variables` (rules in the module docstring).

    Args:
      model: a built Keras layer or model.
      bias_lr_factor: LR factor of biases (conv/dense bias and norm β). Detectron 2.0, detectron2 1.0.
      bias_weight_decay: decay conv/dense biases. Detectron False, detectron2 True.
    """
    if bias_lr_factor <= 0:
        raise ValueError(f"parameter_groups.bias_lr_factor must be > 0, got {bias_lr_factor}")
    types = norm_layer_types()
    norm_ids, bias_ids = set(), set()
    for layer in _all_layers(model):
        if isinstance(layer, types):
            norm_ids.update(id(v) for v in layer.trainable_variables)
            beta = getattr(layer, "beta", None)
            if isinstance(beta, keras.Variable):
                bias_ids.add(id(beta))
        else:
            bias = getattr(layer, "bias", None)
            if isinstance(bias, keras.Variable):
                bias_ids.add(id(bias))
    decay, factors = [], []
    for v in model.trainable_variables:
        is_bias = id(v) in bias_ids
        if id(v) in norm_ids:
            decay.append(False)
        else:
            decay.append(bias_weight_decay if is_bias else True)
        factors.append(float(bias_lr_factor) if is_bias else 1.0)
    return ParameterGroups(tuple(decay), tuple(factors))


def add_coupled_weight_decay(grads, variables, decay_mask, weight_decay: float, scale: float = 1.0,
                             lr_multipliers=None):
    """Returns m * (grads + scale * weight_decay * var), the decay only where `decay_mask[i]` is True.

    Args:
      grads: list of gradient tensors (None allowed, kept None), aligned with `variables`.
      variables: list of variables.
      decay_mask: list of bools, True for variables that are decayed.
      weight_decay: L2 coefficient (1e-4 in the paper).
      scale: multiplies the decay term; a replica whose gradients are later summed over N replicas
        passes 1/N so the all-reduced gradient holds exactly one `weight_decay * var`.
      lr_multipliers: optional list of per-variable factors m (None: all 1); multiplying the gradient
        of SGD with momentum by m is the same as multiplying that variable's LR by m.
    """
    if lr_multipliers is None:
        lr_multipliers = [1.0] * len(variables)
    out = []
    for g, v, decay, m in zip(grads, variables, decay_mask, lr_multipliers):
        if g is not None and decay and weight_decay != 0.0:
            g = g + (weight_decay * scale) * keras.ops.cast(v, g.dtype)
        if g is not None and m != 1.0:
            g = g * m
        out.append(g)
    return out


@gin.configurable
def build_optimizer(learning_rate, momentum: float = 0.9, nesterov: bool = False):
    """SGD with momentum (0.9 in the paper). Weight decay is applied by the trainer, coupled.

    Args:
      learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`.
      momentum: momentum coefficient.
      nesterov: Nesterov momentum (off in every official recipe).
    """
    validate.number("build_optimizer.momentum", momentum, minimum=0, maximum=1, exclusive_maximum=True)
    validate.boolean("build_optimizer.nesterov", nesterov)
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov)
