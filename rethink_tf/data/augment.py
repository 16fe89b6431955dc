"""Per-example geometric transforms on decoded examples (TF graph ops, no Python).

Coordinates are continuous: pixel column i covers [i, i + 1), so a horizontal flip of an image of width W
maps x -> W - x for boxes and keypoints alike. Box-cropped masks only need their columns reversed.
"""

import tensorflow as tf


def sample_short_side(seed, short_side_range, step):
    """Draws a shorter-side length uniformly from {lo, lo + step, ..., <= hi} (Detectron's scale set).

    Args: seed int [2] stateless seed; short_side_range (lo, hi) pixels; step > 0 pixels.
    Returns: int32 scalar.
    """
    lo, hi = short_side_range
    count = (hi - lo) // step + 1
    k = tf.random.stateless_uniform([], seed, minval=0, maxval=count, dtype=tf.int32)
    return lo + k * step


def scale_boxes(boxes, image_info):
    """boxes yxyx [n, 4] in original pixels -> scaled pixels (image_info row 2 = scale_y, scale_x)."""
    sy, sx = image_info[2, 0], image_info[2, 1]
    return boxes * tf.stack([sy, sx, sy, sx])


def scale_keypoints(keypoints, image_info):
    """keypoints [n, K, 3] (x, y, v) original pixels -> scaled pixels; unlabeled points (v = 0) stay 0."""
    sy, sx = image_info[2, 0], image_info[2, 1]
    xy = keypoints[..., :2] * tf.stack([sx, sy])
    visible = keypoints[..., 2:3] > 0
    return tf.concat([tf.where(visible, xy, 0.0), keypoints[..., 2:3]], axis=-1)


def flip_image(image):
    """[h, w, C] -> columns reversed."""
    return tf.reverse(image, axis=[1])


def flip_boxes(boxes, width):
    """yxyx [n, 4], image width W: x0' = W - x1, x1' = W - x0."""
    y0, x0, y1, x1 = tf.unstack(boxes, axis=-1)
    return tf.stack([y0, width - x1, y1, width - x0], axis=-1)


def flip_masks(masks):
    """Box-cropped masks [n, S, S]: the box flips with the image, so the crop's columns reverse."""
    return tf.reverse(masks, axis=[2])


def flip_keypoints(keypoints, width, flip_permutation):
    """[n, K, 3]: x -> W - x for labeled points, then left/right swapped by `flip_permutation` (list of K)."""
    x, y, v = tf.unstack(keypoints, axis=-1)
    x = tf.where(v > 0, width - x, 0.0)
    flipped = tf.stack([x, y, v], axis=-1)
    return tf.gather(flipped, tf.constant(flip_permutation, tf.int32), axis=1)
