"""NaN/Inf guards of the training loop: nothing non-finite is ever saved as a checkpoint.

- Every step: the loss terms (computed before that step's update) must be finite.
- Before every checkpoint: every floating-point model weight must be finite. A step whose loss is
  finite can still write NaN/Inf weights (an overflowing LR or a NaN gradient); the weight check stops
  the run there instead of saving those weights as the "last good" checkpoint. One fused check over
  all weights (one bool per variable, one host transfer) costs far less than writing the checkpoint
  (R50-FPN Mask R-CNN, 45.7M weights, this CPU: 0.034 s against 0.59 s for the save).
A non-finite LR is refused at start-up by `schedule.check_lr_values`.
"""

from __future__ import annotations

import math

import tensorflow as tf


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss term (or, see NonFiniteWeightsError, a weight) becomes NaN or Inf."""


class NonFiniteWeightsError(NonFiniteLossError):
    """Raised before a checkpoint when model weights are NaN or Inf; names the step and the variables."""


def check_losses(step: int, losses: dict, kept: str | None, model_dir: str) -> None:
    """Raises NonFiniteLossError naming `step` and every term when a loss term is NaN or Inf."""
    if all(math.isfinite(v) for v in losses.values()):
        return
    terms = ", ".join(f"{k}={v}" for k, v in sorted(losses.items()))
    raise NonFiniteLossError(f"Non-finite loss at step {step}: {terms}. Stopping; the last good checkpoint in "
                             f"{model_dir} is kept ({kept}).")


class WeightCheck:
    """`check(step, kept, model_dir)` raises NonFiniteWeightsError if a floating weight of `model` is not finite."""

    def __init__(self, model):
        self._variables = [v for v in model.weights if tf.as_dtype(v.dtype).is_floating]
        self._names = [str(getattr(v, "path", v.name)) for v in self._variables]
        variables = self._variables

        @tf.function
        def finite_flags():
            return tf.stack([tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v))) for v in variables])

        self._finite_flags = finite_flags

    def check(self, step: int, kept: str | None, model_dir: str) -> None:
        if not self._variables:
            return
        flags = self._finite_flags().numpy()
        if flags.all():
            return
        bad = [n for n, ok in zip(self._names, flags) if not ok]
        raise NonFiniteWeightsError(
            f"Non-finite weights after step {step} although its loss was finite: {len(bad)} of "
            f"{len(self._names)} variables contain NaN/Inf (e.g. {', '.join(bad[:5])}); check the LR and the "
            f"gradients. Not saving step {step}; the last good checkpoint in {model_dir} is kept ({kept}).")
