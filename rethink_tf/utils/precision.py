"""The compute precision of a model built for inference (export, evaluation).

Training sets Keras's global dtype policy from `Trainer.mixed_precision`. Export and evaluation build
their model in a fresh process, in float32 unless asked otherwise: `inference_policy("mixed_bfloat16")`
builds it with bfloat16 compute. Variables stay float32 under a mixed policy, so a float32 checkpoint
restores unchanged, and the layers that the model keeps in float32 (boxes, RoIAlign, GroupNorm
statistics, scores and mask probabilities) stay float32, as they do in bfloat16 training.
"""
import contextlib

import keras

from rethink_tf.utils import validate

INFERENCE_POLICIES = (None, "mixed_bfloat16")


def check_inference_policy(name, what):
    """Raises ConfigError naming `what` (a flag or binding) unless name is None or 'mixed_bfloat16'."""
    if name not in INFERENCE_POLICIES:
        raise validate.ConfigError(f"{what} must be None (float32) or 'mixed_bfloat16', got {name!r}")


@contextlib.contextmanager
def inference_policy(name, what="mixed_precision"):
    """Models built inside use Keras's `name` policy (None: float32); the previous global policy is
    restored on exit."""
    check_inference_policy(name, what)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name or "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
