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


def variables_by_path(model) -> dict:
    """{variable path below the model: variable} over all of `model.weights` (trainable and not).

    Keras 3 keeps layers held in lists or dicts out of TF's object graph, so `tf.train.Checkpoint(model=m)`
    silently skips their variables. Checkpoints therefore store the variables by their Keras path with the
    model's own (instance-numbered) name dropped, e.g. "backbone/res2_0/conv1/conv/kernel". Paths are stable
    across processes when layers are named explicitly. Repeated paths get a "#k" suffix.
    """
    out = {}
    for v in model.weights:
        path = str(getattr(v, "path", v.name))
        head, sep, rest = path.partition("/")
        key = rest if sep and head == model.name else path
        base, k = key, 1
        while key in out:
            key = f"{base}#{k}"
            k += 1
        out[key] = v
    return out


def model_trackable(model) -> tf.Module:
    """A trackable holding the model's variables by path (see `variables_by_path`)."""
    holder = tf.Module(name="model_variables")
    holder.variables_by_path = variables_by_path(model)
    return holder


def restore_model_weights(model, checkpoint_path: str) -> None:
    """Loads the model variables of a training checkpoint into a built `model`.

    Raises:
      ValueError naming the model variables the checkpoint does not hold.
    """
    shapes = tf.train.load_checkpoint(checkpoint_path).get_variable_to_shape_map()
    holder = model_trackable(model)
    missing = [k for k, v in holder.variables_by_path.items()
               if list(shapes.get(_checkpoint_key(k), [-1])) != list(v.shape)]
    if missing:
        raise ValueError(f"{checkpoint_path} lacks (or has other shapes for) {len(missing)} of the model's "
                         f"{len(holder.variables_by_path)} variables (another model configuration?), e.g. {missing[:3]}")
    status = tf.train.Checkpoint(model_variables=holder).restore(checkpoint_path)
    status.expect_partial()
    status.assert_existing_objects_matched()


def _checkpoint_key(path: str) -> str:
    # Object names in checkpoint keys escape "/" as ".S" and "." as "..".
    escaped = path.replace(".", "..").replace("/", ".S")
    return f"model_variables/variables_by_path/{escaped}/.ATTRIBUTES/VARIABLE_VALUE"


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

    def check_tracked(self, variables) -> None:
        """Fails if some of `variables` are not reachable from the checkpoint (they would not be saved)."""
        reachable = {id(t) for t in tf.train.TrackableView(self.checkpoint).descendants()}
        missing = [getattr(v, "path", getattr(v, "name", "?")) for v in variables if id(v) not in reachable]
        if missing:
            raise ValueError(f"{len(missing)} model variable(s) are not tracked by tf.train.Checkpoint and would not "
                             f"be saved (keep layers as attributes or in lists/dicts of the model): {missing[:5]}")

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
