"""Start a run from another run's checkpoint: the variables both models share, by path.

The paper trains its X152 Mask R-CNN from scratch and switches to Cascade R-CNN for the final part of
the schedule. A new run does this by initializing its model from the plain run's `ckpt-N`
(`experiment.init_checkpoint`): every variable whose path (`checkpointing.variables_by_path`, e.g.
"backbone/res2_0/conv1/conv/kernel") and shape agree is copied; the model's other variables (the new
cascade stages) keep their fresh initialization; checkpoint variables the model lacks are reported as
unused. Only model weights are read: the optimizer (step, momentum) and the samples-seen counters start
fresh in the new run, which runs the remainder of the schedule as its own schedule (see
`gin_configs/x152_cascade_switch.gin`: total steps = what is left, the LR decays at the same points
counted from the switch, no warmup), so its LR at step s equals the long schedule's at N + s.

A variable in both with different shapes is an error naming it (another depth or width), unless its
path matches one of the `skip` regular expressions: those are always left fresh (e.g. a class-specific
box regressor becoming class-agnostic).

The report (`WarmStartReport`, written as DIR/init_checkpoint.json) lists matched / fresh / skipped /
unused paths. A restarted run restores its own latest checkpoint afterwards, which overrides these
initial values as it should.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re

import tensorflow as tf
from absl import logging

from rethink_tf.training import checkpointing
from rethink_tf.utils import validate

REPORT_FILE = "init_checkpoint.json"
_PREFIX = "model_variables/variables_by_path/"
_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


@dataclasses.dataclass
class WarmStartReport:
    """Variable paths (below the model) by outcome."""
    checkpoint: str
    matched: list        # copied from the checkpoint
    fresh: list          # in the model only: initial values kept
    skipped: list        # in both, matching a `skip` pattern: initial values kept ([path, model shape, ckpt shape])
    unused: list         # in the checkpoint only

    def summary(self):
        return (f"matched {len(self.matched)}, fresh {len(self.fresh)}, skipped {len(self.skipped)}, "
                f"unused {len(self.unused)}")


def _unescape(name):
    """Inverse of checkpointing._checkpoint_key's escaping ("." -> "..", "/" -> ".S")."""
    return re.sub(r"\.([.S])", lambda m: "." if m.group(1) == "." else "/", name)


def checkpoint_model_variables(checkpoint_path):
    """{variable path: shape} of the model variables a training checkpoint holds."""
    shapes = tf.train.load_checkpoint(checkpoint_path).get_variable_to_shape_map()
    return {_unescape(k[len(_PREFIX):-len(_SUFFIX)]): tuple(s) for k, s in shapes.items()
            if k.startswith(_PREFIX) and k.endswith(_SUFFIX)}


def resolve_checkpoint(path, binding="experiment.init_checkpoint"):
    """A checkpoint prefix (".../ckpt-N") or a run directory (its latest checkpoint) -> the prefix."""
    validate.path(binding, path)
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise validate.InputError(f"{binding} = {path!r}: the directory holds no checkpoint")
        return latest
    if not tf.io.gfile.exists(path + ".index"):
        raise validate.InputError(f"{binding} = {path!r}: no checkpoint there (expected a run directory or "
                                  f"a checkpoint prefix such as DIR/ckpt-540000 with DIR/ckpt-540000.index)")
    return path


def init_from_checkpoint(model, checkpoint_path, skip=(), binding="experiment.init_checkpoint"):
    """Copies the shared variables of `checkpoint_path` into the built `model`. Returns the report.

    Args:
      model: a built Keras model (all variables created).
      checkpoint_path: a training checkpoint prefix or a run directory (`resolve_checkpoint`).
      skip: regular expressions (re.search on the variable path); matching variables are left fresh.
      binding: named in errors.
    Raises:
      InputError: no checkpoint, no shared variable at all, or a shape mismatch not covered by `skip`.
    """
    checkpoint_path = resolve_checkpoint(checkpoint_path, binding)
    patterns = [re.compile(p) for p in skip]
    stored = checkpoint_model_variables(checkpoint_path)
    variables = checkpointing.variables_by_path(model)
    if not variables:
        raise ValueError("init_from_checkpoint: the model has no variables yet; build it first")
    report = WarmStartReport(checkpoint=checkpoint_path, matched=[], fresh=[], skipped=[], unused=[])
    mismatched = []
    for path, variable in variables.items():
        shape = tuple(variable.shape)
        if path not in stored:
            report.fresh.append(path)
        elif any(p.search(path) for p in patterns):
            report.skipped.append([path, list(shape), list(stored[path])])
        elif stored[path] != shape:
            mismatched.append(f"{path}: model {shape} vs checkpoint {stored[path]}")
        else:
            report.matched.append(path)
    report.unused = sorted(set(stored) - set(variables))
    if mismatched:
        raise validate.InputError(
            f"{binding} = {checkpoint_path!r}: {len(mismatched)} variable(s) have other shapes than the model's, "
            f"e.g. {mismatched[:3]} (another depth, width or class count?); variables meant to start fresh "
            f"go in {binding}_skip")
    if not report.matched:
        raise validate.InputError(f"{binding} = {checkpoint_path!r}: no variable of the model is in it "
                                  f"({report.summary()})")
    reader = tf.train.load_checkpoint(checkpoint_path)
    for path in report.matched:
        value = reader.get_tensor(checkpointing._checkpoint_key(path))
        variables[path].assign(tf.cast(value, variables[path].dtype))
    logging.info("Initialized from %s: %s", checkpoint_path, report.summary())
    return report


def write_report(report, directory):
    """Writes DIR/init_checkpoint.json; returns its path."""
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, REPORT_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({**dataclasses.asdict(report), "summary": report.summary()}, f, indent=1)
    return path
