"""Checkpoints of the model state (chief) and of each worker's data position.

Two kinds of checkpoints, both numbered by the global step:
- `DIR/ckpt-<step>`: model, optimizer (its iteration count is the global step) and the Figure 2
  counters. Written by the chief; other workers write theirs to a scratch directory (every worker must
  take part in saving distributed variables) which is deleted afterwards.
- `DIR/data/worker_<i>/data-<step>`: the state of that worker's tf.data iterators, so a restarted run
  reads exactly the batches it would have read. Pipelines that cannot be serialized (e.g. ones using
  `tf.py_function`) fall back to skipping `step` batches on resume (exact, but it re-reads the data).
"""

from __future__ import annotations

import os
import shutil

import tensorflow as tf
from absl import logging

_SAVE_ERRORS = (tf.errors.FailedPreconditionError, tf.errors.UnimplementedError,
                tf.errors.InvalidArgumentError)


class ModelCheckpointer:
    """Saves/restores `tf.train.Checkpoint(**trackables)` under `model_dir`, keeping the last `max_to_keep`."""

    def __init__(self, model_dir: str, trackables: dict, max_to_keep: int = 5, chief: bool = True,
                 worker_id: int = 0):
        self.model_dir = model_dir
        self.chief = chief
        self.checkpoint = tf.train.Checkpoint(**trackables)
        directory = model_dir if chief else os.path.join(model_dir, ".scratch", f"worker_{worker_id}")
        self._scratch = None if chief else directory
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max_to_keep,
                                                  checkpoint_name="ckpt")

    def latest(self) -> str | None:
        """Path of the newest checkpoint in the (chief's) model directory, or None."""
        return tf.train.latest_checkpoint(self.model_dir)

    def restore(self, path: str | None = None) -> str | None:
        """Restores `path` (default: the latest); returns the restored path or None if there is none."""
        path = path or self.latest()
        if path is None:
            return None
        self.checkpoint.restore(path).expect_partial()
        logging.info("Restored %s", path)
        return path

    def save(self, step: int) -> str:
        path = self.manager.save(checkpoint_number=step)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        return path


class DataCheckpointer:
    """Saves/restores the state of one worker's per-replica tf.data iterators, per step."""

    def __init__(self, model_dir: str, worker_id: int, max_to_keep: int = 5):
        self.directory = os.path.join(model_dir, "data", f"worker_{worker_id}")
        self.max_to_keep = max_to_keep
        self.enabled = True
        self._checkpoint = None
        self._manager = None

    def track(self, iterators: dict):
        """Registers the iterators (name -> tf.data iterator) to save."""
        self._checkpoint = tf.train.Checkpoint(**iterators)
        self._manager = tf.train.CheckpointManager(self._checkpoint, self.directory,
                                                   max_to_keep=self.max_to_keep, checkpoint_name="data")

    def path_for(self, step: int) -> str | None:
        prefix = os.path.join(self.directory, f"data-{step}")
        return prefix if tf.io.gfile.exists(prefix + ".index") else None

    def restore(self, step: int) -> bool:
        """Restores the iterator states saved at `step`; False when there is no such checkpoint."""
        path = self.path_for(step)
        if path is None or self._checkpoint is None:
            return False
        self._checkpoint.restore(path).assert_consumed()
        return True

    def save(self, step: int) -> None:
        if not self.enabled or self._manager is None:
            return
        try:
            self._manager.save(checkpoint_number=step)
        except _SAVE_ERRORS as e:
            self.enabled = False
            logging.warning(
                "The input pipeline cannot be checkpointed (%s); a resumed run will skip the "
                "already-seen batches instead (exact, but slower to start).", str(e).splitlines()[0])
