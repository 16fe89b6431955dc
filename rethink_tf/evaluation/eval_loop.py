"""Runs a model over an evaluation dataset, feeding a CocoEvaluator and drawing a few predictions."""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf
from absl import logging

from rethink_tf.utils.lap_clock import LapClock

INFERENCE_KEYS = ("images", "image_info")
GROUND_TRUTH_KEYS = ("gt_boxes", "gt_classes", "gt_masks", "gt_keypoints")
GAP = 4  # pixels between the ground truth and the predictions of a drawn evaluation image
# Parts of an evaluation pass's wall time (run_evaluation's `timings`): waiting for the next batch, the
# predict step until its detections are numpy, detections -> COCO results (boxes, pasted and
# RLE-encoded masks), the TensorBoard drawings, COCOeval.
EVAL_PARTS = ("input", "model", "results", "drawing", "scoring")


_PREDICT_FNS = {}


def make_predict_fn(model, jit_compile: bool = False):
    """tf.function: {images, image_info} -> detections dict (model called with training=False).

    Cached per model so periodic evaluations reuse the traced graph.
    """
    key = (id(model), jit_compile)
    cached = _PREDICT_FNS.get(key)
    if cached is not None and cached[0] is model:
        return cached[1]

    def predict(images, image_info):
        return model({"images": images, "image_info": image_info}, training=False)

    fn = tf.function(predict, jit_compile=jit_compile)
    _PREDICT_FNS[key] = (model, fn)
    return fn


def draw_predictions(batch, detections, class_names, max_images: int, pixel_std=None,
                     normalization=None) -> np.ndarray:
    """Draws the detections of the first `max_images` real images of a batch on their canvases.

    Keypoint skeletons are drawn when the detections have `detection_keypoints` (and the ground truth's
    when the batch has `gt_keypoints`). With the batch's ground truth (`gt_boxes`, `gt_classes`,
    optional `gt_masks`) each image is drawn twice, side by side with a GAP-pixel white band: ground
    truth on the left, predictions on the right (`visualize.draw_ground_truth`,
    `visualize.draw_detections`). `normalization` (a
    preprocess.PixelNormalization) undoes the pipeline's; without it the default mean and `pixel_std`.

    Returns uint8 [N, H, W, 3], or [N, H, 2 W + GAP, 3] with the ground truth; H, W: the canvas size
    as drawn (enlarged by `visualize.drawing_scale` when small).
    """
    from rethink_tf.utils import visualize

    images = []
    ids = np.asarray(batch["image_id"])
    for i in np.flatnonzero(ids >= 0)[:max_images]:
        info = np.asarray(batch["image_info"][i])
        scaled_h, scaled_w = (int(round(v)) for v in info[1])
        if normalization is not None:
            canvas = visualize.denormalize_image(np.asarray(batch["images"][i]), *normalization)
        else:
            canvas = visualize.denormalize_image(np.asarray(batch["images"][i]), std=pixel_std)
        n = int(detections["num_detections"][i])
        scale = np.concatenate([info[2], info[2]])
        boxes = np.asarray(detections["detection_boxes"][i][:n]) * scale  # original -> canvas pixels
        classes = np.asarray(detections["detection_classes"][i][:n])
        scores = np.asarray(detections["detection_scores"][i][:n])
        masks = None
        if "detection_masks" in detections and n:
            masks = np.zeros((n,) + canvas.shape[:2], np.uint8)
            masks[:, :scaled_h, :scaled_w] = visualize.paste_box_masks(
                np.asarray(detections["detection_masks"][i][:n]), boxes, (scaled_h, scaled_w))
        keypoints = None
        if "detection_keypoints" in detections:  # original -> canvas pixels (x, y); scores as they are
            keypoints = np.asarray(detections["detection_keypoints"][i][:n]) * np.asarray(
                [info[2][1], info[2][0], 1.0], np.float32)
        drawn = visualize.draw_detections(canvas, boxes, classes, scores, masks, class_names, keypoints=keypoints)
        if "gt_boxes" in batch and "gt_classes" in batch:
            truth = visualize.draw_ground_truth(canvas, batch["gt_boxes"][i], batch["gt_classes"][i],
                                                batch["gt_masks"][i] if "gt_masks" in batch else None, class_names,
                                                gt_keypoints=batch["gt_keypoints"][i] if "gt_keypoints" in batch
                                                else None)
            band = np.full((drawn.shape[0], GAP, 3), 255, np.uint8)
            drawn = np.concatenate([truth, band, drawn], axis=1)
        images.append(drawn)
    return np.stack(images) if images else np.zeros((0, 1, 1, 3), np.uint8)


