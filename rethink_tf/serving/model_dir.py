"""Rebuilds a trained detector from a training directory, for export.

A training run's DIR holds `config.gin` (the parsed gin configuration), `label_map.json`
(contiguous label l <-> categories[l - 1] = {"id", "name"}) and checkpoints `ckpt-<step>` written by
`rethink_tf.training.checkpointing.ModelCheckpointer` (model variables stored by Keras path).
From these we rebuild exactly the evaluated model: `build_model(num_classes=K)` under the run's
gin bindings, the eval preprocessing (`build_dataset` parameters in the `eval/` scope, falling back
to unscoped bindings and then to `build_dataset`'s defaults) and the label map.

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
    """Parses DIR/config.gin (unknown names are errors) plus `extra_bindings`."""
    from rethink_tf.training import config
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: the training run writes it (rethink_tf.train)")
    gin.clear_config()
    config.parse([path], list(extra_bindings), finalize=False)


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
        (model, categories [{"id", "name"}], InferenceConfig, checkpoint path).
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
    return model, categories, inference_config(), checkpoint
