"""The key ops trace and run under tf.function(jit_compile=True) with static shapes, agreeing with the
numpy references (deterministic parts) and the sampling invariants (random parts)."""
import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.ops import anchors as anchor_ops
from rethink_tf.ops import losses, masks, nms, proposals, roi_align, roi_sampling, rpn_targets

from . import reference as ref


@pytest.mark.slow  # XLA compile, ~25 s: the default suite is near its 15 minutes
def test_two_stage_pipeline_compiles_with_xla():
    rng = np.random.default_rng(40)
    canvas, batch, m = 64, 2, 4
    anchors = anchor_ops.multilevel_anchors((canvas, canvas), 2, 4, (8, 16, 32))
    flat_anchors = tf.concat([anchors[level] for level in range(2, 5)], axis=0)
    num = {level: int(a.shape[0]) for level, a in anchors.items()}
    objectness = {lv: tf.constant(rng.normal(size=(batch, n)).astype(np.float32)) for lv, n in num.items()}
    deltas = {lv: tf.constant(rng.normal(0, 0.2, (batch, n, 4)).astype(np.float32)) for lv, n in num.items()}
    features = {lv: tf.constant(rng.normal(size=(batch, canvas // 2**lv, canvas // 2**lv, 4)).astype(np.float32)) for lv in range(2, 6)}
    gt_boxes = tf.constant(np.stack([ref.random_boxes(rng, m, canvas, 8, 32) for _ in range(batch)]))
    gt_classes = tf.constant(rng.integers(1, 4, (batch, m)).astype(np.int32))
    gt_valid = tf.constant(np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool))
    gt_masks = tf.constant((rng.uniform(size=(batch, m, 16, 16)) < 0.5).astype(np.uint8))
    image_info = tf.constant(np.tile(np.array([[canvas, canvas], [canvas, canvas], [1, 1], [0, 0]], np.float32), (batch, 1, 1)))

    def step(objectness, deltas, features, gt_boxes, gt_classes, gt_valid, gt_masks, image_info):
        labels, box_targets = rpn_targets.rpn_targets(flat_anchors, gt_boxes, gt_valid, image_info, 32, 0.5, seed=1)
        rpn_obj, rpn_box = losses.rpn_losses(objectness, deltas, labels, box_targets, 32)
        boxes, scores = proposals.generate_proposals(objectness, deltas, anchors, image_info, 40, 30, 0.7)
        sample = roi_sampling.sample_rois(
            boxes, gt_boxes, gt_classes, gt_valid, 16, 0.25, proposal_valid=tf.math.is_finite(scores), seed=2
        )
        pooled = roi_align.multilevel_roi_align(features, sample["rois"], 7, 2)
        targets = masks.mask_targets(gt_masks, gt_boxes, sample["rois"], sample["matched_gt_index"], 14)
        det = nms.multiclass_nms(tf.tile(boxes[:, :, None, :], [1, 1, 3, 1]), tf.sigmoid(tf.stack([scores] * 3, -1)), 0.05, 0.5, 10)
        return rpn_obj, rpn_box, boxes, scores, sample, pooled, targets, det

    args = (objectness, deltas, features, gt_boxes, gt_classes, gt_valid, gt_masks, image_info)
    compiled = tf.function(step, jit_compile=True)(*args)
    rpn_obj, rpn_box, boxes, scores, sample, pooled, targets, det = compiled
    np_anchors = {lv: a.numpy() for lv, a in anchors.items()}
    for b in range(batch):
        want_boxes, want_scores = ref.proposals(
            {lv: o.numpy()[b] for lv, o in objectness.items()}, {lv: d.numpy()[b] for lv, d in deltas.items()},
            np_anchors, (canvas, canvas), 40, 30, 0.7, 0.0,
        )
        np.testing.assert_allclose(scores.numpy()[b][: len(want_scores)], want_scores, rtol=1e-6)
        np.testing.assert_allclose(boxes.numpy()[b][: len(want_scores)], want_boxes, atol=1e-3)
        cls_scores = 1 / (1 + np.exp(-np.stack([scores.numpy()[b]] * 3, -1)))
        want_det = ref.multiclass_nms(np.stack([boxes.numpy()[b]] * 3, 1), cls_scores, 0.05, 0.5, 10)
        assert det[3].numpy()[b] == len(want_det)
        np.testing.assert_allclose(det[1].numpy()[b][: len(want_det)], [d[0] for d in want_det], rtol=1e-5)
        np.testing.assert_array_equal(det[2].numpy()[b][: len(want_det)], [d[1] for d in want_det])
    assert sample["rois"].shape == (batch, 16, 4) and (sample["classes"].numpy() > 0).sum() > 0
    assert pooled.shape == (batch, 16, 7, 7, 4) and targets.shape == (batch, 16, 14, 14)
    assert np.isfinite(rpn_obj.numpy()) and np.isfinite(rpn_box.numpy()) and rpn_box.numpy() > 0
