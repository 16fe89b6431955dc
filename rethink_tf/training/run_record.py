"""The record of what a run was trained with, and the refusal of a configuration that differs from it.

A run's DIR/config.gin is a plain file: copied over from another run, it still parses, and when the
variable shapes happen to agree the checkpoint restores and evaluate/export serve a different model
(other anchors, other eval size) without a word. So a run records what it was trained with:

- `DIR/run_config.json` (written at train start, for people and tools) and, authoritatively, the same
  record inside every checkpoint (`RECORD_KEY`, a string variable), so a checkpoint describes itself.
- The record is a flat dict of named fields (`describe`):
  `build_model.<arg>`: every `build_model` argument as used (its defaults, the gin bindings, then the
  explicit `num_classes` / `mask` of the call); `<component>.<arg>` likewise for every component
  builder of MODEL_CONFIGURABLES (build_backbone, build_rpn, ..., build_norm); `model.<attr>`: the built
  model's resolved inference settings (anchors, RPN levels, test top-k, NMS, score threshold,
  detections per image), which also catches a change of code defaults; `inference.<field>`: the eval
  preprocessing (`rethink_tf.serving.model_dir.inference_config()`, every field); `label_map.category_ids`.
  Its `fingerprint` is the sha256 of the canonical JSON of the fields.

Checks (`compare`): evaluate and export rebuild the record from DIR/config.gin and refuse a difference
from the checkpoint's record (or, for checkpoints without one, from run_config.json), naming each
differing field with both values; `rethink_tf.train` refuses to resume a DIR whose latest checkpoint
records another configuration. Fields present on one side only (a newer version of the code added a
`build_model` argument) are reported as warnings, not refusals. DIRs written before this record existed
have neither: a warning, and the run is used as before. Intended changes at evaluate/export time go
through `--gin_bindings`, which apply after the check.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os

import gin
import tensorflow as tf
from absl import logging

from rethink_tf.utils.validate import InputError

RECORD_FILE = "run_config.json"
RECORD_KEY = "run_record"  # name of the string variable in the checkpoint
_CHECKPOINT_TENSOR = f"{RECORD_KEY}/.ATTRIBUTES/VARIABLE_VALUE"
# The gin configurables that shape the model (build_model and the component builders it calls), with
# the parameters each call sets itself (gin's denylist, or set by build_model), which are not configuration.
MODEL_CONFIGURABLES = {
    "build_model": (), "build_backbone": ("kind", "norm", "name"), "build_fpn": ("norm",),
    "build_rpn": ("feature_channels", "default_levels", "default_anchor_sizes"),
    "conv_fc_box_head": ("name", "norm", "default_fc_dim"), "fc_box_head": ("name", "norm", "default_fc_dim"),
    "roi_sampling": (), "standard_roi_heads": ("num_classes", "stage_kwargs", "branches"),
    "cascade_roi_heads": ("num_classes", "stage_kwargs", "branches"),
    "build_mask_branch": ("num_classes", "norm", "pooler_kwargs"),
    "build_keypoint_branch": ("num_classes", "head_norm", "pooler_kwargs"), "build_postprocessor": (),
    "roi_pooler": (), "build_norm": ("kind", "name", "zero_init")}
# Resolved inference settings read from the built MaskRCNN (attribute -> how to read it).
_MODEL_ATTRIBUTES = {
    "num_classes": lambda m: m.num_classes,
    "mask": lambda m: m.has_masks,
    "anchor_sizes": lambda m: m.rpn.anchor_sizes,
    "aspect_ratios": lambda m: m.rpn.aspect_ratios,
    "rpn_levels": lambda m: m.rpn.levels,
    "pre_nms_topk_test": lambda m: m.rpn.pre_nms_topk[False],
    "post_nms_topk_test": lambda m: m.rpn.post_nms_topk[False],
    "rpn_nms_iou": lambda m: m.rpn.nms_iou,
    "score_threshold": lambda m: m.postprocessor.score_threshold,
    "nms_iou": lambda m: m.postprocessor.nms_iou,
    "detections_per_image": lambda m: m.postprocessor.detections_per_image,
}


class RunMismatchError(InputError):
    """The configuration differs from the one the run was trained with; the message names the fields."""


def _canonical(value):
    """JSON-able form: tuples -> lists, integral floats -> ints (so 1 and 1.0 agree), others -> repr."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalars
        return _canonical(value.item())
    return repr(value)


def configurable_arguments(name: str, skip=(), **explicit) -> dict:
    """Every argument of gin configurable `name` as a call with `explicit` kwargs would get it.

    Signature defaults, then the (unscoped) gin bindings, then `explicit`; parameters in `skip` and
    `gin.REQUIRED` placeholders are left out unless given explicitly.
    """
    fn = gin.get_configurable(name)
    while hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    values = {}
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or pname in skip:
            continue
        if param.default is not inspect.Parameter.empty and param.default is not gin.REQUIRED:
            values[pname] = param.default
    values.update(gin.get_bindings(name))
    values.update(explicit)
    return values


