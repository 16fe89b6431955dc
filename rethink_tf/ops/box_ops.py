"""Box geometry on yxyx boxes in absolute pixels: areas, pairwise IoU, clipping.

Pairwise IoU is keras-cv's `bounding_box.compute_iou` (audited correct in keras-cv 0.9.0, see
tests/ops/test_box_ops.py which checks it against a numpy reference so a change would be noticed).
"""
import keras_cv
import tensorflow as tf


def box_areas(boxes):
    """Areas of yxyx boxes [..., 4] -> [...] (negative extents count as 0)."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    height = tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    width = tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return height * width


def pairwise_iou(boxes_a, boxes_b):
    """IoU of every box in `boxes_a` [N, 4] or [B, N, 4] with every box in `boxes_b` [M, 4] or [B, M, 4].

    Returns [N, M] or [B, N, M] (batched when either input is). Zero-area boxes give IoU 0.
    """
    boxes_a = tf.convert_to_tensor(boxes_a, tf.float32)
    boxes_b = tf.convert_to_tensor(boxes_b, tf.float32)
    for name, boxes in (("boxes_a", boxes_a), ("boxes_b", boxes_b)):
        if boxes.shape.rank not in (2, 3) or boxes.shape[-1] != 4:
            raise ValueError(f"pairwise_iou: {name} must be [N, 4] or [B, N, 4], got {boxes.shape}")
    iou = keras_cv.bounding_box.compute_iou(boxes_a, boxes_b, bounding_box_format="yxyx")
    # compute_iou divides by (union + 1e-7): a zero-area pair gives 0/1e-7 = 0, as wanted. Negative
    # extents (malformed boxes) would give negative "areas", so clamp to [0, 1].
    return tf.clip_by_value(iou, 0.0, 1.0)


def clip_boxes(boxes, height_width):
    """Clips yxyx boxes [..., N, 4] to [0, height] x [0, width].

    `height_width` is a pair (python or a [2] tensor) applied to all boxes, or a [..., 2] tensor with one
    rank less than `boxes` (one pair per batch element, e.g. `image_info[:, 1, :]`).
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    height_width = tf.cast(tf.convert_to_tensor(height_width), tf.float32)
    if height_width.shape.rank == boxes.shape.rank - 1 and height_width.shape.rank > 1:
        height_width = height_width[..., tf.newaxis, :]
    limits = tf.concat([height_width, height_width], axis=-1)
    return tf.minimum(tf.maximum(boxes, 0.0), limits)
