"""Second-stage RoI sampling: proposals + gt boxes, matched at IoU 0.5, 512 per image with <= 25 % fg.

Crowd regions: a proposal whose intersection with a crowd box, divided by the proposal's own area, is
> crowd_filter_thresh (0.7, Detectron's TRAIN.CROWD_FILTER_THRESH, strict as in its
`_filter_crowd_proposals`) is ignored: neither foreground nor background. Crowd boxes are never matched
as gt. Note: Detectron applies this filter with precomputed proposals; its end-to-end path passes
crowd_thresh=0 "for historical consistency", and detectron2 drops crowd annotations (proposals on a
crowd become background). The filter is on by default here as the paper's recipe lists it; `None` or
0 turns it off.
"""
import tensorflow as tf

from rethink_tf.ops import box_coder, box_ops, matching, sampling

FAST_RCNN_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def sample_rois(
    proposals,
    gt_boxes,
    gt_classes,
    gt_valid,
    num_samples=512,
    fg_fraction=0.25,
    fg_iou=0.5,
    bg_iou_high=0.5,
    bg_iou_low=0.0,
    box_weights=FAST_RCNN_WEIGHTS,
    proposal_valid=None,
    seed=None,
    gt_is_crowd=None,
    crowd_filter_thresh=0.7,
):
    """Samples RoIs and their Fast R-CNN targets.

    Args:
      proposals: float [B, P, 4] yxyx canvas pixels (e.g. from generate_proposals).
      gt_boxes: float [B, M, 4]; gt_classes int [B, M] in 1..K; gt_valid bool [B, M] (real, non-crowd).
      fg_iou: IoU >= fg_iou is foreground; background is bg_iou_low <= IoU < bg_iou_high, the rest ignored.
      proposal_valid: optional bool [B, P]; padded proposals (e.g. score -inf) must be marked False.
      box_weights: coder weights for the box targets.
      seed: None, a python int or an int32 [2] stateless seed (see sampling.sample_balanced).
      gt_is_crowd: optional bool [B, M]: rows of gt_boxes that are crowd regions (must be False in
        gt_valid); with crowd_filter_thresh > 0, proposals mostly inside one are ignored.
    Returns a dict:
      rois float [B, R, 4] (R = num_samples), fg first then bg then unused slots;
      classes int32 [B, R]: gt class for fg, 0 for bg, -1 for unused slots;
      box_targets float [B, R, 4]: encoded deltas to the matched gt on fg rows, 0 elsewhere;
      matched_gt_index int32 [B, R] into M (meaningful on fg rows).
    The gt boxes are appended to the candidates (Detectron), so every valid gt can be sampled as fg.
    """
    proposals = tf.stop_gradient(tf.convert_to_tensor(proposals, tf.float32))
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    gt_classes = tf.convert_to_tensor(gt_classes, tf.int32)
    gt_valid = tf.cast(gt_valid, tf.bool)
    if proposal_valid is None:
        proposal_valid = tf.ones(tf.shape(proposals)[:2], tf.bool)
    candidates = tf.concat([proposals, gt_boxes], axis=1)
    candidate_valid = tf.concat([tf.cast(proposal_valid, tf.bool), gt_valid], axis=1)

    iou = box_ops.pairwise_iou(candidates, gt_boxes)
    matched, labels = matching.match_boxes(iou, gt_valid, fg_iou, bg_iou_high, allow_low_quality=False)
    best_iou = tf.reduce_max(tf.where(gt_valid[:, None, :], iou, -1.0), axis=2)
    labels = tf.where((labels == matching.NEGATIVE) & (best_iou < bg_iou_low), matching.IGNORE, labels)
    labels = tf.where(candidate_valid, labels, matching.IGNORE)
    if gt_is_crowd is not None and crowd_filter_thresh:
        in_crowd = crowd_overlap(proposals, gt_boxes, gt_is_crowd) > crowd_filter_thresh  # [B, P]
        in_crowd = tf.concat([in_crowd, tf.zeros_like(gt_valid)], axis=1)  # gt rows are never filtered
        labels = tf.where(in_crowd, matching.IGNORE, labels)

    index, sampled = sampling.sample_balanced(labels, num_samples, fg_fraction, seed=seed)
    rois = tf.gather(candidates, index, batch_dims=1)
    matched_index = tf.gather(matched, index, batch_dims=1)
    matched_classes = tf.gather(gt_classes, matched_index, batch_dims=1)
    matched_boxes = tf.gather(gt_boxes, matched_index, batch_dims=1)
    foreground = sampled == 1
    classes = tf.where(foreground, matched_classes, tf.where(sampled == 0, 0, -1))
    # Encode only fg rows (bg / unused rows may match padding boxes of zero size).
    safe_rois = tf.where(foreground[..., None], rois, tf.constant([0.0, 0.0, 1.0, 1.0]))
    safe_boxes = tf.where(foreground[..., None], matched_boxes, tf.constant([0.0, 0.0, 1.0, 1.0]))
    box_targets = tf.where(foreground[..., None], box_coder.encode_boxes(safe_boxes, safe_rois, box_weights), 0.0)
    rois = tf.where((sampled >= 0)[..., None], rois, 0.0)
    return {
        "rois": rois,
        "classes": tf.cast(classes, tf.int32),
        "box_targets": box_targets,
        "matched_gt_index": tf.cast(matched_index, tf.int32),
    }


def crowd_overlap(boxes, gt_boxes, gt_is_crowd):
    """Max over crowd rows of intersection(box, crowd box) / area(box) (COCO's iscrowd IoU).

    boxes [B, N, 4], gt_boxes [B, M, 4], gt_is_crowd bool [B, M] -> float32 [B, N] (0 without crowd;
    zero-area boxes give 0).
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    top_left = tf.maximum(boxes[:, :, tf.newaxis, :2], gt_boxes[:, tf.newaxis, :, :2])
    bottom_right = tf.minimum(boxes[:, :, tf.newaxis, 2:], gt_boxes[:, tf.newaxis, :, 2:])
    extent = tf.maximum(bottom_right - top_left, 0.0)
    intersection = extent[..., 0] * extent[..., 1]  # [B, N, M]
    area = box_ops.box_areas(boxes)[:, :, tf.newaxis]
    overlap = tf.math.divide_no_nan(intersection, area)
    overlap = tf.where(tf.cast(gt_is_crowd, tf.bool)[:, tf.newaxis, :], overlap, 0.0)
    return tf.reduce_max(overlap, axis=2)
