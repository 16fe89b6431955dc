"""run_evaluation: a toy model over a small eval set -> COCO results, metrics and drawn predictions."""

import contextlib
import io
import os
import sys
import time

import numpy as np
import tensorflow as tf
from pycocotools.coco import COCO

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "training"))
import training_toys as toys  # noqa: E402

from rethink_tf.evaluation import coco_evaluator, eval_loop  # noqa: E402
from rethink_tf.utils.visualize import drawing_scale  # noqa: E402


def _eval_set(n=6, batch=4):
    """Batches of toy examples with ids 1..n, the last batch padded with image_id -1, and their COCO gt."""
    examples = [toys.fixed_batch(1, offset=i) for i in range(1, n + 1)]
    images, anns = [], []
    for ex in examples:
        image_id = int(ex["image_id"][0])
        y0, x0, y1, x1 = ex["gt_boxes"][0, 0].numpy().tolist()
        images.append({"id": image_id, "height": toys.CANVAS, "width": toys.CANVAS})
        anns.append({"id": image_id, "image_id": image_id, "category_id": 10 * int(ex["gt_classes"][0, 0]),
                     "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": 10 * (k + 1), "name": f"c{k}"} for k in range(toys.NUM_CLASSES)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    full = toys.fixed_batch(8, offset=1)
    full = {k: v for k, v in full.items()}
    full["image_id"] = tf.where(tf.range(8) < n, full["image_id"], tf.constant(-1, tf.int64))
    ds = tf.data.Dataset.from_tensor_slices(full).batch(batch)
    return ds, gt


def test_run_evaluation_end_to_end():
    ds, gt = _eval_set()
    model = toys.ToyDetector("gn")
    label_map = np.array([0, 10, 20, 30])
    evaluator = coco_evaluator.CocoEvaluator(gt, label_map, include_masks=False)
    metrics, drawn = eval_loop.run_evaluation(model, ds, evaluator, num_images_to_draw=2,
                                              class_names={1: "c0", 2: "c1", 3: "c2"})
    assert evaluator.image_ids == set(range(1, 7))  # padding ids dropped
    assert len(evaluator.results) == 6  # the toy model emits one detection per image
    assert {r["category_id"] for r in evaluator.results} <= {10, 20, 30}
    assert set(metrics) == {"bbox"} and 0.0 <= metrics["bbox"]["AP"] <= 100.0
    assert metrics["bbox"] == coco_evaluator.coco_metrics(gt, evaluator.results, "bbox", range(1, 7))
    # Ground truth | predictions: the left part is the batch's ground truth drawn on the image, both
    # enlarged the same way (small canvases are drawn at visualize's minimum side).
    side = round(toys.CANVAS * drawing_scale((toys.CANVAS, toys.CANVAS)))
    assert drawn.shape == (2, side, 2 * side + eval_loop.GAP, 3) and drawn.dtype == np.uint8
    from rethink_tf.utils import visualize

    first = next(iter(ds))
    canvas = visualize.denormalize_image(first["images"][0].numpy())
    truth = visualize.draw_ground_truth(canvas, first["gt_boxes"][0].numpy(), first["gt_classes"][0].numpy(),
                                        None, {1: "c0", 2: "c1", 3: "c2"})
    np.testing.assert_array_equal(drawn[0, :, :side], truth)
    blank = visualize.draw_detections(canvas, np.zeros((0, 4), np.float32), np.zeros((0,), np.int64))
    assert blank.shape == truth.shape and not np.array_equal(truth, blank)  # the ground truth box is drawn
    assert (drawn[:, :, side:side + eval_loop.GAP] == 255).all()
    # A second pass reuses the traced predict function and gives the same results; its wall time is
    # split by part (no drawing asked: 0).
    timings = {}
    start = time.perf_counter()
    again, _ = eval_loop.run_evaluation(model, ds, evaluator, timings=timings)
    elapsed = time.perf_counter() - start
    assert again == metrics
    assert list(timings) == list(eval_loop.EVAL_PARTS) and timings["drawing"] == 0
    assert min(timings[k] for k in ("input", "model", "results", "scoring")) > 0
    assert sum(timings.values()) <= elapsed
    assert eval_loop.make_predict_fn(model) is eval_loop.make_predict_fn(model)
