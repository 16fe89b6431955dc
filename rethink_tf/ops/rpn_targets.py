"""RPN training targets: match anchors to gt, sample 256 per image (<= 50 % positive), encode deltas.

Written here: keras-cv 0.9.0's private `_RpnLabelEncoder` never does low-quality matches and fails inside
tf.function without an explicit name.
"""
import tensorflow as tf

from rethink_tf.ops import box_coder, box_ops, matching, sampling


def rpn_targets(
    anchors,
    gt_boxes,
    gt_valid,
    image_info,
    num_samples=256,
    positive_fraction=0.5,
    positive_iou=0.7,
    negative_iou=0.3,
    allow_low_quality=True,
    boundary_threshold=-1.0,
    weights=(1.0, 1.0, 1.0, 1.0),
    seed=None,
):
    """Objectness labels and box targets for every anchor.

    Args:
      anchors: float [A, 4] yxyx canvas pixels, all levels concatenated in the order the heads are.
      gt_boxes: float [B, M, 4] yxyx canvas pixels.
      gt_valid: bool [B, M]: real, non-crowd instances (padding and crowd are never matched).
      image_info: float [B, 4, 2] (row 1 = scaled image height/width), used only when
        boundary_threshold >= 0: an anchor reaching more than boundary_threshold pixels outside the scaled
        image [0, h] x [0, w] is ignored (Detectron's RPN_STRADDLE_THRESH; 0 ignores every anchor crossing
        the image border, so the canvas padding yields no negatives). Detectron's boxes are inclusive, its
        test x2 < w is x2 <= w for these exclusive (x2 = x1 + width) boxes. -1 keeps every anchor
        (detectron2).
      num_samples, positive_fraction: anchors sampled per image and the positive cap.
      positive_iou, negative_iou: IoU >= positive_iou positive, < negative_iou negative.
    Returns:
      objectness_labels int32 [B, A]: 1 / 0 for sampled positives / negatives, -1 otherwise.
      box_targets float32 [B, A, 4]: encoded (dy, dx, dh, dw) to the matched gt on positives, 0 elsewhere.
    """
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    gt_valid = tf.cast(gt_valid, tf.bool)
    iou = box_ops.pairwise_iou(anchors, gt_boxes)  # [B, A, M]
    inside = None
    if boundary_threshold >= 0:
        height_width = tf.convert_to_tensor(image_info, tf.float32)[:, 1, :]  # [B, 2]
        limit = tf.concat([height_width, height_width], axis=-1)[:, tf.newaxis, :] + boundary_threshold
        inside = (anchors[tf.newaxis, :, 0] >= -boundary_threshold) & (anchors[tf.newaxis, :, 1] >= -boundary_threshold)
        inside &= (anchors[tf.newaxis, :, 2] <= limit[..., 2]) & (anchors[tf.newaxis, :, 3] <= limit[..., 3])
        # As Detectron, which matches only the inside anchors: an outside anchor cannot be a gt's
        # best (low-quality) match.
        iou = tf.where(inside[..., tf.newaxis], iou, 0.0)
    matched, labels = matching.match_boxes(iou, gt_valid, positive_iou, negative_iou, allow_low_quality)
    if inside is not None:
        labels = tf.where(inside, labels, matching.IGNORE)

    index, sampled = sampling.sample_balanced(labels, num_samples, positive_fraction, seed=seed)
    objectness_labels = scatter_sampled_labels(index, sampled, anchors.shape[0])
    matched_boxes = tf.gather(gt_boxes, matched, batch_dims=1)  # [B, A, 4]
    positive = objectness_labels == 1
    safe_boxes = tf.where(positive[..., tf.newaxis], matched_boxes, anchors[tf.newaxis])
    box_targets = box_coder.encode_boxes(safe_boxes, anchors[tf.newaxis], weights)
    box_targets = tf.where(positive[..., tf.newaxis], box_targets, 0.0)
    return tf.cast(objectness_labels, tf.int32), box_targets


def scatter_sampled_labels(index, sampled_labels, num_entries):
    """Dense labels [B, num_entries]: sampled_labels at `index` (both [B, S]), -1 elsewhere.

    Unused slots (label -1) are written to an extra dummy column that is sliced off.
    """
    batch_size = tf.shape(index)[0]
    target = tf.where(sampled_labels >= 0, index, num_entries)
    batch_index = tf.broadcast_to(tf.range(batch_size)[:, tf.newaxis], tf.shape(index))
    scatter_index = tf.stack([batch_index, target], axis=-1)
    dense = tf.fill([batch_size, num_entries + 1], -1)
    dense = tf.tensor_scatter_nd_update(dense, scatter_index, sampled_labels)
    return dense[:, :num_entries]
