"""Rebuilds a trained detector from a training directory, for export.

A training run's DIR holds `config.gin` (the parsed gin configuration), `label_map.json`
(contiguous label l <-> categories[l - 1] = {"id", "name"}), `inference_config.json` (the resolved
inference settings, below) and checkpoints `ckpt-<step>` written by
`rethink_tf.training.checkpointing.ModelCheckpointer` (model variables stored by Keras path).
From these we rebuild exactly the evaluated model: `build_model(num_classes=K)` under the run's
gin bindings, the eval preprocessing and the label map.

`inference_config.json` is written once at train time (`write_inference_config`), resolved from the
training configuration: {"version": 1, "preprocessing": InferenceConfig fields (eval short side,
max size, landscape / portrait canvases, pixel mean / std), "eval_pipeline": the `build_dataset`
arguments of the eval pipeline (eval_short_side, max_size, canvas_size, aspect_grouping,
divide_by_std), "postprocessing": {score_threshold, nms_iou, detections_per_image}, "masks": bool,
"mask_threshold", "label_map": "label_map.json"}. Export and evaluate read it
(`read_inference_config`, `eval_pipeline_bindings`) instead of re-deriving the canvases from gin
queries. Fallback for run directories written before the file existed: the settings are derived
from DIR/config.gin as before (`inference_config()`), with a warning naming the missing file.

Before that, `check_run_dir` refuses a config.gin that is not the one the checkpoint was trained with
(`rethink_tf.training.run_record`: the record in the checkpoint and DIR/run_config.json); bindings
given on top (`extra_bindings`, the CLIs' --gin_bindings) are deliberate changes and apply after it.
"""
import dataclasses
import inspect
import json
import os

import gin
import tensorflow as tf
from absl import logging

from rethink_tf.utils.validate import InputError

CONFIG_FILE = "config.gin"
LABEL_MAP_FILE = "label_map.json"
INFERENCE_CONFIG_FILE = "inference_config.json"
_EVAL_PIPELINE_ARGS = ("eval_short_side", "max_size", "canvas_size", "aspect_grouping", "divide_by_std")


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """Eval-time preprocessing of a run (pixels), as the input pipeline applies it.

    landscape_canvas / portrait_canvas: (H, W) canvas of the images with h <= w / h > w (equal, one
    square, without aspect grouping); see `rethink_tf.data.preprocess.canvas_shapes`.
    """
    short_side: int
    max_size: int
    landscape_canvas: tuple
    portrait_canvas: tuple
    pixel_mean: tuple
    pixel_std: tuple | None
    channel_order: str = "rgb"


