"""Cascade Mask R-CNN against the plain Mask R-CNN when both overfit two real COCO images (bbox AP).

    python benchmarks/cascade_overfit.py [--image_ids=142,623] [--steps=150] [--seeds=0,1,2] [--size=128]
        [--deterministic]

For every seed both models (the same tiny R50-structured GN Mask R-CNN; the cascade adds stages 2-3 and
regresses class-agnostically) start from that seed and train for the same steps on the same batch of the
coco128 images `--image_ids` at `--size` px (plain SGD, momentum 0.9, LR 0.02, graph mode), then are
evaluated on those images with pycocotools. Prints one line per run and a JSON summary (per-arm bbox AP,
AP50, AP75, AP85, AP90 per seed and their means).

One seed decides nothing (at 128 px the winner flips with the seed and the machine's float order); the
settings measured so far are in README.md, "Cascade Mask R-CNN and the switch".
tests/modeling/test_cascade_overfit.py (slow) runs `--image_ids=142,623 --size=256 --steps=150
--seeds=0,1,2,3 --deterministic` and checks the means over the seeds.
"""
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco128"
SIZE = 128
IOU_THRESHOLDS = (0.5, 0.75, 0.85, 0.9)  # bbox AP reported at these IoUs (AP50, AP75, AP85, AP90)
MODEL = {"build_backbone.base_width": 16, "build_backbone.blocks_per_stage": (1, 1, 1, 1), "build_fpn.num_channels": 32,
         "conv_fc_box_head.num_convs": 2, "conv_fc_box_head.conv_dim": 16, "conv_fc_box_head.fc_dim": 64,
         "build_mask_branch.num_convs": 2, "build_mask_branch.conv_dim": 16, "build_rpn.pre_nms_topk_train": 200,
         "build_rpn.post_nms_topk_train": 100, "build_rpn.pre_nms_topk_test": 100,
         "build_rpn.post_nms_topk_test": 50, "roi_sampling.batch_size_per_image": 64,
         "build_postprocessor.detections_per_image": 20}

flags.DEFINE_list("image_ids", ["142", "623"], "coco128 image ids (one batch).")
flags.DEFINE_integer("steps", 150, "Training steps per run.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (initial weights and RoI / anchor sampling).")
flags.DEFINE_float("lr", 0.02, "SGD learning rate.")
flags.DEFINE_integer("size", SIZE, "Canvas side in pixels (the longer image side is resized to it).")
flags.DEFINE_bool("deterministic", False, "tf.config.experimental.enable_op_determinism(): repeatable runs. "
                  "Without it the same seed gives a different model on each run on a multi-core CPU (bbox AP75 "
                  "of one seed spread over 46-88 in four runs); the seed then does not identify a run.")
FLAGS = flags.FLAGS


def ap_at_ious(coco_gt, results, image_ids, thresholds=IOU_THRESHOLDS):
    """bbox AP (percent, COCO's 101-point, all areas, 100 detections) at each IoU threshold, plus "AP"
    (0.50:0.95) -> {"AP": ..., "AP50": ..., "AP75": ..., ...}."""
    import contextlib
    import io

    import numpy as np
    from pycocotools.cocoeval import COCOeval

    if not results:
        return {"AP": 0.0, **{f"AP{round(t * 100)}": 0.0 for t in thresholds}}
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco_gt, coco_gt.loadRes([{k: v for k, v in r.items() if k != "segmentation"}
                                                      for r in results]), "bbox")
        evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # [IoU thresholds, recall points, categories]

    def mean_valid(values):
        values = values[values > -1]
        return float(np.mean(values)) * 100.0 if values.size else 0.0

    out = {"AP": mean_valid(precision)}
    for t in thresholds:
        index = int(np.argmin(np.abs(evaluator.params.iouThrs - t)))
        out[f"AP{round(t * 100)}"] = mean_valid(precision[index])
    return out


def train_and_evaluate(roi_heads, image_ids, steps, seed, lr=0.02, size=SIZE, deterministic=False, data=DATA):
    """Trains a fresh model (`roi_heads` "standard" or "cascade") on the coco128 images `image_ids` (one
    batch, canvas `size` px) for `steps` SGD steps from `seed` -> (bbox AP dict of `ap_at_ious`, seconds)."""
    from rethink_tf.data.input_pipeline import build_dataset
    from rethink_tf.data.sources import CocoSource
    from rethink_tf.evaluation import coco_evaluator, eval_loop
    from rethink_tf.modeling.factory import build_model_from_bindings

    source = CocoSource(Path(data) / "annotations" / "instances_train2017.json", Path(data) / "train2017")
    source.image_ids = list(image_ids)
    dataset = build_dataset(source, training=False, global_batch_size=len(image_ids), eval_short_side=size,
                            max_size=size, canvas_size=size, max_instances=16, mask_crop_size=28)
    batch = {k: v for k, v in next(iter(dataset)).items() if k != "gt_keypoints"}
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    model = build_model_from_bindings(len(source.categories), MODEL, roi_heads=roi_heads)
    optimizer = keras.optimizers.SGD(lr, momentum=0.9)

    @tf.function
    def step(sampling_seed):
        with tf.GradientTape() as tape:
            total = tf.add_n(list(model({**batch, "sampling_seed": sampling_seed}, training=True).values()))
        optimizer.apply_gradients(zip(tape.gradient(total, model.trainable_variables), model.trainable_variables))

    start = time.time()
    for i in range(steps):
        step(tf.constant([seed, i], tf.int32))
    evaluator = coco_evaluator.CocoEvaluator(source.coco_gt(), source.label_to_category_id_array, include_masks=False)
    eval_loop.run_evaluation(model, dataset, evaluator)
    return ap_at_ious(evaluator.coco_gt, evaluator.results, evaluator.image_ids), time.time() - start


def main(argv):
    del argv
    if not DATA.exists():
        sys.exit(f"{DATA} not found (the coco128 images beside the repository)")
    image_ids, seeds = [int(i) for i in FLAGS.image_ids], [int(s) for s in FLAGS.seeds]
    table = {"standard": {}, "cascade": {}}
    for seed in seeds:
        for arm in table:
            metrics, seconds = train_and_evaluate(arm, image_ids, FLAGS.steps, seed, FLAGS.lr, FLAGS.size,
                                                  FLAGS.deterministic)
            table[arm][seed] = {k: round(v, 1) for k, v in metrics.items()}
            print(f"{arm:8s} seed {seed}: {table[arm][seed]} ({seconds:.0f} s)", flush=True)
    keys = list(next(iter(table["standard"].values())))
    summary = {arm: {"per_seed": runs, "mean": {k: round(statistics.mean(r[k] for r in runs.values()), 1)
                                                 for k in keys}}
               for arm, runs in table.items()}
    print(json.dumps({"image_ids": image_ids, "steps": FLAGS.steps, "lr": FLAGS.lr, "size": FLAGS.size,
                      "deterministic": FLAGS.deterministic, **summary}))


if __name__ == "__main__":
    app.run(main)
