"""Cascade later-stage labelling and gradient scaling against numpy references."""
import numpy as np
import tensorflow as tf

from rethink_tf.ops import cascade_targets, gradients

from . import reference as ref

STAGES = ((0.6, (20.0, 20.0, 10.0, 10.0)), (0.7, (30.0, 30.0, 15.0, 15.0)))


def _reference_labels(rois, roi_valid, gt_boxes, gt_classes, gt_valid, gt_crowd, fg_iou, weights, crowd_thresh):
    """One image, loop by loop: (classes [R], box_targets [R, 4], matched [R])."""
    r = len(rois)
    classes = np.full(r, -1, np.int64)
    targets = np.zeros((r, 4))
    matched = np.zeros(r, np.int64)
    cols = [j for j in range(len(gt_boxes)) if gt_valid[j]]
    for i in range(r):
        box = rois[i]
        if not roi_valid[i] or (box[2] - box[0]) * (box[3] - box[1]) <= 0:
            continue
        if any(gt_crowd[j] and ref.intersection_over_first(box, gt_boxes[j]) > crowd_thresh
               for j in range(len(gt_boxes))):
            continue
        if not cols:
            classes[i] = 0
            continue
        best = max(cols, key=lambda j: (ref.iou(box, gt_boxes[j]), -j))
        matched[i] = best
        if ref.iou(box, gt_boxes[best]) >= fg_iou:
            classes[i] = gt_classes[best]
            targets[i] = ref.encode(gt_boxes[best], box, weights)
        else:
            classes[i] = 0
    return classes, targets, matched


def _case(seed):
    rng = np.random.default_rng(seed)
    b, m, r, canvas = 3, 5, 40, 96.0
    gt_boxes = np.stack([ref.random_boxes(rng, m, canvas, 8, 40) for _ in range(b)])
    gt_classes = rng.integers(1, 6, (b, m)).astype(np.int32)
    gt_valid = np.ones((b, m), bool)
    gt_crowd = np.zeros((b, m), bool)
    gt_valid[0, -1] = False                       # padding row
    gt_boxes[0, -1], gt_classes[0, -1] = 0.0, -1
    gt_valid[1, 0], gt_crowd[1, 0] = False, True  # a crowd region
    gt_valid[2] = False                           # an image without gt
    # Refined boxes: jittered copies of the gt (a spread of IoUs around 0.6 / 0.7) plus random ones.
    rois = np.zeros((b, r, 4), np.float32)
    for i in range(b):
        src = gt_boxes[i, rng.integers(0, m, r)]
        size = np.concatenate([src[:, 2:] - src[:, :2]] * 2, axis=1)
        rois[i] = src + rng.normal(0.0, 0.12, (r, 4)) * size
        rois[i, : r // 4] = ref.random_boxes(rng, r // 4, canvas, 2, 40)
    rois = np.clip(rois, 0.0, canvas)
    rois[0, 3] = [10.0, 10.0, 10.0, 30.0]  # empty after clipping
    roi_valid = rng.random((b, r)) > 0.1
    return rois, roi_valid, gt_boxes, gt_classes, gt_valid, gt_crowd


def test_label_rois_matches_reference_at_each_later_stage():
    rois, roi_valid, gt_boxes, gt_classes, gt_valid, gt_crowd = _case(5)
    for fg_iou, weights in STAGES:
        out = cascade_targets.label_rois(rois, roi_valid, gt_boxes, gt_classes, gt_valid, fg_iou, weights,
                                         gt_is_crowd=gt_crowd, crowd_filter_thresh=0.7)
        out = {k: v.numpy() for k, v in out.items()}
        seen = {-1: 0, 0: 0, "fg": 0}
        for i in range(len(rois)):
            classes, targets, matched = _reference_labels(rois[i], roi_valid[i], gt_boxes[i], gt_classes[i],
                                                          gt_valid[i], gt_crowd[i], fg_iou, weights, 0.7)
            np.testing.assert_array_equal(out["classes"][i], classes)
            np.testing.assert_allclose(out["box_targets"][i], targets, rtol=1e-4, atol=1e-4)
            fg = classes > 0
            np.testing.assert_array_equal(out["matched_gt_index"][i][fg], matched[fg])
            used = classes >= 0
            np.testing.assert_array_equal(out["rois"][i][used], rois[i][used])
            assert not out["rois"][i][~used].any()
            seen[-1] += (classes == -1).sum()
            seen[0] += (classes == 0).sum()
            seen["fg"] += fg.sum()
        assert min(seen.values()) > 3, seen  # the case exercises every label
    assert (out["classes"][2] <= 0).all() and (out["classes"][2] == 0).any()  # no gt: background only


def test_scale_gradient_is_identity_forward_and_scales_backward():
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32))
    weights = tf.constant([[1.0, -2.0, 3.0]])

    def loss_fn(value):
        with tf.GradientTape() as tape:
            tape.watch(value)
            y = gradients.scale_gradient(value, 1.0 / 3.0)
            loss = tf.reduce_sum(tf.square(y) * weights)
        return y, tape.gradient(loss, value)

    y, grad = loss_fn(x)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_allclose(grad.numpy(), 2.0 * x.numpy() * weights.numpy() / 3.0, rtol=1e-6)
    y_xla, grad_xla = tf.function(loss_fn, jit_compile=True)(x)
    np.testing.assert_allclose(grad_xla.numpy(), grad.numpy(), rtol=1e-6)
    half = gradients.scale_gradient(tf.cast(x, tf.bfloat16), 0.5)
    assert half.dtype == tf.bfloat16