def read_label_map(model_dir):
    """DIR/label_map.json -> list of {"id": int, "name": str} for labels 1..K."""
    path = os.path.join(model_dir, LABEL_MAP_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: the training run writes it (rethink_tf.train)")
    with tf.io.gfile.GFile(path) as f:
        record = json.load(f)
    categories = record.get("categories") if isinstance(record, dict) else None
    if not categories or not all(isinstance(c, dict) and "id" in c and "name" in c
                                 for c in categories):
        raise ValueError(f"{path}: expected {{'categories': [{{'id', 'name'}}, ...]}} (non-empty)")
    return [{"id": int(c["id"]), "name": str(c["name"])} for c in categories]


def parse_config(model_dir, extra_bindings=()):
    """Parses DIR/config.gin (unknown names are errors) plus `extra_bindings`.

    A config.gin written before build_model's settings moved to the component builders (issue 9) is
    read in the new names (`factory.translate_flat_bindings`), with a warning.
    """
    import tempfile

    from rethink_tf.modeling.factory import translate_flat_bindings
    from rethink_tf.training import config
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: the training run writes it (rethink_tf.train)")
    gin.clear_config()
    with tf.io.gfile.GFile(path) as f:
        text, renamed = translate_flat_bindings(f.read())
    if not renamed:
        config.parse([path], list(extra_bindings), finalize=False)
        return
    logging.warning("%s uses build_model bindings that moved to the component builders (%s); reading them "
                    "under their new names (rethink_tf/modeling/README.md, 'Bindings')", path, ", ".join(renamed))
    with tempfile.TemporaryDirectory() as tmp:
        translated = os.path.join(tmp, CONFIG_FILE)
        with open(translated, "w") as f:
            f.write(text)
        config.parse([translated], list(extra_bindings), finalize=False)


def _eval_dataset_parameter(name):
    """The value `build_dataset(name)` gets in the eval/ scope under the parsed configuration."""
    for binding in (f"eval/build_dataset.{name}", f"build_dataset.{name}"):
        try:
            return gin.query_parameter(binding)
        except ValueError:
            continue
    from rethink_tf.data.input_pipeline import build_dataset
    return inspect.signature(build_dataset).parameters[name].default


def inference_config():
    """The eval preprocessing of the parsed configuration (call after `parse_config`)."""
    from rethink_tf.data import preprocess
    from rethink_tf.data.input_pipeline import dataset_canvases
    short_side = int(_eval_dataset_parameter("eval_short_side"))
    max_size = int(_eval_dataset_parameter("max_size"))
    canvas_size = _eval_dataset_parameter("canvas_size")
    landscape, portrait = dataset_canvases(  # the eval pipeline's canvases
        training=False, eval_short_side=short_side, max_size=max_size,
        canvas_size=None if canvas_size is None else int(canvas_size),
        aspect_grouping=bool(_eval_dataset_parameter("aspect_grouping")))
    norm = preprocess.pixel_normalization(bool(_eval_dataset_parameter("divide_by_std")))
    return InferenceConfig(
        short_side=short_side, max_size=max_size, landscape_canvas=landscape, portrait_canvas=portrait,
        pixel_mean=norm.mean, pixel_std=norm.std, channel_order=norm.channel_order)


def resolved_inference_config(model):
    """The inference settings of the parsed configuration and of `model` (a built-or-not MaskRCNN),
    as the json-able dict of DIR/inference_config.json (module docstring)."""
    from rethink_tf.modeling.postprocess import MASK_THRESHOLD
    pre = inference_config()
    post = model.postprocessor
    return {
        "version": 1,
        "preprocessing": {k: (list(v) if isinstance(v, tuple) else v)
                          for k, v in dataclasses.asdict(pre).items()},
        "eval_pipeline": {name: _eval_dataset_parameter(name) for name in _EVAL_PIPELINE_ARGS},
        "postprocessing": {"score_threshold": post.score_threshold, "nms_iou": post.nms_iou,
                           "detections_per_image": post.detections_per_image},
        "masks": bool(model.has_masks),
        "mask_threshold": MASK_THRESHOLD,
        "label_map": LABEL_MAP_FILE,
    }


def write_inference_config(model_dir, model):
    """Writes DIR/inference_config.json (call at train time, after the gin config is parsed)."""
    path = os.path.join(model_dir, INFERENCE_CONFIG_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(resolved_inference_config(model), indent=1, sort_keys=True))
    return path


def read_inference_config(model_dir):
    """DIR/inference_config.json -> its dict, or None (with a warning) for a run directory written
    before the file existed; a malformed file raises InputError naming it and the field."""
    path = os.path.join(model_dir, INFERENCE_CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        logging.warning("%s not found (a run written before it existed): deriving the inference "
                        "settings from %s instead.", path, CONFIG_FILE)
        return None
    try:
        with tf.io.gfile.GFile(path) as f:
            record = json.load(f)
    except ValueError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from e
    fields = [f.name for f in dataclasses.fields(InferenceConfig)]
    for key, sub in (("preprocessing", fields), ("eval_pipeline", _EVAL_PIPELINE_ARGS),
                     ("postprocessing", ("score_threshold", "nms_iou", "detections_per_image"))):
        if not isinstance(record.get(key), dict) or any(name not in record[key] for name in sub):
            raise InputError(f"{path}: field {key!r} must be an object with {list(sub)}")
    if not isinstance(record.get("mask_threshold"), (int, float)):
        raise InputError(f"{path}: field 'mask_threshold' must be a number")
    return record


def preprocessing_config(model_dir):
    """The run's InferenceConfig: from DIR/inference_config.json, else (older runs) derived from the
    parsed DIR/config.gin."""
    record = read_inference_config(model_dir)
    if record is None:
        return inference_config()
    pre = record["preprocessing"]
    return InferenceConfig(
        short_side=int(pre["short_side"]), max_size=int(pre["max_size"]),
        landscape_canvas=tuple(int(v) for v in pre["landscape_canvas"]),
        portrait_canvas=tuple(int(v) for v in pre["portrait_canvas"]),
        pixel_mean=tuple(float(v) for v in pre["pixel_mean"]),
        pixel_std=None if pre["pixel_std"] is None else tuple(float(v) for v in pre["pixel_std"]))


def eval_pipeline_bindings(model_dir):
    """gin bindings ("eval/build_dataset.<arg> = <value>") that make the eval pipeline use the run's
    resolved settings from DIR/inference_config.json; [] for older runs (config.gin's apply)."""
    record = read_inference_config(model_dir)
    if record is None:
        return []
    return [f"eval/build_dataset.{name} = {value!r}" for name, value in record["eval_pipeline"].items()]


def mask_threshold(model_dir, default=0.5):
    """The run's mask paste threshold (DIR/inference_config.json), else `default`."""
    record = read_inference_config(model_dir)
    return default if record is None else float(record["mask_threshold"])


def resolve_checkpoint(model_dir, checkpoint=None):
    """`checkpoint` if given (must exist), else the latest `ckpt-<step>` in DIR; errors name the path."""
    if checkpoint:
        if not tf.io.gfile.exists(checkpoint + ".index"):
            raise FileNotFoundError(f"--checkpoint={checkpoint}: no such checkpoint "
                                    f"({checkpoint}.index does not exist)")
        return checkpoint
    latest = tf.train.latest_checkpoint(model_dir)
    if latest is None:
        raise FileNotFoundError(f"no checkpoint in {model_dir} (train first, or pass --checkpoint)")
    return latest


def checkpoint_has_masks(checkpoint):
    """True when the checkpointed model has a mask head (its variables are in the checkpoint)."""
    from rethink_tf.training.checkpointing import _checkpoint_key
    prefix = _checkpoint_key("mask_head/").split("mask_head")[0] + "mask_head"
    return any(name.startswith(prefix) for name, _ in tf.train.list_variables(checkpoint))


class IncompleteCheckpointError(InputError):
    """The checkpoint lacks some of the model's variables (or holds other shapes)."""


def restore_model(model, checkpoint):
    """Restores a built `model` from a trainer checkpoint; every model variable must be restored.

    Uses the trainer's own `restore_model_weights` (variables stored by Keras path).

    Raises:
        IncompleteCheckpointError naming the variables the checkpoint does not hold.
    """
    from rethink_tf.training.checkpointing import restore_model_weights
    try:
        restore_model_weights(model, checkpoint)
    except (ValueError, AssertionError) as e:
        raise IncompleteCheckpointError(
            f"{checkpoint} does not match the model built from config.gin: {e}") from e
    return model


def _build(categories, checkpoint):
    from rethink_tf.modeling.factory import build_model
    kwargs = {} if checkpoint_has_masks(checkpoint) else {"mask": False}
    return build_model(num_classes=len(categories), **kwargs)


def check_run_dir(model_dir, checkpoint=None):
    """Refuses a DIR/config.gin that is not what the checkpoint was trained with.

    Parses DIR/config.gin alone (leaves it parsed), rebuilds the run record (`run_record.describe`) and
    compares it with the checkpoint's record and DIR/run_config.json.

    Returns:
        (model built from config.gin without weights, categories, run record, checkpoint path).
    Raises:
        run_record.RunMismatchError naming the differing fields; FileNotFoundError for missing files.
    """
    from rethink_tf.training import run_record
    checkpoint = resolve_checkpoint(model_dir, checkpoint)
    categories = read_label_map(model_dir)
    parse_config(model_dir)
    model = _build(categories, checkpoint)
    record = run_record.describe(model, [c["id"] for c in categories])
    run_record.check(record, model_dir, checkpoint, CONFIG_FILE,
                     advice=f"Put back the run's own {CONFIG_FILE} ({run_record.RECORD_FILE} records what it "
                            "was trained with); pass intended changes as --gin_bindings.")
    return model, categories, record, checkpoint


def load_model(model_dir, checkpoint=None, extra_bindings=()):
    """Rebuilds and restores a run's model, after `check_run_dir`; `extra_bindings` apply after the check.

    Returns:
        (model, categories [{"id", "name"}], InferenceConfig (DIR/inference_config.json, else derived
        from config.gin for older runs), checkpoint path).
    """
    model, categories, record, checkpoint = check_run_dir(model_dir, checkpoint)
    if extra_bindings:
        from rethink_tf.training import run_record
        parse_config(model_dir, extra_bindings)
        model = _build(categories, checkpoint)
        changed, _ = run_record.compare(record, run_record.describe(model, [c["id"] for c in categories]),
                                        CONFIG_FILE, "--gin_bindings")
        for line in changed:
            logging.info("Overridden: %s", line)
    model.build_networks()
    restore_model(model, checkpoint)
    return model, categories, preprocessing_config(model_dir), checkpoint
