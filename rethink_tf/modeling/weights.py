"""Backbone weight files: save / load by variable path, with a matched / unmatched report.

File format: an HDF5 file (Keras's weight-file container) with one dataset per variable, keyed by
the variable's path relative to the backbone (e.g. "res2_0/conv1/conv/kernel"), and the root
attribute `format = "rethink_tf.backbone_weights.v1"`. The ImageNet pre-training arm writes it
with `save_backbone_weights(backbone, path)` and the detector reads it with
`load_backbone_weights(model.backbone, path)`. Keys are independent of the enclosing model, so a
backbone trained alone loads into a MaskRCNN and vice versa.
"""
import dataclasses
import os

import h5py
import numpy as np
from absl import logging

FORMAT = "rethink_tf.backbone_weights.v1"


@dataclasses.dataclass
class LoadReport:
    """Outcome of a load: variable keys by category (relative paths)."""
    matched: list
    missing_in_file: list     # backbone variables the file lacks (left at their initial value)
    unused_in_file: list      # file entries the backbone does not have
    shape_mismatch: list      # (key, model shape, file shape)

    def summary(self):
        return (f"matched {len(self.matched)}, missing in file {len(self.missing_in_file)}, "
                f"unused in file {len(self.unused_in_file)}, shape mismatch {len(self.shape_mismatch)}")


def _relative_key(variable, backbone):
    """Path of `variable` below the backbone layer, e.g. 'stem/conv/kernel'."""
    path = variable.path
    marker = backbone.name + "/"
    idx = path.find(marker)
    return path[idx + len(marker):] if idx >= 0 else path


def _variables_by_key(backbone):
    if not backbone.built or not backbone.weights:
        raise ValueError(f"Backbone {backbone.name!r} has no variables yet: call the model (or the "
                         "backbone) once on an input before saving or loading weights.")
    out = {}
    for v in backbone.weights:
        key = _relative_key(v, backbone)
        if key in out:
            raise ValueError(f"Duplicate variable key {key!r} in backbone {backbone.name!r}.")
        out[key] = v
    return out


def save_backbone_weights(backbone, path):
    """Writes every backbone variable (trainable or not, e.g. BN statistics) to `path`."""
    variables = _variables_by_key(backbone)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["backbone"] = backbone.name
        for key, v in variables.items():
            f.create_dataset(key, data=np.asarray(v.numpy()))


def _read_file(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"Backbone weights file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"Backbone weights file {path} is not an HDF5 file: {err}") from err
    with f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"Backbone weights file {path} has format {f.attrs.get('format')!r}; "
                             f"expected {FORMAT!r} (written by rethink_tf.modeling.weights."
                             "save_backbone_weights).")
        entries = {}
        f.visititems(lambda name, obj: entries.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return entries


def load_backbone_weights(backbone, path, allow_missing=False):
    """Assigns the file's values to the backbone's variables with the same relative path.

    Returns a LoadReport (also logged). Raises FileNotFoundError for a missing file, ValueError
    for a file of another format, any shape mismatch, no match at all, or (unless
    `allow_missing`) backbone variables absent from the file.
    """
    variables = _variables_by_key(backbone)
    entries = _read_file(path)
    report = LoadReport(matched=[], missing_in_file=[], unused_in_file=[], shape_mismatch=[])
    for key, v in variables.items():
        if key not in entries:
            report.missing_in_file.append(key)
        elif tuple(entries[key].shape) != tuple(v.shape):
            report.shape_mismatch.append((key, tuple(v.shape), tuple(entries[key].shape)))
        else:
            report.matched.append(key)
    report.unused_in_file = sorted(set(entries) - set(variables))
    logging.info("Backbone weights %s: %s", path, report.summary())
    if report.shape_mismatch:
        shown = "; ".join(f"{k}: model {m} vs file {f}" for k, m, f in report.shape_mismatch[:5])
        raise ValueError(f"Backbone weights file {path}: {len(report.shape_mismatch)} shape "
                         f"mismatches ({shown}). Is the file for another depth or width?")
    if not report.matched:
        raise ValueError(f"Backbone weights file {path}: no variable matches backbone "
                         f"{backbone.name!r} ({report.summary()}).")
    if report.missing_in_file and not allow_missing:
        raise ValueError(f"Backbone weights file {path} lacks {len(report.missing_in_file)} "
                         f"variables, e.g. {report.missing_in_file[:5]} ({report.summary()}); "
                         "pass allow_missing=True to keep their initial values.")
    for key in report.matched:
        variables[key].assign(entries[key].astype(variables[key].dtype))
    return report
