"""Toys for the fault-injection tests: a detector whose loss depends on random sampling, a NaN-gradient step,
and the subprocess helpers (start a run, SIGKILL it at a step, read its per-step losses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import tensorflow as tf

import training_toys as toys
from rethink_tf.training import distribute, schedule, task as task_lib, trainer as trainer_lib

STEPS = 16  # length of the reference run and of its killed / resumed copies
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reliability_script.py")


class SamplingToy(toys.ToyDetector):
    """The toy detector whose box loss weights each image by a random draw, like Mask R-CNN's anchor/RoI
    sampling: keyed by `batch["sampling_seed"]` when present, else a stateful draw (the model's fallback)."""

    def call(self, batch, training=False):
        if not training:
            return super().call(batch, training=False)
        f = self.features(batch["images"], training)
        boxes = tf.sigmoid(self.box_head(f)) * toys.CANVAS
        n = tf.shape(boxes)[0:1]
        if "sampling_seed" in batch:
            weights = tf.random.stateless_uniform(n, seed=batch["sampling_seed"])
        else:
            weights = tf.random.uniform(n)
        box_loss = tf.reduce_mean(weights[:, None] * tf.abs(boxes - batch["gt_boxes"][:, 0, :])) / toys.CANVAS
        logits = self.cls_head(f)
        cls_loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            batch["gt_classes"][:, 0], logits, from_logits=True))
        return {"toy_box": box_loss, "toy_class": cls_loss}


class NanGradientToy(toys.ToyDetector):
    """A batch with `poison` = 1 gives a finite loss (0 extra) but NaN gradients, so the update writes NaN
    weights: d/ds sqrt(|s - s|) at 0 is inf * 0."""

    def call(self, batch, training=False):
        losses = super().call(batch, training=training)
        if not training:
            return losses
        s = tf.reduce_sum(self.box_head.kernel)
        slack = 1.0 - tf.reduce_max(batch["poison"])
        losses["toy_poison"] = tf.sqrt(tf.abs(s - s) + slack) - tf.sqrt(slack)
        return losses


def poisoned_dataset(ctx, bad_batch):
    """toy_dataset with a `poison` key that is 1 only in batch number `bad_batch` (0-based)."""
    ds = toys.toy_dataset(ctx, 4).enumerate()
    return ds.map(lambda i, b: {**b, "poison": tf.fill([4], tf.cast(i == bad_batch, tf.float32))})


def make_trainer(model_dir, total_steps, model_cls=SamplingToy, dataset_fn=None, **kw):
    spec = schedule.paper_schedule(global_batch_size=4, total_steps=total_steps, warmup_steps_at_batch_16=4,
                                   base_lr=0.05)
    kw = {"eval_every": None, "log_every": 1, "summary_every": 5, "checkpoint_every": 4, **kw}
    task = task_lib.ModelTask(lambda: model_cls("gn"), dataset_fn or (lambda ctx: toys.toy_dataset(ctx, 4)),
                              eval_fn=kw.pop("eval_fn", None))
    return trainer_lib.Trainer(str(model_dir), distribute.get_strategy("default"), task, spec, 4, **kw)


def run_script(model_dir, steps, kill_at=None, deterministic=True, timeout=300):
    """Runs reliability_script.py in a subprocess; returns its CompletedProcess (SIGKILLed: returncode -9)."""
    cmd = [sys.executable, SCRIPT, str(model_dir), "--steps", str(steps)]
    if kill_at is not None:
        cmd += ["--kill_at", str(kill_at)]
    if deterministic:
        cmd += ["--deterministic"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    env.pop("TF_DETERMINISTIC_OPS", None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    expected = -signal.SIGKILL if kill_at is not None else 0
    assert proc.returncode == expected, f"exit {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc


def checkpoint_steps(model_dir):
    """Steps N of the DIR/ckpt-N.index files, increasing."""
    names = tf.io.gfile.glob(os.path.join(str(model_dir), "ckpt-*.index"))
    return sorted(int(os.path.basename(n)[len("ckpt-"):-len(".index")]) for n in names)


def read_losses(model_dir):
    """[(step, total loss)] in the order the steps ran (a resumed run repeats steps after its checkpoint)."""
    with open(os.path.join(model_dir, "losses.txt")) as f:
        return [(int(a), float.fromhex(b)) for a, b in (line.split() for line in f if line.strip())]


def read_weights(model_dir):
    with np.load(os.path.join(model_dir, "final_weights.npz")) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]
