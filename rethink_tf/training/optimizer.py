"""SGD with momentum and coupled L2 weight decay that spares normalization parameters.

Detectron / torch SGD add `weight_decay * w` to the gradient, so the decay passes through momentum
("coupled L2"); Keras's `weight_decay=` argument is decoupled (AdamW style) and is a different
hyper-parameter, so it is not used. GroupNorm / BatchNorm γ and β get no decay (the paper's recipe).
Keras's SGD update (v = m·v − lr·g; w += v) is Caffe2's MomentumSGDUpdate, i.e. Detectron's.
"""

from __future__ import annotations

import gin
import keras

from rethink_tf.utils import validate


def norm_layer_types() -> tuple[type, ...]:
    """The layer classes whose variables get no weight decay.

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


def split_decay_variables(model: keras.layers.Layer):
    """Splits `model.trainable_variables` into (decayed, not decayed) lists.

    Not decayed: every variable owned by a normalization layer (see `norm_layer_types`).
    """
    types = norm_layer_types()
    excluded = set()
    for layer in _all_layers(model):
        if isinstance(layer, types):
            excluded.update(id(v) for v in layer.trainable_variables)
    decayed, not_decayed = [], []
    for v in model.trainable_variables:
        (not_decayed if id(v) in excluded else decayed).append(v)
    return decayed, not_decayed


def add_coupled_weight_decay(grads, variables, decay_mask, weight_decay: float, scale: float = 1.0):
    """Returns grads + scale * weight_decay * var where `decay_mask[i]` is True.

    Args:
      grads: list of gradient tensors (None allowed, kept None), aligned with `variables`.
      variables: list of variables.
      decay_mask: list of bools, True for variables that are decayed.
      weight_decay: L2 coefficient (1e-4 in the paper).
      scale: multiplies the decay term; a replica whose gradients are later summed over N replicas
        passes 1/N so the all-reduced gradient holds exactly one `weight_decay * var`.
    """
    out = []
    for g, v, decay in zip(grads, variables, decay_mask):
        if g is None or not decay or weight_decay == 0.0:
            out.append(g)
        else:
            out.append(g + (weight_decay * scale) * keras.ops.cast(v, g.dtype))
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

