"""Box <-> delta coding (detectron2's Box2BoxTransform; widths are x2 - x1, no +1).

Deltas are ordered (dy, dx, dh, dw):
    dy = wy * (cy_box - cy_anchor) / h_anchor      dh = wh * log(h_box / h_anchor)
and likewise for x/w. The RPN uses weights (1, 1, 1, 1), the Fast R-CNN head (10, 10, 5, 5).
"""
import math

import tensorflow as tf

DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def _centers_and_sizes(boxes):
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * height, boxes[..., 1] + 0.5 * width, height, width


def encode_boxes(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """Deltas [..., 4] that turn `anchors` into `boxes` (both yxyx [..., 4], broadcastable).

    Both must have positive height and width; callers mask out the rows whose target box is padding.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    wy, wx, wh, ww = weights
    cy, cx, h, w = _centers_and_sizes(boxes)
    acy, acx, ah, aw = _centers_and_sizes(anchors)
    return tf.stack(
        [wy * (cy - acy) / ah, wx * (cx - acx) / aw, wh * tf.math.log(h / ah), ww * tf.math.log(w / aw)],
        axis=-1,
    )


def decode_boxes(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0), clip_log_scale=DEFAULT_SCALE_CLAMP):
    """Boxes yxyx [..., 4] from `deltas` [..., 4] applied to `anchors` [..., 4] (broadcastable).

    dh/dw (after dividing by their weights) are clamped at `clip_log_scale` so exp() cannot overflow.
    """
    deltas = tf.convert_to_tensor(deltas, tf.float32)
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    wy, wx, wh, ww = weights
    acy, acx, ah, aw = _centers_and_sizes(anchors)
    dy = deltas[..., 0] / wy
    dx = deltas[..., 1] / wx
    dh = tf.minimum(deltas[..., 2] / wh, clip_log_scale)
    dw = tf.minimum(deltas[..., 3] / ww, clip_log_scale)
    cy = dy * ah + acy
    cx = dx * aw + acx
    h = tf.exp(dh) * ah
    w = tf.exp(dw) * aw
    return tf.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)
