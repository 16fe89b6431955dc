"""The classification task (ImageNet-style backbone pre-training) on the Trainer, and its experiment.

    python -m rethink_tf.pretrain --gin_file=gin_configs/classification/synthetic_cpu.gin --model_dir=DIR

Recipe (the GN paper / Goyal et al.; gin_configs/classification/imagenet_*.gin): SGD momentum 0.9, LR 0.1 x
batch / 256 with linear warmup and 10x drops at epochs 30 / 60 / 90 of 100 (`schedule.imagenet_schedule`),
coupled L2 weight decay 1e-4 (`Trainer.weight_decay`), random-resized-crop + flip for training,
resize 256 + centre crop 224 for evaluation (`rethink_tf.data.classification.classification_dataset`).
Loss: softmax cross-entropy, mean over the replica's batch. Evaluation: top-1 / top-5 accuracy (%) on the
source's "val" split, in DIR/metrics.jsonl and TensorBoard (DIR/eval, tags classification/top1, /top5).

Writes DIR/config.gin, DIR/run_config.json (`run_record`, classification fields), DIR/label_map.json
(class names), checkpoints, TensorBoard, DIR/metrics.jsonl and, whenever training stops, the backbone
file DIR/backbone_weights.h5 plus DIR/backbone_weights.h5.samples.json (`pretrained_backbone`): the file
a detection config's `experiment.backbone_weights` names, and the samples seen that a fine-tuning run
adds to its own (Figure 2). Samples seen: images, 1 instance per image, S x S pixels per image at the
crop size S (224 x 224 on ImageNet), the paper's counting rule.
"""

from __future__ import annotations

import json
import os
import time

import gin
import numpy as np
import tensorflow as tf
from absl import logging

from rethink_tf.training import pretrained_backbone, run_record
from rethink_tf.training import schedule as schedule_lib
from rethink_tf.training import task as task_lib
from rethink_tf.training import trainer as trainer_lib
from rethink_tf.utils import validate

METRICS_FILE = "metrics.jsonl"
LABEL_MAP_FILE = "label_map.json"
BACKBONE_FILE = "backbone_weights.h5"
# The gin configurables that shape the classifier, with the parameters each call sets itself.
MODEL_CONFIGURABLES = {"build_classifier": ("num_classes",), "build_backbone": ("name",),
                       "build_norm": ("kind", "name", "zero_init")}


class TopKAccuracy:
    """Top-k accuracy (%) accumulated over batches; labels < 0 (eval padding) are not counted.

    An example is correct at k when fewer than k classes have a logit strictly greater than its label's
    (ties at the boundary count as correct, as tf.math.in_top_k).
    """

    def __init__(self, ks=(1, 5)):
        self.ks = tuple(int(k) for k in ks)
        self.correct = {k: 0 for k in self.ks}
        self.count = 0

    def update(self, labels, logits) -> None:
        """labels int [B]; logits float [B, C]."""
        labels, logits = np.asarray(labels), np.asarray(logits, np.float64)
        real = labels >= 0
        labels, logits = labels[real], logits[real]
        if not len(labels):
            return
        label_logit = logits[np.arange(len(labels)), labels]
        above = (logits > label_logit[:, None]).sum(axis=1)
        for k in self.ks:
            self.correct[k] += int((above < k).sum())
        self.count += len(labels)

    def result(self) -> dict:
        """{"top<k>": percent}; NaN before any example."""
        return {f"top{k}": (100.0 * self.correct[k] / self.count if self.count else float("nan")) for k in self.ks}


