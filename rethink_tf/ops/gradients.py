"""Gradient scaling: identity forward, gradient multiplied by a constant backward.

Cascade R-CNN sums its stages' losses but scales the gradient reaching the shared features by
1 / num_stages at each stage's input (detectron2's `_ScaleGradient`): the heads learn at the full
rate while the backbone sees the average of the stages.
"""
import tensorflow as tf


def scale_gradient(x, scale):
    """Returns x; the gradient with respect to x is the incoming gradient times `scale` (a python
    float). Works in eager, graph and XLA; the output keeps x's dtype."""
    scale = float(scale)

    @tf.custom_gradient
    def _identity(value):
        def grad(upstream):
            return upstream * tf.cast(scale, upstream.dtype)

        return tf.identity(value), grad

    return _identity(x)