def describe(model, category_ids) -> dict:
    """The record of `model` (a MaskRCNN built under the parsed gin configuration) -> dict.

    Returns {"fields": {name: canonical value}, "fingerprint": sha256 hex of the fields}.
    """
    from rethink_tf.serving.model_dir import inference_config

    fields = {}
    explicit = {"num_classes": model.num_classes, "mask": model.has_masks, "keypoints": model.has_keypoints}
    for name, skip in MODEL_CONFIGURABLES.items():
        args = configurable_arguments(name, skip, **(explicit if name == "build_model" else {}))
        fields.update({f"{name}.{k}": v for k, v in args.items()})
    for attr, read in _MODEL_ATTRIBUTES.items():
        fields[f"model.{attr}"] = read(model)
    fields.update({f"inference.{k}": v for k, v in dataclasses.asdict(inference_config()).items()})
    fields["label_map.category_ids"] = [int(i) for i in category_ids]
    fields = {k: _canonical(v) for k, v in sorted(fields.items())}
    return {"fields": fields, "fingerprint": fingerprint(fields)}


def fingerprint(fields: dict) -> str:
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def to_json(record: dict) -> str:
    return json.dumps(record, sort_keys=True, indent=1)


def write(model_dir: str, record: dict) -> str:
    """Writes DIR/run_config.json; returns its path."""
    tf.io.gfile.makedirs(model_dir)
    path = os.path.join(model_dir, RECORD_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(to_json(record) + "\n")
    return path


def read_file(model_dir: str) -> dict | None:
    """DIR/run_config.json, or None when the run predates it."""
    path = os.path.join(model_dir, RECORD_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError as e:
            raise RunMismatchError(f"{path} is not valid JSON ({e}); it records what the run was "
                                   "trained with (rethink_tf.train writes it)") from e
    if not isinstance(record, dict) or not isinstance(record.get("fields"), dict):
        raise RunMismatchError(f"{path}: expected {{'fields': {{...}}, 'fingerprint': ...}}")
    return record


def read_checkpoint(checkpoint: str) -> dict | None:
    """The record stored in `checkpoint`, or None when the checkpoint predates it."""
    reader = tf.train.load_checkpoint(checkpoint)
    if not reader.has_tensor(_CHECKPOINT_TENSOR):
        return None
    text = reader.get_tensor(_CHECKPOINT_TENSOR)
    text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
    return json.loads(text) if text else None


def checkpoint_variable() -> tf.Variable:
    """The string variable a Trainer checkpoints under RECORD_KEY (assign `to_json(record)` to it)."""
    with tf.device("/cpu:0"):
        return tf.Variable("", dtype=tf.string, trainable=False, name=RECORD_KEY)


def _show(value) -> str:
    return json.dumps(value)


def compare(recorded: dict, current: dict, recorded_name: str, current_name: str) -> tuple[list, list]:
    """(differences, one-sided) lines "field: <recorded_name> v vs <current_name> w" between two records."""
    if recorded.get("fingerprint") == current.get("fingerprint"):
        return [], []
    a, b = recorded["fields"], current["fields"]
    differences = [f"{k}: {recorded_name} {_show(a[k])} vs {current_name} {_show(b[k])}"
                   for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
    one_sided = [f"{k}: only in {recorded_name if k in a else current_name} "
                 f"({_show(a[k] if k in a else b[k])})" for k in sorted(a.keys() ^ b.keys())]
    return differences, one_sided


def check(current: dict, model_dir: str, checkpoint: str | None, current_name: str,
          advice: str) -> None:
    """Compares `current` with the record of `checkpoint` and with DIR/run_config.json.

    Raises:
        RunMismatchError naming every differing field (and `advice`). Without any record: a warning.
    """
    sources = []
    if checkpoint:
        recorded = read_checkpoint(checkpoint)
        if recorded is not None:
            sources.append((f"the run ({os.path.basename(checkpoint)})", recorded))
    recorded = read_file(model_dir)
    if recorded is not None:
        sources.append((f"the run ({RECORD_FILE})", recorded))
    if not sources:
        logging.warning("%s has no record of what it was trained with (%s, or one in the checkpoint; "
                        "runs before the record existed): cannot check that %s describes it",
                        model_dir, RECORD_FILE, current_name)
        return
    for name, recorded in sources:
        differences, one_sided = compare(recorded, current, "run", current_name)
        if one_sided:
            logging.warning("%s and %s record different fields (another version of the code?): %s",
                            name, current_name, "; ".join(one_sided))
        if differences:
            raise RunMismatchError(
                f"{current_name} differs from what {model_dir} was trained with, according to {name}: "
                + "; ".join(differences) + f". {advice}")