def cross_entropy(labels, logits):
    """Mean softmax cross-entropy: labels int32 [B], logits float32 [B, C] -> float32 scalar."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def predict_fn(model, jit_compile: bool = False):
    return tf.function(lambda images: model(images, training=False), jit_compile=jit_compile)


class ClassificationTask(task_lib.Task):
    """Image classification on a classification source (`rethink_tf.data.classification`).

    Args:
      model_dir: the run's directory (metrics.jsonl).
      source: a classification source; trains on its "train" split, evaluates on "val".
      global_batch_size: images per step over all replicas.
      eval_batch_size: images per evaluation batch (single device, on the chief).
      eval_max_batches: evaluate on only this many batches; None = the whole split.
      data_seed: seed of shuffling and augmentation (the data position is checkpointed).
      evaluate: evaluate on the "val" split (periodically per Trainer.eval_every, and at the end).
    """

    def __init__(self, model_dir: str, source, *, global_batch_size: int, eval_batch_size: int = 100,
                 eval_max_batches: int | None = None, data_seed: int | None = 0, evaluate: bool = True,
                 jit_compile: bool = False):
        self.model_dir, self.source = model_dir, source
        self.global_batch_size, self.eval_batch_size = global_batch_size, eval_batch_size
        self.eval_max_batches, self.data_seed = eval_max_batches, data_seed
        self.has_evaluation = bool(evaluate)
        self.jit_compile = jit_compile

    def build_model(self):
        from rethink_tf.modeling.classifier import build_classifier

        return build_classifier(num_classes=self.source.num_classes)

    def build_inputs(self, input_context=None):
        from rethink_tf.data.classification import classification_dataset

        return classification_dataset(self.source, "train", True, self.global_batch_size,
                                      input_context=input_context, seed=self.data_seed)

    def build_losses(self, model, batch):
        logits = model(batch["images"], training=True, seed=batch.get("sampling_seed"))
        return {"classification": cross_entropy(batch["labels"], tf.cast(logits, tf.float32))}

    def build_metrics(self):
        return TopKAccuracy((1, 5))

    def samples_seen(self, batch):
        from rethink_tf.data.classification import samples_seen

        return samples_seen(batch, int(batch["images"].shape[1]))

    def eval_dataset(self):
        from rethink_tf.data.classification import classification_dataset

        return classification_dataset(self.source, "val", False, self.eval_batch_size, seed=self.data_seed)

    def evaluate(self, model, step, samples):
        metric = self.build_metrics()
        predict = predict_fn(model, self.jit_compile)
        start = time.time()
        for i, batch in enumerate(self.eval_dataset()):
            if self.eval_max_batches is not None and i >= self.eval_max_batches:
                break
            metric.update(batch["labels"].numpy(), predict(batch["images"]).numpy())
        result = metric.result()
        record = {"step": int(step), "checkpoint": os.path.join(self.model_dir, f"ckpt-{step}"),
                  "eval_source": f"{self.source.name}_val", "num_eval_images": metric.count,
                  "wall_time": time.time(), **{f"{k}_seen": float(v) for k, v in samples.items()},
                  "classification": result}
        os.makedirs(self.model_dir, exist_ok=True)
        with open(os.path.join(self.model_dir, METRICS_FILE), "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        logging.info("Evaluation at step %d on %d images (%.0f s): %s", step, metric.count, time.time() - start,
                     "  ".join(f"{k} {v:.2f}" for k, v in result.items()))
        return {f"classification/{k}": v for k, v in result.items()}, {}


def describe(model, source) -> dict:
    """The run record of a classifier built under the parsed gin configuration (see `run_record`)."""
    fields = {}
    for name, skip in MODEL_CONFIGURABLES.items():
        args = run_record.configurable_arguments(name, skip)
        fields.update({f"{name}.{k}": v for k, v in args.items()})
    fields["model.num_classes"] = model.num_classes
    fields["label_map.class_names"] = list(source.class_names)
    fields = {k: run_record._canonical(v) for k, v in sorted(fields.items())}  # noqa: SLF001
    return {"fields": fields, "fingerprint": run_record.fingerprint(fields)}


def write_label_map(model_dir: str, source) -> str:
    path = os.path.join(model_dir, LABEL_MAP_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"source": source.name, "class_names": list(source.class_names)}, f, indent=1)
    return path


@gin.configurable(denylist=["model_dir", "strategy"])
def pretrain(model_dir: str, strategy, source=gin.REQUIRED, global_batch_size: int = 256,
             eval_batch_size: int = 100, eval_max_batches: int | None = None, max_steps: int | None = None,
             data_seed: int | None = 0, evaluate: bool = True):
    """Pre-trains a classifier (resuming from DIR if it holds checkpoints) and writes the backbone file.

    Args:
      model_dir: output directory.
      strategy: from `distribute.get_strategy()`.
      source: the classification source (gin reference, e.g. `@SyntheticClassificationSource()`).
      global_batch_size: images per step over all replicas (256 in the GN paper).
      eval_batch_size: images per evaluation batch.
      eval_max_batches: evaluate on only this many batches; None = the whole "val" split.
      max_steps: stop after this many steps of this process; None = the whole schedule.
      data_seed: shuffling / augmentation seed.
      evaluate: top-1 / top-5 on the "val" split (Trainer.eval_every, and at the end).
    Returns:
      the last step's loss terms.
    """
    from rethink_tf.data.classification import ClassificationSource
    from rethink_tf.training import distribute
    from rethink_tf.training.experiment import write_config

    if source is gin.REQUIRED:
        raise validate.ConfigError("pretrain.source is not bound (e.g. pretrain.source = "
                                   "@SyntheticClassificationSource())")
    if not isinstance(source, ClassificationSource):
        raise validate.ConfigError(f"pretrain.source = {source!r}: expected a classification source "
                                   "(ImageFolderSource, SyntheticClassificationSource, ImageNetTfdsSource)")
    validate.integer("pretrain.global_batch_size", global_batch_size, minimum=1)
    validate.integer("pretrain.eval_batch_size", eval_batch_size, minimum=1)
    validate.integer("pretrain.eval_max_batches", eval_max_batches, minimum=1, allow_none=True)
    validate.integer("pretrain.max_steps", max_steps, minimum=1, allow_none=True)
    validate.integer("pretrain.data_seed", data_seed, allow_none=True)
    validate.boolean("pretrain.evaluate", evaluate)
    spec = schedule_lib.imagenet_schedule(global_batch_size=global_batch_size,
                                          num_train_examples=source.num_examples("train"))
    logging.info("Schedule: %s", spec)
    task = ClassificationTask(model_dir, source, global_batch_size=global_batch_size,
                              eval_batch_size=eval_batch_size, eval_max_batches=eval_max_batches,
                              data_seed=data_seed, evaluate=evaluate)
    record_variable = run_record.checkpoint_variable()
    trainer = trainer_lib.Trainer(model_dir, strategy, task, spec, global_batch_size,
                                  after_first_step=lambda: write_config(model_dir, operative=True),
                                  extra_checkpoint_items={run_record.RECORD_KEY: record_variable})
    record = describe(trainer.model, source)
    latest = tf.train.latest_checkpoint(model_dir)
    if latest:
        run_record.check(record, model_dir, latest, "this configuration",
                         advice=f"Train in a new --model_dir, or with the configuration of the run in {model_dir}.")
    chief = distribute.is_chief(strategy)
    if chief:
        write_config(model_dir)
        run_record.write(model_dir, record)
        write_label_map(model_dir, source)
    trainer.restore_or_initialize()
    record_variable.assign(run_record.to_json(record))
    losses = trainer.train(max_steps=max_steps)
    if chief:
        write_backbone(trainer, source, os.path.join(model_dir, BACKBONE_FILE))
    return losses


def write_backbone(trainer, source, path: str) -> str:
    """Writes the trainer's backbone and its samples seen (`pretrained_backbone.write`); a VGG-16's fc6
    and fc7 go with it, for the detector's box head (`weights.load_vgg16_fc`)."""
    from rethink_tf.modeling import weights

    step = trainer.step
    details = {"step": step, "total_steps": trainer.schedule.total_steps,
               "finished": step >= trainer.schedule.total_steps, "source": source.name,
               "num_classes": source.num_classes}
    model = trainer.model
    head = weights.vgg16_fc_arrays(model.fc6, model.fc7) if model.is_vgg else None
    record = pretrained_backbone.write(model.backbone, path,
                                       {k: float(v.numpy()) for k, v in trainer.samples.items()}, details, head)
    logging.info("Wrote the backbone of step %d to %s (samples seen: %s)", step, path, record)
    return path
