"""Cascade R-CNN targets of stages 2..N: the previous stage's refined boxes re-labelled, not re-sampled.

Stage 1 samples 512 RoIs per image from the proposals (`roi_sampling.sample_rois`). Each later stage k
takes the boxes stage k-1 decoded from those same RoI slots (gradient stopped) and labels every slot
against the ground truth at its own IoU (0.6, 0.7), as detectron2's `CascadeROIHeads` does
(`Matcher([iou_k], [0, 1])`, no low-quality matches, no sampling, no gt boxes appended again):

- IoU >= fg_iou with the best valid gt: foreground, class of that gt, box targets encoded with the
  stage's coder weights;
- otherwise background (class 0): there is no ignore band between the thresholds at these stages;
- slot not valid (unused at stage 1, or the refined box is empty after clipping to the image):
  class -1, excluded from every loss. detectron2 drops empty boxes; with static shapes the slot stays
  and is marked unused instead.

Crowd regions: as at stage 1 (`roi_sampling`), a refined box whose intersection with a crowd box over
its own area is > crowd_filter_thresh is unused (-1). detectron2 drops crowd annotations altogether;
this keeps one rule for every stage.

An image without valid gt gets background on every valid slot (detectron2 likewise).
"""
import tensorflow as tf

from rethink_tf.ops import box_coder, box_ops, roi_sampling


def label_rois(rois, roi_valid, gt_boxes, gt_classes, gt_valid, fg_iou, box_weights,
               gt_is_crowd=None, crowd_filter_thresh=0.7):
    """Labels fixed RoI slots against the ground truth.

    Args:
      rois: float [B, R, 4] yxyx canvas pixels (e.g. the previous stage's decoded, clipped boxes).
      roi_valid: bool [B, R]: slots that take part (False: unused slot, label -1).
      gt_boxes: float [B, M, 4]; gt_classes int [B, M] in 1..K; gt_valid bool [B, M] (real, non-crowd).
      fg_iou: IoU >= fg_iou is foreground, below is background.
      box_weights: (wy, wx, wh, ww) coder weights of the box targets.
      gt_is_crowd: optional bool [B, M] crowd rows of gt_boxes (False in gt_valid).
      crowd_filter_thresh: see the module docstring (None or 0: off).
    Returns the dict of `roi_sampling.sample_rois` for the same slots (order kept):
      rois float [B, R, 4] (0 on unused slots); classes int32 [B, R] (gt class fg, 0 bg, -1 unused);
      box_targets float [B, R, 4] (0 off foreground); matched_gt_index int32 [B, R] (meaningful on fg).
    """
    rois = tf.stop_gradient(tf.convert_to_tensor(rois, tf.float32))
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    gt_classes = tf.convert_to_tensor(gt_classes, tf.int32)
    gt_valid = tf.cast(gt_valid, tf.bool)
    valid = tf.cast(roi_valid, tf.bool) & (box_ops.box_areas(rois) > 0.0)
    if gt_is_crowd is not None and crowd_filter_thresh:
        valid &= ~(roi_sampling.crowd_overlap(rois, gt_boxes, gt_is_crowd) > crowd_filter_thresh)

    iou = tf.where(gt_valid[:, tf.newaxis, :], box_ops.pairwise_iou(rois, gt_boxes), -1.0)  # [B, R, M]
    best_iou = tf.reduce_max(iou, axis=2)
    matched = tf.argmax(iou, axis=2, output_type=tf.int32)
    foreground = valid & (best_iou >= fg_iou)
    matched_classes = tf.gather(gt_classes, matched, batch_dims=1)
    classes = tf.where(foreground, matched_classes, tf.where(valid, 0, -1))

    matched_boxes = tf.gather(gt_boxes, matched, batch_dims=1)
    unit = tf.constant([0.0, 0.0, 1.0, 1.0])
    safe_rois = tf.where(foreground[..., tf.newaxis], rois, unit)
    safe_boxes = tf.where(foreground[..., tf.newaxis], matched_boxes, unit)
    box_targets = tf.where(foreground[..., tf.newaxis],
                           box_coder.encode_boxes(safe_boxes, safe_rois, box_weights), 0.0)
    return {
        "rois": tf.where(valid[..., tf.newaxis], rois, 0.0),
        "classes": tf.cast(classes, tf.int32),
        "box_targets": box_targets,
        "matched_gt_index": matched,
    }
