"""IoU-threshold matching of predictions (anchors/proposals) to ground-truth boxes.

Written here rather than taken from keras-cv's BoxMatcher, which (0.9.0) has no low-quality matching and
mis-matches row 0 with force_match_for_each_col. Same semantics as detectron2's Matcher.
"""
import tensorflow as tf

POSITIVE, NEGATIVE, IGNORE = 1, 0, -1


def match_boxes(iou, valid_gt, high, low, allow_low_quality):
    """Matches each of N predictions to its highest-IoU valid gt.

    Args:
      iou: float [B, N, M] IoU of predictions (rows) with gt boxes (columns).
      valid_gt: bool [B, M]; padding/crowd columns are never matched.
      high, low: IoU >= high is positive, IoU < low negative, in between ignored (-1).
      allow_low_quality: also make positive every prediction whose IoU with some valid gt equals that
        gt's best IoU (over all predictions), if that best IoU is > 0 (Detectron's "each gt gets its best
        anchors"). The matched index stays the row's argmax, as in detectron2.

    Returns:
      matched_gt_index int32 [B, N] (0 when an image has no valid gt), match_label int32 [B, N] in
      {1, 0, -1}.
    """
    iou = tf.convert_to_tensor(iou, tf.float32)
    valid_gt = tf.cast(valid_gt, tf.bool)
    if low > high:
        raise ValueError(f"match_boxes: low ({low}) must not exceed high ({high})")
    iou = tf.where(valid_gt[:, tf.newaxis, :], iou, -1.0)
    best_iou = tf.reduce_max(iou, axis=2)
    matched = tf.argmax(iou, axis=2, output_type=tf.int32)
    labels = tf.where(
        best_iou >= high,
        POSITIVE,
        tf.where(best_iou < low, NEGATIVE, IGNORE),
    )
    if allow_low_quality:
        best_per_gt = tf.reduce_max(iou, axis=1, keepdims=True)  # [B, 1, M]
        is_best = (iou == best_per_gt) & (best_per_gt > 0.0) & valid_gt[:, tf.newaxis, :]
        labels = tf.where(tf.reduce_any(is_best, axis=2), POSITIVE, labels)
    return matched, tf.cast(labels, tf.int32)
