"""What a training task gives the Trainer (the Model Garden's task design): the Trainer owns the loop,
the task owns everything that depends on what is learned.

A task provides
  * `build_model()` -> keras.Model, called under the strategy scope;
  * `build_inputs(input_context)` -> tf.data.Dataset of per-replica training batches (dicts of tensors);
  * `build_losses(model, batch)` -> dict of float32 scalar loss terms of one replica's batch (the
    forward pass in training mode; the Trainer sums them into the objective, adds coupled L2 and loss
    scaling, and differentiates);
  * `build_metrics()` -> the evaluation's accumulator (detection: a COCO evaluator; classification:
    top-k accuracy);
  * `samples_seen(batch)` -> {kind: float32 scalar} for the kinds in `sample_kinds` (Figure 2's
    images / instances / pixels of one replica's batch);
  * `initial_samples()` -> {kind: float} seen before this run, e.g. by the pre-training a fine-tuning
    run starts from ({} if none);
  * `evaluate(model, step, samples)` -> (scalars {tag: float}, images {tag: uint8 [N, H, W, 3]}), or
    `has_evaluation = False`.

`ModelTask` adapts a model whose `model(batch, training=True)` returns its loss terms (the detectors,
the test toys) and plain callables to this interface.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

SAMPLE_KINDS = ("images", "instances", "pixels")


class Task:
    """Base class: subclasses implement build_model, build_inputs, build_losses and samples_seen."""

    sample_kinds: tuple[str, ...] = SAMPLE_KINDS
    has_evaluation: bool = False

    def build_model(self):
        raise NotImplementedError

    def build_inputs(self, input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        raise NotImplementedError

    def build_losses(self, model, batch) -> dict:
        raise NotImplementedError

    def build_metrics(self):
        return None

    def samples_seen(self, batch) -> dict:
        raise NotImplementedError

    def initial_samples(self) -> dict:
        return {}

    def evaluate(self, model, step: int, samples: dict):
        raise NotImplementedError(f"{type(self).__name__} has no evaluation")


def batch_images(batch) -> tf.Tensor:
    """Number of images in a batch (its leading dimension), float32."""
    return tf.cast(tf.shape(batch["images"])[0], tf.float32)


class ModelTask(Task):
    """A task from callables: `model_fn() -> model` with `model(batch, training=True)` -> loss dict.

    Args:
      model_fn: () -> keras.Model.
      dataset_fn: (tf.distribute.InputContext) -> tf.data.Dataset of per-replica batches.
      eval_fn: optional (step, samples) -> (scalars, images); the model is the one `model_fn` built.
      samples_fn: optional batch -> {kind: scalar}; default: detection batches' counts
        (`rethink_tf.data.input_pipeline.samples_seen`) when the batch has gt_* keys, else images only.
      initial_samples: counts seen before this run ({kind: float}).
    """

    def __init__(self, model_fn: Callable, dataset_fn: Callable, eval_fn: Callable | None = None,
                 samples_fn: Callable | None = None, initial_samples: dict | None = None):
        self._model_fn, self._dataset_fn, self._eval_fn = model_fn, dataset_fn, eval_fn
        self._samples_fn = samples_fn
        self._initial = dict(initial_samples or {})
        self.has_evaluation = eval_fn is not None

    def build_model(self):
        return self._model_fn()

    def build_inputs(self, input_context=None):
        return self._dataset_fn(input_context)

    def build_losses(self, model, batch):
        losses = model(batch, training=True)
        if not isinstance(losses, dict) or not losses:
            raise TypeError("model(batch, training=True) must return a non-empty dict of loss terms")
        return losses

    def samples_seen(self, batch):
        if self._samples_fn is not None:
            return self._samples_fn(batch)
        if "gt_classes" in batch:
            from rethink_tf.data.input_pipeline import samples_seen

            return samples_seen(batch)
        return {"images": batch_images(batch)}

    def initial_samples(self):
        return dict(self._initial)

    def evaluate(self, model, step, samples):
        if self._eval_fn is None:
            return super().evaluate(model, step, samples)
        return self._eval_fn(step, samples)