def run_evaluation(model, dataset, evaluator, *, max_batches: int | None = None, jit_compile: bool = False,
                   num_images_to_draw: int = 0, class_names=None, pixel_std=None, normalization=None,
                   timings: dict | None = None):
    """One pass over `dataset` (batch dicts): predicts, accumulates into `evaluator`, scores.

    Args:
      model: the model; `model(batch, training=False)` returns the detections dict.
      dataset: finite tf.data.Dataset of evaluation batches (padding images have image_id -1).
      evaluator: a `CocoEvaluator` (reset here).
      max_batches: stop after this many batches (quick checks); None = the whole dataset.
      num_images_to_draw: draw the predictions of this many images of the first batch.
      class_names: {label: name} for the drawings.
      pixel_std: the pipeline's std when it divides by it (to undo normalization in drawings).
      normalization: the pipeline's preprocess.PixelNormalization (drawings; supersedes pixel_std).
      timings: a dict to fill with the pass's wall time in seconds by part (`EVAL_PARTS`).
    Returns:
      (metrics {"bbox": {...}, "segm": {...}}, drawn uint8 images [N, H, W, 3] or None)
    """
    predict = make_predict_fn(model, jit_compile)
    evaluator.reset()
    drawn = None
    clock, count = LapClock(EVAL_PARTS), 0
    for index, batch in enumerate(dataset):
        clock.lap("input")
        if max_batches is not None and index >= max_batches:
            break
        detections = predict(batch["images"], batch["image_info"])
        detections = {k: v.numpy() for k, v in detections.items()}
        batch_np = {k: batch[k].numpy() for k in ("image_id", "image_info")}
        clock.lap("model")
        if index == 0 and num_images_to_draw:
            batch_np.update({k: batch[k].numpy() for k in GROUND_TRUTH_KEYS if k in batch})
        evaluator.update(detections, batch_np["image_id"], batch_np["image_info"])
        count += int(np.sum(batch_np["image_id"] >= 0))
        clock.lap("results")
        if index == 0 and num_images_to_draw:
            drawn = draw_predictions({**batch_np, "images": batch["images"].numpy()}, detections, class_names,
                                     num_images_to_draw, pixel_std, normalization)
            clock.lap("drawing")
    metrics = evaluator.evaluate()
    clock.lap("scoring")
    seconds = clock.seconds
    logging.info("Evaluated %d images in %.1f s (input %.1f s, model %.1f s, results %.1f s, drawing %.1f s), "
                 "then COCO scoring %.1f s", count, sum(seconds.values()) - seconds["scoring"],
                 seconds["input"], seconds["model"], seconds["results"], seconds["drawing"], seconds["scoring"])
    if timings is not None:
        timings.update(seconds)
    return metrics, drawn


def run_tta_evaluation(detector, dataset, evaluator, *, max_images: int | None = None):
    """One pass of test-time-augmented inference over `dataset`, accumulated into `evaluator`, scored.

    Args:
      detector: a `rethink_tf.modeling.tta.TTADetector` (its `detect(image uint8 [h, w, 3])`).
      dataset: tf.data.Dataset of decoded examples {"image": uint8 [h, w, 3], "image_id": int64}
        (a source's `example_dataset(training=False, ...)`), one image at a time.
      evaluator: a `CocoEvaluator` (reset here).
      max_images: stop after this many images; None = the whole dataset.
    Returns:
      metrics {"bbox": {...}[, "segm": {...}]}.
    """
    evaluator.reset()
    start, count = time.time(), 0
    for example in dataset:
        if max_images is not None and count >= max_images:
            break
        detections = {k: v.numpy() for k, v in detector.detect(example["image"]).items()}
        image_info = detections.pop("image_info")
        evaluator.update(detections, np.asarray(example["image_id"]).reshape(1), image_info)
        count += 1
    logging.info("Evaluated %d images with %d-variant test-time augmentation in %.1f s", count,
                 len(detector.variants), time.time() - start)
    return evaluator.evaluate()
