"""Per-stage diagnosis of Cascade Mask R-CNN on a 2-image overfit (the setting of cascade_overfit.py).

    python benchmarks/cascade_diagnose.py --image_ids=438,143 [--steps=150] [--seed=0] [--arm=cascade]
        [--size=128] [--deterministic] [--box_beta=0] [--binding='cascade_roi_heads.stage_ious=(0.5, 0.6, 0.7)']

Trains one model as benchmarks/cascade_overfit.py does (same tiny model, data, optimizer, seeds) and
prints, every --log_every steps and per box stage k, from that step's training RoIs:
  fg / valid: foreground and used RoI slots (summed over the batch);
  iou_in / iou_out: mean IoU with their matched gt of the foreground RoIs before / after stage k's
    regression (iou_out > iou_in: the regressor moves boxes towards the gt);
  box / cls: stage k's losses.
After training, bbox AP on the training images for: boxes of stage j with scores averaged over stages
1..j ("box j, scores 1..j"), and boxes of stage j < N with scores averaged over all N stages.
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from keras import ops  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cascade_overfit import DATA, MODEL, ap_at_ious  # noqa: E402

# --image_ids (default 142,623), --steps, --lr, --size, --deterministic come from cascade_overfit.py.
flags.DEFINE_integer("seed", 0, "Seed (weights, sampling).")
flags.DEFINE_integer("log_every", 25, "Print per-stage training statistics every this many steps.")
flags.DEFINE_enum("arm", "cascade", ["cascade", "standard"], "RoI heads.")
flags.DEFINE_multi_string("binding", [], "Extra gin binding NAME=PYTHON_LITERAL, repeatable "
                          "(e.g. --binding='standard_roi_heads.class_agnostic=True').")
flags.DEFINE_float("box_beta", None, "Smooth-L1 beta of the RoI box loss (default: the package's, 1 as "
                   "Detectron; detectron2 uses 0, plain L1).")
FLAGS = flags.FLAGS


def _iou(a, b):
    """Elementwise IoU of yxyx boxes [..., 4]."""
    inter_hw = tf.maximum(tf.minimum(a[..., 2:], b[..., 2:]) - tf.maximum(a[..., :2], b[..., :2]), 0.0)
    inter = inter_hw[..., 0] * inter_hw[..., 1]
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / tf.maximum(area(a) + area(b) - inter, 1e-9)


def instrument_stage_losses():
    """Adds per-stage statistics (keys starting with "diag_", gradient-free) to RoIBoxStage.losses."""
    from rethink_tf.modeling.roi_heads.box_stage import RoIBoxStage
    from rethink_tf.ops import box_coder
    from rethink_tf.ops.losses import select_class_deltas

    from rethink_tf.ops import losses as loss_ops

    original = RoIBoxStage.losses

    def losses(self, logits, deltas, targets):
        if FLAGS.box_beta is None:
            out = dict(original(self, logits, deltas, targets))
        else:
            cls_loss, box_loss = loss_ops.fast_rcnn_losses(logits, deltas, targets["classes"], targets["box_targets"],
                                                           beta=FLAGS.box_beta)
            out = {"roi_class": cls_loss, "roi_box": box_loss}
        classes, rois = targets["classes"], targets["rois"]
        fg = tf.cast(classes > 0, tf.float32)
        unit = tf.constant([0.0, 0.0, 1.0, 1.0])
        safe_rois = tf.where(classes[..., None] > 0, rois, unit)
        gt = box_coder.decode_boxes(targets["box_targets"], safe_rois, self.coder_weights)
        chosen = select_class_deltas(deltas, classes, logits.shape[-1])
        out_boxes = box_coder.decode_boxes(chosen, safe_rois, self.coder_weights)
        n = tf.maximum(tf.reduce_sum(fg), 1.0)
        stats = {"fg": tf.reduce_sum(fg), "valid": tf.reduce_sum(tf.cast(classes >= 0, tf.float32)),
                 "iou_in": tf.reduce_sum(_iou(safe_rois, gt) * fg) / n,
                 "iou_out": tf.reduce_sum(_iou(out_boxes, gt) * fg) / n}
        out.update({f"diag_{k}": tf.stop_gradient(v) for k, v in stats.items()})
        return out

    RoIBoxStage.losses = losses


def stage_subset_predict(last, score_stages):
    """CascadeRoIHeads.predict_boxes replacement: boxes of stage `last` (1-based), scores averaged over
    stages 1..score_stages (each stage classifies the boxes it is given, as in the full cascade)."""
    def predict_boxes(self, features, proposals, proposal_valid, image_info):
        image_hw = ops.cast(image_info, "float32")[:, 1, :]
        boxes, probabilities, kept = proposals, 0.0, None
        for k, stage in enumerate(self.box_stages[:max(last, score_stages)], start=1):
            logits, deltas = stage(features, boxes, training=False)
            if k <= score_stages:
                probabilities = probabilities + ops.softmax(logits, axis=-1)
            decoded = stage.decode(deltas, boxes, image_hw)
            if k == last:
                kept = decoded
            boxes = decoded[:, :, 0, :]
        scores = probabilities[:, :, 1:] / score_stages * ops.cast(proposal_valid, "float32")[..., None]
        return kept, scores
    return predict_boxes


def main(argv):
    del argv
    import ast

    from rethink_tf.data.input_pipeline import build_dataset
    from rethink_tf.data.sources import CocoSource
    from rethink_tf.evaluation import coco_evaluator, eval_loop
    from rethink_tf.modeling.factory import build_model_from_bindings
    from rethink_tf.modeling.roi_heads.cascade import CascadeRoIHeads

    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
        tf.random.set_seed(FLAGS.seed)
    instrument_stage_losses()
    source = CocoSource(DATA / "annotations" / "instances_train2017.json", DATA / "train2017")
    source.image_ids = [int(i) for i in FLAGS.image_ids]
    dataset = build_dataset(source, training=False, global_batch_size=len(source.image_ids),
                            eval_short_side=FLAGS.size, max_size=FLAGS.size, canvas_size=FLAGS.size,
                            max_instances=16, mask_crop_size=28)
    batch = {k: v for k, v in next(iter(dataset)).items() if k != "gt_keypoints"}
    keras.utils.set_random_seed(FLAGS.seed)
    bindings = dict(MODEL)
    for item in FLAGS.binding:
        name, value = item.split("=", 1)
        bindings[name] = ast.literal_eval(value)
    model = build_model_from_bindings(len(source.categories), bindings, roi_heads=FLAGS.arm)
    optimizer = keras.optimizers.SGD(FLAGS.lr, momentum=0.9)

    @tf.function
    def step(sampling_seed):
        with tf.GradientTape() as tape:
            out = model({**batch, "sampling_seed": sampling_seed}, training=True)
            total = tf.add_n([v for k, v in out.items() if "diag_" not in k])
        optimizer.apply_gradients(zip(tape.gradient(total, model.trainable_variables), model.trainable_variables))
        return out

    for i in range(FLAGS.steps):
        out = step(tf.constant([FLAGS.seed, i], tf.int32))
        if (i + 1) % FLAGS.log_every == 0 or i == 0:
            out = {k: float(v) for k, v in out.items()}
            suffixes = sorted({k.rsplit("_stage", 1)[1] for k in out if "_stage" in k}) or [""]
            parts = []
            for s in suffixes:
                key = (lambda n: f"{n}_stage{s}") if s else (lambda n: n)
                parts.append(f"s{s or 1}: fg {out[key('diag_fg')]:.0f}/{out[key('diag_valid')]:.0f} "
                             f"iou {out[key('diag_iou_in')]:.3f}->{out[key('diag_iou_out')]:.3f} "
                             f"box {out[key('roi_box')]:.3f} cls {out[key('roi_class')]:.3f}")
            print(f"step {i + 1}: " + " | ".join(parts), flush=True)

    evaluator = coco_evaluator.CocoEvaluator(source.coco_gt(), source.label_to_category_id_array, include_masks=False)
    variants = [("as built", None)]
    if isinstance(model.roi_heads, CascadeRoIHeads):
        n = model.roi_heads.num_stages
        variants = [(f"box {j}, scores 1..{j}", (j, j)) for j in range(1, n + 1)]
        variants += [(f"box {j}, scores 1..{n}", (j, n)) for j in range(1, n)]
    original = CascadeRoIHeads.predict_boxes
    for label, subset in variants:
        if subset is not None:
            CascadeRoIHeads.predict_boxes = stage_subset_predict(*subset)
        eval_loop._PREDICT_FNS.clear()
        eval_loop.run_evaluation(model, dataset, evaluator)
        CascadeRoIHeads.predict_boxes = original
        bbox = ap_at_ious(evaluator.coco_gt, evaluator.results, evaluator.image_ids)
        print(f"eval {label:22s}: " + " ".join(f"{k} {v:.1f}" for k, v in bbox.items()), flush=True)


if __name__ == "__main__":
    app.run(main)
