"""Checkpoints of a run: the model state and every worker's data position, saved and chosen as one unit.

Files, all numbered by the global step N:
- `DIR/ckpt-N`: model, optimizer (its iteration count is the global step) and the Figure 2 counters.
  Written by the chief; other workers write theirs to a scratch directory (every worker must take part
  in saving distributed variables) which is deleted afterwards.
- `DIR/data/worker_<i>/data-N`: the state of worker i's tf.data iterators, so a restarted run reads
  exactly the batches it would have read.
- `DIR/final_eval.json`: written after the final evaluation of a finished run returned.

One unit (`RunCheckpointer`): the data positions are written before the model checkpoint, and a
restart restores the newest ckpt-N whose data-N exists for every worker. A kill or a full disk between
the two writes therefore leaves the previous unit as the latest; a failed write stops the run with
`CheckpointWriteError` and removes the partial files of that step. Only when no kept checkpoint has a
data position (data checkpointing off, a pipeline that cannot be serialized, or only `ckpt-*` copied)
does a restart restore the newest ckpt-N and re-read N batches per replica from the unchanged pipeline.
Re-reading (rather than `Dataset.skip`) keeps the pipeline definition identical, so the data positions
saved afterwards restore in every later restart. A pipeline that cannot be serialized gets its stale
data positions removed, so later restarts never fall back to an older unit.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import time

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
        """Writes data-<step>. A pipeline that cannot be serialized disables this (and removes stale files);
        any other failure (e.g. a full disk) propagates."""
        if not self.enabled or self._manager is None:
            return
        try:
            self._manager.save(checkpoint_number=step)
        except _SAVE_ERRORS as e:
            self.enabled = False
            shutil.rmtree(self.directory, ignore_errors=True)
            logging.warning(
                "The input pipeline cannot be checkpointed (%s); a resumed run will re-read the "
                "already-seen batches instead (exact for a seeded pipeline, but slower to start).",
                str(e).splitlines()[0])


class CheckpointWriteError(OSError):
    """Raised when a checkpoint cannot be written (e.g. the disk is full); names the step and the kept unit."""


def checkpoint_steps(model_dir: str) -> list[int]:
    """Steps N of the model checkpoints `DIR/ckpt-N` present on disk, increasing."""
    steps = []
    for path in glob.glob(os.path.join(glob.escape(model_dir), "ckpt-*.index")):
        match = re.fullmatch(r"ckpt-(\d+)\.index", os.path.basename(path))
        if match:
            steps.append(int(match.group(1)))
    return sorted(steps)


def _remove(pattern: str) -> None:
    for path in glob.glob(pattern):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                pass


class RunCheckpointer:
    """The model checkpoint and the data positions of all workers, saved and restored as one unit.

    Args:
      model_dir: the run directory.
      trackables: name -> trackable of the model state (see `ModelCheckpointer`).
      max_to_keep: units kept.
      chief, worker_id, num_workers: this worker and the number of workers.
      data_enabled: save and restore data positions (False: always re-read on resume).
    """

    def __init__(self, model_dir: str, trackables: dict, *, max_to_keep: int = 5, chief: bool = True,
                 worker_id: int = 0, num_workers: int = 1, data_enabled: bool = True):
        self.model_dir = model_dir
        self.num_workers = num_workers
        self.model = ModelCheckpointer(model_dir, trackables, max_to_keep=max_to_keep, chief=chief,
                                       worker_id=worker_id)
        self.data = DataCheckpointer(model_dir, worker_id, max_to_keep)
        self.data.enabled = data_enabled

    def check_tracked(self, variables) -> None:
        self.model.check_tracked(variables)

    def track_iterators(self, iterators: dict) -> None:
        self.data.track(iterators)

    def _has_data(self, step: int) -> bool:
        return all(tf.io.gfile.exists(os.path.join(self.model_dir, "data", f"worker_{i}", f"data-{step}.index"))
                   for i in range(self.num_workers))

    def latest(self) -> str | None:
        """The checkpoint a restart restores: the newest complete unit, else the newest ckpt (see module doc)."""
        steps = checkpoint_steps(self.model_dir)
        if not steps:
            return None
        if self.data.enabled:
            complete = [s for s in steps if self._has_data(s)]
            if complete:
                steps = complete
        return os.path.join(self.model_dir, f"ckpt-{steps[-1]}")

    def restore(self) -> tuple[str | None, bool]:
        """Restores the latest unit. Returns (checkpoint path or None, whether the data position was restored).

        Raises:
          ValueError naming the data file when the input pipeline differs from the one that wrote it.
        """
        latest = self.latest()
        if latest is None:
            return None, False
        path = self.model.restore(latest)
        step = int(path.rsplit("-", 1)[1])
        if not self.data.enabled or self.data.path_for(step) is None:
            return path, False
        try:
            return path, self.data.restore(step)
        except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError, AssertionError) as e:
            raise ValueError(
                f"cannot restore the input-pipeline position {self.data.path_for(step)}: the input pipeline "
                f"differs from the one that wrote it (changed data configuration?). Start a new run, or delete "
                f"{os.path.join(self.model_dir, 'data')} to resume by re-reading the data. "
                f"({str(e).splitlines()[0]})") from e

    def save(self, step: int) -> str:
        """Writes data-<step> then ckpt-<step>; returns the checkpoint path.

        Raises:
          CheckpointWriteError (the partial files of `step` removed) when a write fails.
        """
        try:
            self.data.save(step)
            return self.model.save(step)
        except (OSError, tf.errors.OpError) as e:
            kept = self.latest_before(step)
            for suffix in (".*", "_temp*"):
                _remove(os.path.join(glob.escape(self.data.directory), f"data-{step}{suffix}"))
                if self.model.chief:
                    _remove(os.path.join(glob.escape(self.model_dir), f"ckpt-{step}{suffix}"))
            raise CheckpointWriteError(
                f"Could not write the checkpoint of step {step} to {self.model_dir} ({str(e).splitlines()[0]}); "
                f"is the disk full? Stopping. The latest complete checkpoint stays {kept}.") from e

    def latest_before(self, step: int) -> str | None:
        steps = [s for s in checkpoint_steps(self.model_dir) if s < step and (not self.data.enabled or self._has_data(s))]
        return os.path.join(self.model_dir, f"ckpt-{steps[-1]}") if steps else None


FINAL_EVAL_FILE = "final_eval.json"


def record_final_eval(model_dir: str, step: int) -> None:
    """Marks the final evaluation of a finished run (at `step`) as completed: DIR/final_eval.json."""
    path = os.path.join(model_dir, FINAL_EVAL_FILE)
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        json.dump({"step": int(step), "wall_time": time.time()}, f)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def final_eval_done(model_dir: str, step: int) -> bool:
    """Whether DIR/final_eval.json records a completed final evaluation at `step`."""
    path = os.path.join(model_dir, FINAL_EVAL_FILE)
    if not tf.io.gfile.exists(path):
        return False
    try:
        with tf.io.gfile.GFile(path) as f:
            return int(json.load(f)["step"]) == int(step)
    except (ValueError, KeyError, TypeError):
        return False
