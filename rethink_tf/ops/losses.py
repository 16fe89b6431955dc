"""Mask R-CNN losses with Detectron's normalisations.

- RPN: sigmoid BCE over sampled anchors and smooth-L1 (beta 1/9) over positive anchors, both summed and
  divided by (anchors sampled per image * images), as Detectron/detectron2 do.
- Fast R-CNN: softmax CE averaged over sampled RoIs; smooth-L1 (beta 1) on the gt class's deltas of fg
  RoIs, summed and divided by the number of sampled RoIs.
- Mask: per-pixel sigmoid BCE on the gt class channel, averaged over fg RoIs' pixels.
"""
import tensorflow as tf


def smooth_l1(x, beta):
    """Elementwise Huber-style smooth-L1: 0.5 x^2 / beta if |x| < beta else |x| - 0.5 beta (|x| if beta=0)."""
    x = tf.abs(tf.convert_to_tensor(x, tf.float32))
    if beta <= 0:
        return x
    return tf.where(x < beta, 0.5 * tf.square(x) / beta, x - 0.5 * beta)


def _concat_levels(value):
    if isinstance(value, dict):
        return tf.concat([value[level] for level in sorted(value)], axis=1)
    return value


def rpn_losses(
    objectness_logits, box_deltas, objectness_labels, box_targets, num_samples_per_image=256, beta=1.0 / 9
):
    """RPN losses.

    Args:
      objectness_logits: [B, A] (or {level: [B, A_l]}, concatenated in level order).
      box_deltas: [B, A, 4] (or per-level dict). objectness_labels: int [B, A] in {1, 0, -1}.
      box_targets: [B, A, 4] from rpn_targets.
    Returns:
      (objectness_loss, box_loss) scalar float32.
    """
    logits = tf.cast(_concat_levels(objectness_logits), tf.float32)
    deltas = tf.cast(_concat_levels(box_deltas), tf.float32)
    labels = tf.convert_to_tensor(objectness_labels, tf.int32)
    sampled = tf.cast(labels >= 0, tf.float32)
    positive = tf.cast(labels == 1, tf.float32)
    normalizer = tf.cast(num_samples_per_image * tf.shape(logits)[0], tf.float32)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive, logits=logits)
    objectness_loss = tf.reduce_sum(bce * sampled) / normalizer
    box_loss = tf.reduce_sum(smooth_l1(deltas - box_targets, beta) * positive[..., None]) / normalizer
    return objectness_loss, box_loss


def select_class_deltas(box_deltas, classes, num_logits):
    """Picks each RoI's deltas for its class.

    box_deltas: [B, R, K', 4], the predictor's layout, with K' = 1 (class-agnostic), num_logits - 1
    (detectron2: no background slot, class c at c - 1) or num_logits (Detectron: background slot 0,
    class c at c). classes: int [B, R] >= 0 (negative classes are treated as 0 and must be masked by
    the caller). -> [B, R, 4].
    """
    box_deltas = tf.convert_to_tensor(box_deltas)
    if box_deltas.shape.rank != 4 or box_deltas.shape[-1] != 4:
        raise ValueError(f"box deltas must be [B, R, K', 4], got {box_deltas.shape}")
    slots = box_deltas.shape[2]
    if slots == 1:
        return box_deltas[:, :, 0, :]
    classes = tf.maximum(tf.convert_to_tensor(classes, tf.int32), 0)
    if slots == num_logits:
        slot = classes
    elif slots == num_logits - 1:
        slot = tf.maximum(classes - 1, 0)
    else:
        raise ValueError(f"box deltas have {slots} class slots; expected 1, {num_logits} or {num_logits - 1}")
    return tf.gather(box_deltas, slot, batch_dims=2)


def fast_rcnn_losses(class_logits, box_deltas, classes, box_targets, beta=1.0):
    """Box head losses.

    Args:
      class_logits: [B, R, K + 1] (index 0 background). box_deltas: [B, R, K', 4] with K' in {1, K, K + 1}.
      classes: int [B, R]: 1..K fg, 0 bg, -1 unused (excluded). box_targets: [B, R, 4].
    Returns:
      (class_loss, box_loss) scalar float32.
    """
    class_logits = tf.cast(class_logits, tf.float32)
    classes = tf.convert_to_tensor(classes, tf.int32)
    sampled = tf.cast(classes >= 0, tf.float32)
    num_sampled = tf.maximum(tf.reduce_sum(sampled), 1.0)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(classes, 0), logits=class_logits)
    class_loss = tf.reduce_sum(ce * sampled) / num_sampled
    deltas = tf.cast(select_class_deltas(box_deltas, classes, class_logits.shape[-1]), tf.float32)
    foreground = tf.cast(classes > 0, tf.float32)
    box_loss = tf.reduce_sum(smooth_l1(deltas - box_targets, beta) * foreground[..., None]) / num_sampled
    return class_loss, box_loss


def mask_loss(mask_logits, mask_targets, classes):
    """Mask head loss.

    Args:
      mask_logits: [B, R, h, w, K] channels-last, class k at channel k - 1 (or [B, R, h, w] already
        selected / class-agnostic).
      mask_targets: [B, R, h, w] in [0, 1] (from mask_targets). classes: int [B, R]; RoIs with class > 0
        count.
    Returns:
      scalar float32: mean BCE over fg RoIs' pixels (0 when there is no fg RoI).
    """
    mask_logits = tf.cast(mask_logits, tf.float32)
    classes = tf.convert_to_tensor(classes, tf.int32)
    if mask_logits.shape.rank == 5:
        channel = tf.maximum(classes - 1, 0)
        mask_logits = tf.gather(tf.transpose(mask_logits, [0, 1, 4, 2, 3]), channel, batch_dims=2)
    foreground = tf.cast(classes > 0, tf.float32)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(mask_targets, tf.float32), logits=mask_logits)
    per_roi = tf.reduce_mean(bce, axis=[2, 3])
    return tf.reduce_sum(per_roi * foreground) / tf.maximum(tf.reduce_sum(foreground), 1.0)
