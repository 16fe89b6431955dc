"""The pre-training arm's output: the backbone weight file plus the samples the pre-training saw.

`write(backbone, path, samples, details)` writes
  * `path`: the backbone weight file (`rethink_tf.modeling.weights.save_backbone_weights`), what the
    detection configs' `experiment.backbone_weights` reads;
  * `path + SAMPLES_SUFFIX`: JSON {"images", "instances", "pixels", ...details} (also what
    `python -m rethink_tf.evaluation.figure2 --pretrain_counts=FILE` reads).
A fine-tuning run started from `path` reads the counts with `read_samples(path)` and carries
pre-training + fine-tuning counts (Figure 2). Counting rule for classification (the paper's Figure 2):
one instance per image and crop_size**2 pixels per image (224 x 224 on ImageNet).
"""

from __future__ import annotations

import json
import math

import tensorflow as tf

from rethink_tf.utils import validate

SAMPLES_SUFFIX = ".samples.json"
SAMPLE_KINDS = ("images", "instances", "pixels")


def samples_path(weights_path: str) -> str:
    return weights_path + SAMPLES_SUFFIX


def write(backbone, path: str, samples: dict, details: dict | None = None, head: dict | None = None) -> str:
    """Writes the backbone file (with `head`, VGG-16's fc6 / fc7 arrays, `weights.save_backbone_weights`)
    and its samples record; returns the record's path."""
    from rethink_tf.modeling import weights

    weights.save_backbone_weights(backbone, path, head=head)
    record = {**(details or {}), "backbone_weights": path,
              **{k: float(samples.get(k, 0.0)) for k in SAMPLE_KINDS}}
    out = samples_path(path)
    with tf.io.gfile.GFile(out, "w") as f:
        json.dump(record, f, indent=1)
    return out


def read_samples(weights_path: str) -> dict:
    """{kind: float} the pre-training that wrote `weights_path` saw; {} when it has no samples record
    (a backbone file from elsewhere, e.g. an imported one).

    Raises:
      InputError naming the record file when it exists but is not such a record.
    """
    path = samples_path(weights_path)
    if not tf.io.gfile.exists(path):
        return {}
    try:
        with tf.io.gfile.GFile(path) as f:
            counts = json.load(f)
        out = {k: float(counts[k]) for k in SAMPLE_KINDS}
    except (ValueError, KeyError, TypeError) as err:
        raise validate.InputError(f"{path}: not a samples record of a pre-training (expected "
                                  f'{{"images": ..., "instances": ..., "pixels": ...}}): {err!r}') from err
    if not all(math.isfinite(v) and v >= 0 for v in out.values()):
        raise validate.InputError(f"{path}: samples_seen must be finite and >= 0, got {out}")
    return out
