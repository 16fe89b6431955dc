"""Backbone weight files: save / load by variable path, with a matched / unmatched report.

File format: an HDF5 file (Keras's weight-file container) with one dataset per variable, keyed by
the variable's path relative to the backbone (e.g. "res2_0/conv1/conv/kernel"), and the root
attribute `format = "rethink_tf.backbone_weights.v1"`. The ImageNet pre-training arm writes it
with `save_backbone_weights(backbone, path)` and the detector reads it with
`load_backbone_weights(model.backbone, path)`. Keys are independent of the enclosing model, so a
backbone trained alone loads into a MaskRCNN and vice versa.

A VGG-16 file also carries the classifier's fc6 and fc7 under "head/fc6/kernel", "head/fc6/bias",
"head/fc7/kernel", "head/fc7/bias" ([7 * 7 * 512, 4096] on pool5 flattened in (H, W, C) order, then
[4096, 4096]). The original Faster R-CNN's VGG-16 box head is these two layers, fine-tuned from
ImageNet; `load_vgg16_fc` copies them into the detector's 2fc box head. Backbone loading ignores
"head/" entries.
"""
import dataclasses
import os

import h5py
import numpy as np
from absl import logging

FORMAT = "rethink_tf.backbone_weights.v1"
HEAD_PREFIX = "head/"
VGG16_FC = ("fc6", "fc7")
VGG16_FC_ENTRIES = tuple(f"{name}/{part}" for name in VGG16_FC for part in ("kernel", "bias"))  # below head/


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


def save_backbone_weights(backbone, path, head=None):
    """Writes every backbone variable (trainable or not, e.g. BN statistics) to `path`, and `head`
    ({"fc6/kernel": array, ...}, VGG-16's fc6 / fc7) under HEAD_PREFIX."""
    variables = _variables_by_key(backbone)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["backbone"] = backbone.name
        for key, v in variables.items():
            f.create_dataset(key, data=np.asarray(v.numpy()))
        for key, value in (head or {}).items():
            f.create_dataset(HEAD_PREFIX + key, data=np.asarray(value))


def vgg16_fc_arrays(fc6, fc7):
    """{"fc6/kernel", "fc6/bias", "fc7/kernel", "fc7/bias": numpy arrays} of two Dense layers."""
    return {f"{name}/{part}": np.asarray(getattr(layer, part).numpy())
            for name, layer in zip(VGG16_FC, (fc6, fc7)) for part in ("kernel", "bias")}


def load_vgg16_fc(box_head, path):
    """Assigns the file's VGG-16 fc6 / fc7 to `box_head`'s two fc layers (a built TwoFCHead).

    Returns the keys assigned. Raises ValueError naming the file when it has no fc6 / fc7 (written
    before they were saved, or a body-only import) or when their shapes do not fit the head.
    """
    entries = _read_file(path, head=True)
    missing = [k for k in VGG16_FC_ENTRIES if k not in entries]
    if missing:
        raise ValueError(f"Backbone weights file {path} has no VGG-16 {', '.join(missing)} (entries "
                         f"'{HEAD_PREFIX}fc6/kernel', ...): the detector's fc6 / fc7 would start from random "
                         "weights instead of ImageNet's. Write the file again with this version "
                         "(rethink_tf.pretrain or rethink_tf.import_weights), or bind "
                         "experiment.vgg16_fc_from_weights = False to train them from random init.")
    layers = list(getattr(box_head, "fcs", []))
    if len(layers) != 2:
        raise ValueError(f"Backbone weights file {path}: VGG-16's fc6 / fc7 need a box head with two fc "
                         f"layers (TwoFCHead), got {type(box_head).__name__} with {len(layers)}")
    for name, layer in zip(VGG16_FC, layers):
        for part in ("kernel", "bias"):
            variable, value = getattr(layer, part), entries[f"{name}/{part}"]
            if tuple(variable.shape) != tuple(value.shape):
                raise ValueError(f"Backbone weights file {path}: {HEAD_PREFIX}{name}/{part} has shape "
                                 f"{tuple(value.shape)}, the box head's {layer.name}/{part} "
                                 f"{tuple(variable.shape)} (build_classifier.fc_dim and the box head's "
                                 "fc_dim must both be 4096)")
            variable.assign(value.astype(variable.dtype))
    logging.info("VGG-16 fc6 / fc7 of %s loaded into %s", path, box_head.name)
    return list(VGG16_FC_ENTRIES)


def _read_file(path, head=False):
    """{key: array} of the file's backbone entries, or (head=True) of its HEAD_PREFIX entries keyed
    without the prefix. Only the datasets of that part are read (a VGG-16 file's fc6 / fc7 are 7x its
    body)."""
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
        group = HEAD_PREFIX.rstrip("/")
        if head and group not in f:
            return {}
        entries = {}
        (f[group] if head else f).visititems(
            lambda name, obj: entries.__setitem__(name, obj[()])
            if isinstance(obj, h5py.Dataset) and (head or not name.startswith(HEAD_PREFIX)) else None)
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
