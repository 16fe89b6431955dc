"""RPN proposal generation (detectron2's find_top_rpn_proposals with static shapes).

Per image and level: top-k anchors by objectness, decode, clip to the scaled image, drop boxes with a side
<= min_size, NMS; then the top `post_nms_topk` over all levels. Written here rather than with keras-cv's
ROIGenerator, which neither clips nor filters small boxes and drops negative logits by default.

torchvision's RPN (filter_proposals) takes the per-level top-k on logits too, but ranks NMS and the
final top-k by sigmoid(logit) and keeps probabilities >= its score threshold: `score="sigmoid"` and
`score_threshold` reproduce it (sigmoid saturates to 1.0 in float32 above a logit of ~17, so the
ranking among such proposals is a tie there, not in logits).
"""
import numpy as np
import tensorflow as tf

from rethink_tf.ops import box_coder, box_ops, nms


def generate_proposals(
    objectness,
    deltas,
    anchors,
    image_info,
    pre_nms_topk_per_level=2000,
    post_nms_topk=1000,
    nms_iou=0.7,
    min_size=0.0,
    score="logit",
    score_threshold=None,
):
    """Proposals from multilevel RPN outputs.

    Args:
      objectness: {level: float [B, A_l]} logits.
      deltas: {level: float [B, A_l, 4]} (dy, dx, dh, dw), coder weights (1, 1, 1, 1).
      anchors: {level: float [A_l, 4]} yxyx canvas pixels.
      image_info: float [B, 4, 2]; row 1 (scaled height, width) is the clipping window.
      min_size: boxes whose height or width is <= min_size (pixels) are dropped (0 drops empty boxes).
      score: what NMS and the final top-k rank: "logit" (Detectron) or "sigmoid" (torchvision); the
        per-level top-k always ranks logits.
      score_threshold: None, or keep only proposals whose score (as `score`) is >= this.
    Returns:
      boxes float [B, post_nms_topk, 4] canvas pixels (zeros in padded slots),
      scores float [B, post_nms_topk] objectness scores (as `score`) sorted decreasingly, -inf in
      padded slots.
    Proposals carry no gradient (inputs are stop_gradient-ed), as in Detectron.
    """
    if score not in ("logit", "sigmoid"):
        raise ValueError(f"generate_proposals: score must be 'logit' or 'sigmoid', got {score!r}")
    levels = sorted(objectness)
    if sorted(deltas) != levels or any(level not in anchors for level in levels):
        raise ValueError(
            f"generate_proposals: levels differ: objectness {levels}, deltas {sorted(deltas)}, "
            f"anchors {sorted(anchors)}"
        )
    height_width = tf.convert_to_tensor(image_info, tf.float32)[:, 1, :]
    all_boxes, all_scores = [], []
    for level in levels:
        scores = tf.stop_gradient(tf.convert_to_tensor(objectness[level], tf.float32))
        level_deltas = tf.stop_gradient(tf.convert_to_tensor(deltas[level], tf.float32))
        level_anchors = tf.convert_to_tensor(anchors[level], tf.float32)
        k = min(pre_nms_topk_per_level, scores.shape[1])
        top_scores, top_index = tf.math.top_k(scores, k=k)
        top_deltas = tf.gather(level_deltas, top_index, batch_dims=1)
        top_anchors = tf.gather(level_anchors, top_index)
        if score == "sigmoid":
            top_scores = tf.where(tf.math.is_finite(top_scores), tf.sigmoid(top_scores), top_scores)
        boxes = box_ops.clip_boxes(box_coder.decode_boxes(top_deltas, top_anchors), height_width)
        valid = (
            (boxes[..., 2] - boxes[..., 0] > min_size)
            & (boxes[..., 3] - boxes[..., 1] > min_size)
            & tf.math.is_finite(top_scores)
            & tf.reduce_all(tf.math.is_finite(boxes), axis=-1)
        )
        if score_threshold is not None:
            valid &= top_scores >= score_threshold
        keep_count = min(k, post_nms_topk)
        keep, keep_valid = nms.nms_padded(boxes, top_scores, keep_count, nms_iou, valid=valid)
        all_boxes.append(tf.gather(boxes, keep, batch_dims=1))
        all_scores.append(tf.where(keep_valid, tf.gather(top_scores, keep, batch_dims=1), -np.inf))
    boxes = tf.concat(all_boxes, axis=1)
    scores = tf.concat(all_scores, axis=1)
    k = min(post_nms_topk, scores.shape[1])
    top_scores, top_index = tf.math.top_k(scores, k=k)
    top_boxes = tf.gather(boxes, top_index, batch_dims=1)
    top_boxes = tf.where(tf.math.is_finite(top_scores)[..., None], top_boxes, 0.0)
    if k < post_nms_topk:
        top_boxes = tf.pad(top_boxes, [[0, 0], [0, post_nms_topk - k], [0, 0]])
        top_scores = tf.pad(top_scores, [[0, 0], [0, post_nms_topk - k]], constant_values=-np.inf)
    return top_boxes, top_scores
