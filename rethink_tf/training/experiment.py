"""Glue between gin, the data sources, the model factory, the Trainer and the COCO evaluator.

Gin names used by an experiment file (sources are gin references, scoped so train and eval differ):

    experiment.train_source = @train/CocoSource()
    experiment.eval_source = @eval/CocoSource()         # optional; no periodic evaluation without it
    experiment.global_batch_size = 16
    paper_schedule.schedule_multiplier = 2               # "2×"
    train/build_dataset.train_short_side = (640, 800)    # build_dataset runs in the train/ or eval/ scope
    Trainer.checkpoint_every = 2000
    build_model.norm = "gn"
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from rethink_tf.data import preprocess
from rethink_tf.evaluation import coco_evaluator, eval_loop
from rethink_tf.training import run_record
from rethink_tf.training import task as task_lib
from rethink_tf.training import schedule as schedule_lib
from rethink_tf.training import trainer as trainer_lib
from rethink_tf.utils import validate

CONFIG_FILE = "config.gin"
LABEL_MAP_FILE = "label_map.json"
METRICS_FILE = "metrics.jsonl"
EVAL_REPORT_FILE = "coco_eval.txt"
# TensorBoard images of an evaluation: each validation image twice, ground truth | predictions.
EVAL_IMAGES_TAG = "eval/ground_truth_vs_predictions"


def write_config(model_dir: str, operative: bool = False) -> str:
    """Writes DIR/config.gin: the full parsed configuration (re-parseable; what evaluate.py reads).

    With `operative=True` (after the first step) the operative configuration, i.e. every parameter the
    run actually used with its value, defaults included, is appended as comments for the record.
    """
    os.makedirs(model_dir, exist_ok=True)
    text = gin.config_str()
    if operative:
        commented = "\n".join("# " + line if line else "#" for line in gin.operative_config_str().splitlines())
        text += ("\n\n# ---- Operative configuration after the first step (every parameter used, defaults "
                 "included) ----\n" + commented + "\n")
    path = os.path.join(model_dir, CONFIG_FILE)
    with open(path, "w") as f:
        f.write(text)
    return path


def write_label_map(model_dir: str, source) -> str:
    """Writes DIR/label_map.json: contiguous label l <-> categories[l - 1] ({"id", "name"})."""
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, LABEL_MAP_FILE)
    record = {
        "source": source.name,
        "categories": [{"id": int(c["id"]), "name": c["name"]} for c in source.categories],
        "label_to_category_id": [int(i) for i in source.label_to_category_id_array],
    }
    with open(path, "w") as f:
        json.dump(record, f, indent=1)
    return path


def pixel_std():
    """The std the eval pipeline divides by, or None (to undo normalization in drawings)."""
    divide = False
    for name in ("build_dataset.divide_by_std", "eval/build_dataset.divide_by_std"):
        try:
            divide = gin.query_parameter(name)
        except ValueError:
            continue
    if not divide:
        return None
    from rethink_tf.utils.visualize import PIXEL_STD
    return PIXEL_STD


def model_builder(source, backbone_weights: str | None = None, report_dir: str | None = None,
                  init_checkpoint: str | None = None, init_checkpoint_skip=(), vgg16_fc: bool = True):
    """() -> the gin-configured model for `source` (mask head off when the source has no masks).

    With `backbone_weights` (a rethink_tf backbone weight file, the "w/ pre-train" arm) the backbone is
    initialized from it and the matched / unmatched report is written to report_dir/backbone_weights.json.
    On VGG-16 (with `vgg16_fc`) the box head's fc6 / fc7 are initialized from the file's ImageNet fc6 /
    fc7 too, as the original Faster R-CNN fine-tunes them (`weights.load_vgg16_fc`; the report lists them
    under "head").
    With `init_checkpoint` (another run's checkpoint, e.g. the plain Mask R-CNN a cascade run switches
    from) the variables both models share are then copied from it (`warm_start`; report in
    report_dir/init_checkpoint.json). A later checkpoint restore (resume) overrides these initial values
    as it should.
    """
    from rethink_tf.modeling.backbones.vgg import VGG16
    from rethink_tf.modeling.factory import build_model

    def build():
        kwargs = {} if source.has_masks else {"mask": False}
        model = build_model(num_classes=len(source.categories), **kwargs)
        if model.has_keypoints and not getattr(source, "has_keypoints", False):
            raise validate.ConfigError(f"build_model.keypoints = True but the training source {source.name} has "
                                       "no keypoints (use a person_keypoints_*.json annotation file)")
        if backbone_weights:
            from rethink_tf.modeling import weights

            model.build_networks()
            report = weights.load_backbone_weights(model.backbone, backbone_weights)
            head = []
            if vgg16_fc and isinstance(model.backbone, VGG16):
                try:
                    for stage in model.roi_heads.box_stages:
                        head += [f"{stage.name}/{key}" for key in weights.load_vgg16_fc(stage.head, backbone_weights)]
                except ValueError as err:
                    raise validate.ConfigError(f"experiment.backbone_weights: {err}") from err
            if report_dir:
                tf.io.gfile.makedirs(report_dir)
                with tf.io.gfile.GFile(os.path.join(report_dir, "backbone_weights.json"), "w") as f:
                    json.dump({"file": backbone_weights, **dataclasses.asdict(report), "head": head}, f, indent=1)
        if init_checkpoint:
            from rethink_tf.training import warm_start

            model.build_networks()
            report = warm_start.init_from_checkpoint(model, init_checkpoint, skip=init_checkpoint_skip)
            if report_dir:
                warm_start.write_report(report, report_dir)
        return model

    return build


def model_has_masks(source) -> bool:
    if not source.has_masks:
        return False
    try:
        return bool(gin.query_parameter("build_model.mask"))
    except ValueError:
        return True


def model_has_keypoints(source) -> bool:
    if not getattr(source, "has_keypoints", False):
        return False
    try:
        return bool(gin.query_parameter("build_model.keypoints"))
    except ValueError:
        return False


def eval_dataset(source, eval_batch_size: int):
    from rethink_tf.data.input_pipeline import build_dataset

    with gin.config_scope("eval"):
        return build_dataset(source, training=False, global_batch_size=eval_batch_size)


def coco_metrics(source) -> coco_evaluator.CocoEvaluator:
    """The COCO evaluator of `source` (bbox; segm when the model has masks; keypoints when it has the
    keypoint branch and the source has keypoints)."""
    from rethink_tf.training.run_record import configurable_arguments
    return coco_evaluator.CocoEvaluator(source.coco_gt(), source.label_to_category_id_array,
                                        include_masks=model_has_masks(source),
                                        include_keypoints=model_has_keypoints(source),
                                        mask_paste=configurable_arguments("build_postprocessor")["mask_paste"])


EVALUATION_METRICS = ("coco", "voc")


@gin.configurable(denylist=["source"])
def build_evaluator(source, metric: str = "coco"):
    """The evaluator of `source` for periodic and checkpoint evaluation.

    Args:
      source: the evaluation source (its `coco_gt()` and label -> category id map).
      metric: "coco" (default): pycocotools bbox AP, and segm when the model has masks; metrics.jsonl /
        TensorBoard "bbox/AP", ... "voc": PASCAL VOC mAP at IoU 0.5 (`evaluation.voc_evaluator`; difficult
        objects ignored), "voc/mAP" (VOC2010+ all-point) and "voc/mAP_07" (VOC2007 11-point).
    """
    validate.one_of("build_evaluator.metric", metric, EVALUATION_METRICS)
    if metric == "voc":
        from rethink_tf.evaluation import voc_evaluator

        return voc_evaluator.VocEvaluator(source.coco_gt(), source.label_to_category_id_array)
    return coco_metrics(source)


def step_of_checkpoint(path: str) -> int:
    match = re.search(r"ckpt-(\d+)$", path or "")
    if not match:
        raise validate.InputError(f"cannot read the step from checkpoint path {path!r} (expected .../ckpt-<step>)")
    return int(match.group(1))


def evaluate_and_record(model, source, model_dir: str, step: int, samples: dict, *, eval_batch_size: int,
                        max_batches: int | None, images_to_draw: int, results_name: str,
                        checkpoint: str | None = None, jit_compile: bool = False, tta=None):
    """Evaluates `model` on `source`, writes the results json and appends to DIR/metrics.jsonl.

    With `tta` (a `rethink_tf.modeling.tta.TestTimeAugmentation`) the images go one by one through
    test-time augmentation (`eval_loop.run_tta_evaluation`; no drawings) and the record has a "tta" entry;
    without, it has "eval_seconds", the pass's wall time by part (`eval_loop.EVAL_PARTS`).

    Also writes DIR/coco_eval.txt: the evaluator's report (COCOeval's table and the AP per category, or
    the VOC AP per class) of this evaluation. The metric is `build_evaluator.metric` (COCO by default).

    Returns (metrics nested dict, drawn uint8 images or None).
    """
    evaluator = build_evaluator(source)
    class_names = {i + 1: c["name"] for i, c in enumerate(source.categories)}
    extra = {}
    if tta is None:
        timings = {}
        metrics, drawn = eval_loop.run_evaluation(
            model, eval_dataset(source, eval_batch_size), evaluator, max_batches=max_batches,
            num_images_to_draw=images_to_draw, class_names=class_names, pixel_std=pixel_std(),
            normalization=preprocess.pixel_normalization(pixel_std() is not None),
            jit_compile=jit_compile, timings=timings)
        extra = {"eval_seconds": {k: round(v, 3) for k, v in timings.items()}}
    else:
        from rethink_tf.modeling import tta as tta_lib
        from rethink_tf.serving import model_dir as model_dir_lib

        detector = tta_lib.TTADetector(model, tta, model_dir_lib.inference_config(), jit_compile=jit_compile)
        images = source.example_dataset(training=False, mask_crop_size=1).prefetch(2)
        metrics = eval_loop.run_tta_evaluation(
            detector, images, evaluator,
            max_images=None if max_batches is None else max_batches * eval_batch_size)
        drawn, extra = None, {"tta": tta.config()}
    evaluator.write_results(os.path.join(model_dir, results_name))
    with open(os.path.join(model_dir, EVAL_REPORT_FILE), "w") as f:
        f.write(f"Evaluation at step {step} on {len(evaluator.image_ids)} images of {source.name}"
                f"{' (test-time augmentation)' if tta is not None else ''}; checkpoint {checkpoint}\n"
                f"{evaluator.report_text()}\n")
    policy = keras.mixed_precision.global_policy().name
    if policy != "float32":  # a mixed-precision run, or `evaluate --mixed_precision`
        extra["dtype_policy"] = policy
    record = {"step": int(step), "checkpoint": checkpoint, "eval_source": source.name,
              "num_eval_images": len(evaluator.image_ids), "wall_time": time.time(),
              **{f"{k}_seen": float(v) for k, v in samples.items()}, **extra, **metrics}
    coco_evaluator.append_metrics_jsonl(os.path.join(model_dir, METRICS_FILE), record)
    summary = "  ".join(f"{kind} " + " ".join(f"{k} {v:.2f}" for k, v in m.items()) for kind, m in metrics.items())
    logging.info("Evaluation at step %d: %s", step, summary)
    return metrics, drawn


class DetectionTask(task_lib.Task):
    """The detection task of the Trainer: a gin-configured detector on a COCO-style source.

    Loss terms: whatever `model(batch, training=True)` returns (RPN, box, mask terms). Samples seen:
    images, non-crowd instances and pixels at the trained scale (`input_pipeline.samples_seen`); with
    `backbone_weights`, those of the pre-training that wrote the file (`pretrained_backbone`) are the
    run's initial samples. Evaluation: COCO AP (or VOC mAP, `build_evaluator.metric`) on `eval_source`,
    recorded in DIR/metrics.jsonl.
    """

    def __init__(self, model_dir: str, train_source, eval_source=None, *, global_batch_size: int,
                 eval_batch_size: int = 8, eval_max_batches: int | None = None, images_to_draw: int = 3,
                 backbone_weights: str | None = None, init_checkpoint: str | None = None,
                 init_checkpoint_skip=(), vgg16_fc_from_weights: bool = True):
        self.model_dir, self.train_source, self.eval_source = model_dir, train_source, eval_source
        self.vgg16_fc_from_weights = vgg16_fc_from_weights
        self.global_batch_size, self.eval_batch_size = global_batch_size, eval_batch_size
        self.eval_max_batches, self.images_to_draw = eval_max_batches, images_to_draw
        self.backbone_weights = backbone_weights
        self.init_checkpoint, self.init_checkpoint_skip = init_checkpoint, tuple(init_checkpoint_skip or ())
        self.has_evaluation = eval_source is not None

    def build_model(self):
        return model_builder(self.train_source, self.backbone_weights, self.model_dir, self.init_checkpoint,
                             self.init_checkpoint_skip, self.vgg16_fc_from_weights)()

    def build_inputs(self, input_context=None):
        from rethink_tf.data.input_pipeline import build_dataset

        with gin.config_scope("train"):
            return build_dataset(self.train_source, training=True, global_batch_size=self.global_batch_size,
                                 input_context=input_context)

    def build_losses(self, model, batch):
        return model(batch, training=True)

    def build_metrics(self):
        return build_evaluator(self.eval_source)

    def samples_seen(self, batch):
        from rethink_tf.data.input_pipeline import samples_seen

        return samples_seen(batch)

    def initial_samples(self):
        if not self.backbone_weights:
            return {}
        from rethink_tf.training import pretrained_backbone

        return pretrained_backbone.read_samples(self.backbone_weights)

    def evaluate(self, model, step, samples):
        metrics, drawn = evaluate_and_record(
            model, self.eval_source, self.model_dir, step, samples, eval_batch_size=self.eval_batch_size,
            max_batches=self.eval_max_batches, images_to_draw=self.images_to_draw,
            results_name="coco_results.json", checkpoint=os.path.join(self.model_dir, f"ckpt-{step}"))
        images = {EVAL_IMAGES_TAG: drawn} if drawn is not None and len(drawn) else {}
        return coco_evaluator.flatten_metrics(metrics), images


@gin.configurable(denylist=["model_dir", "strategy"])
def experiment(model_dir: str, strategy, train_source=gin.REQUIRED, eval_source=None, global_batch_size: int = 16,
               eval_batch_size: int = 8, eval_max_batches: int | None = None, images_to_draw: int = 3,
               max_steps: int | None = None, backbone_weights: str | None = None,
               init_checkpoint: str | None = None, init_checkpoint_skip=(), vgg16_fc_from_weights: bool = True):
    """Trains (resuming from DIR if it holds checkpoints) with periodic COCO evaluation.

    Writes DIR/config.gin, DIR/run_config.json (`run_record`: what the run is trained with, also stored in
    every checkpoint), DIR/label_map.json and the image ids, after refusing (`run_record.RunMismatchError`)
    a DIR whose latest checkpoint was trained with another model or inference configuration.

    Args:
      model_dir: output directory.
      strategy: from `distribute.get_strategy()`.
      train_source: the training data source (gin reference, e.g. `@train/CocoSource()`).
      eval_source: the validation source; None disables evaluation.
      global_batch_size: images per step over all replicas (16 in the paper).
      eval_batch_size: images per evaluation batch (single device, on the chief).
      eval_max_batches: evaluate on only this many batches (quick configs); None = the whole split.
      images_to_draw: validation images sent to TensorBoard, ground truth beside predicted boxes and masks.
      max_steps: stop after this many steps of this process (smoke runs); None = the whole schedule.
      backbone_weights: backbone weight file to start from (the "w/ pre-train" arm); None = random init.
      vgg16_fc_from_weights: on VGG-16, also start the box head's fc6 / fc7 from the file's ImageNet fc6 /
        fc7 (the original Faster R-CNN); a file without them is refused. False: fc6 / fc7 start random.
      init_checkpoint: another run's checkpoint (prefix DIR/ckpt-N, or DIR for its latest) whose variables
        shared with this model (same path and shape) initialize it, e.g. the plain Mask R-CNN a cascade
        run switches from (`rethink_tf.training.warm_start`; report in DIR/init_checkpoint.json). Only
        weights: this run's step, LR schedule, optimizer state and samples-seen counters start at 0.
      init_checkpoint_skip: regular expressions of variable paths left fresh although in the checkpoint.
    Returns:
      the last step's loss terms.
    """
    if train_source is gin.REQUIRED:
        raise validate.ConfigError(
            "experiment.train_source is not bound (e.g. experiment.train_source = @train/CocoSource())")
    validate.integer("experiment.global_batch_size", global_batch_size, minimum=1)
    validate.integer("experiment.eval_batch_size", eval_batch_size, minimum=1)
    validate.integer("experiment.eval_max_batches", eval_max_batches, minimum=1, allow_none=True)
    validate.integer("experiment.images_to_draw", images_to_draw, minimum=0)
    validate.integer("experiment.max_steps", max_steps, minimum=1, allow_none=True)
    validate.path("experiment.backbone_weights", backbone_weights, allow_none=True)
    validate.boolean("experiment.vgg16_fc_from_weights", vgg16_fc_from_weights)
    if backbone_weights and not tf.io.gfile.exists(backbone_weights):
        raise FileNotFoundError(f"experiment.backbone_weights: no file {backbone_weights}")
    if init_checkpoint is not None:
        from rethink_tf.training import warm_start

        init_checkpoint = warm_start.resolve_checkpoint(init_checkpoint)
    _validate_patterns("experiment.init_checkpoint_skip", init_checkpoint_skip)
    spec = schedule_lib.paper_schedule(global_batch_size=global_batch_size)
    logging.info("Schedule: %s", spec)
    from rethink_tf.training import distribute

    if eval_source is not None:
        if [c["id"] for c in eval_source.categories] != [c["id"] for c in train_source.categories]:
            raise validate.ConfigError(f"experiment.eval_source: {eval_source.name} has other categories than "
                                       f"experiment.train_source {train_source.name}")
    task = DetectionTask(model_dir, train_source, eval_source, global_batch_size=global_batch_size,
                         eval_batch_size=eval_batch_size, eval_max_batches=eval_max_batches,
                         images_to_draw=images_to_draw, backbone_weights=backbone_weights,
                         init_checkpoint=init_checkpoint, init_checkpoint_skip=init_checkpoint_skip,
                         vgg16_fc_from_weights=vgg16_fc_from_weights)

    record_variable = run_record.checkpoint_variable()
    trainer = trainer_lib.Trainer(model_dir, strategy, task, spec, global_batch_size,
                                  after_first_step=lambda: write_config(model_dir, operative=True),
                                  extra_checkpoint_items={run_record.RECORD_KEY: record_variable})
    # Before any file of DIR is (over)written: a DIR holding checkpoints of another configuration is refused.
    record = run_record.describe(trainer.model, [c["id"] for c in train_source.categories])
    latest = tf.train.latest_checkpoint(model_dir)
    if latest:
        run_record.check(record, model_dir, latest, "this configuration",
                         advice=f"Train in a new --model_dir, or with the configuration of the run in {model_dir}.")
    if distribute.is_chief(strategy):
        write_config(model_dir)
        run_record.write(model_dir, record)
        write_label_map(model_dir, train_source)
        from rethink_tf.serving.model_dir import write_inference_config

        write_inference_config(model_dir, trainer.model)
        from rethink_tf.data.sources import write_image_ids

        write_image_ids(train_source, model_dir)
    trainer.restore_or_initialize()
    record_variable.assign(run_record.to_json(record))  # after the restore: checkpoints record this configuration
    return trainer.train(max_steps=max_steps)


def _validate_patterns(binding, patterns):
    """A list/tuple of regular expressions (strings that compile)."""
    if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
        validate.fail(binding, patterns, "a list of regular expressions (strings)")
    for p in patterns:
        try:
            re.compile(p)
        except re.error as err:
            validate.fail(binding, patterns, f"valid regular expressions ({p!r}: {err})")


def _experiment_parameter(name, default):
    try:
        return gin.query_parameter(f"experiment.{name}")
    except ValueError:
        return default


@gin.configurable(denylist=["model_dir", "checkpoint"])
def evaluate_checkpoint(model_dir: str, checkpoint: str | None = None, eval_source=None,
                        eval_batch_size: int | None = None, eval_max_batches: int | None = None,
                        tta: bool = False):
    """Evaluates one checkpoint (default: the latest in DIR) on `eval_source` (default: experiment's).

    `eval_batch_size` and `eval_max_batches` default to the experiment's values (with `tta` the images
    run one at a time and at most eval_batch_size * eval_max_batches of them are evaluated).
    `tta`: test-time augmentation with the bound `TestTimeAugmentation` (`evaluate --tta`).

    Writes DIR/coco_results_ckpt-<step>.json (with tta: coco_results_tta_ckpt-<step>.json), appends to
    DIR/metrics.jsonl and to TensorBoard in DIR/eval (with tta: DIR/eval_tta). Returns the metrics.
    """
    validate.boolean("evaluate_checkpoint.tta", tta)
    augmentation = None
    if tta:  # built (and its bindings checked) before the model
        from rethink_tf.modeling.tta import TestTimeAugmentation

        augmentation = TestTimeAugmentation()
    if eval_source is None:
        eval_source = _experiment_parameter("eval_source", None)
        if isinstance(eval_source, gin.config.ConfigurableReference):
            eval_source = eval_source.scoped_configurable_fn()
    validate.integer("evaluate_checkpoint.eval_batch_size", eval_batch_size, minimum=1, allow_none=True)
    validate.integer("evaluate_checkpoint.eval_max_batches", eval_max_batches, minimum=1, allow_none=True)
    if eval_batch_size is None:
        eval_batch_size = _experiment_parameter("eval_batch_size", 8)
    if eval_max_batches is None:
        eval_max_batches = _experiment_parameter("eval_max_batches", None)
    if eval_source is None:
        raise validate.ConfigError(
            "no evaluation source: bind experiment.eval_source or evaluate_checkpoint.eval_source")
    checkpoint = checkpoint or tf.train.latest_checkpoint(model_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint in {model_dir}")
    if not tf.io.gfile.exists(checkpoint + ".index"):
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    step = step_of_checkpoint(checkpoint)
    model = model_builder(eval_source)()
    first = next(iter(eval_dataset(eval_source, eval_batch_size)))
    model({"images": first["images"], "image_info": first["image_info"]}, training=False)
    samples = {k: tf.Variable(0.0, dtype=tf.float64) for k in ("images", "instances", "pixels")}
    from rethink_tf.training import checkpointing

    checkpointing.restore_model_weights(model, checkpoint)
    tf.train.Checkpoint(**{f"seen_{k}": v for k, v in samples.items()}).restore(checkpoint).expect_partial()
    samples = {k: float(v.numpy()) for k, v in samples.items()}
    name = ("tta_" if tta else "") + os.path.basename(checkpoint)
    metrics, drawn = evaluate_and_record(model, eval_source, model_dir, step, samples, eval_batch_size=eval_batch_size,
                                         max_batches=eval_max_batches, images_to_draw=3,
                                         results_name=f"coco_results_{name}.json", checkpoint=checkpoint,
                                         tta=augmentation)
    writer = tf.summary.create_file_writer(os.path.join(model_dir, "eval_tta" if tta else "eval"))
    with writer.as_default(step=step):
        for tag, value in coco_evaluator.flatten_metrics(metrics).items():
            tf.summary.scalar(tag, value)
        if drawn is not None and len(drawn):
            tf.summary.image(EVAL_IMAGES_TAG, drawn, max_outputs=len(drawn))
    writer.flush()
    return metrics
