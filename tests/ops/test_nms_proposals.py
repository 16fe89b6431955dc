"""nms_padded, multiclass_nms and generate_proposals against greedy numpy references."""
import numpy as np
import tensorflow as tf

from rethink_tf.ops import anchors as anchor_ops
from rethink_tf.ops import nms, proposals

from . import reference as ref


def _clustered_boxes(rng, n, offset=0.0):
    centres = rng.uniform(0, 60, (4, 2))
    c = centres[rng.integers(0, 4, n)] + rng.normal(0, 3, (n, 2))
    hw = rng.uniform(8, 20, (n, 2))
    return (np.concatenate([c - hw / 2, c + hw / 2], axis=1) + offset).astype(np.float32)


def test_nms_padded_matches_greedy_reference():
    rng = np.random.default_rng(10)
    boxes = np.stack([_clustered_boxes(rng, 60), _clustered_boxes(rng, 60, offset=-40.0)])  # 2nd has negatives
    scores = rng.uniform(size=(2, 60)).astype(np.float32)
    scores[0, :5] = -np.inf
    boxes[1, 7] = [-10, -10, -2, -2]  # all coordinates <= 0: still a real box
    scores[1, 7] = 2.0
    for iou_threshold in (0.3, 0.5, 0.7):
        idx, valid = nms.nms_padded(boxes, scores, 40, iou_threshold)
        for b in range(2):
            want = ref.greedy_nms(boxes[b], scores[b], iou_threshold, 40)
            got = idx.numpy()[b][valid.numpy()[b]]
            np.testing.assert_array_equal(got, want)
    assert 7 in idx.numpy()[1][valid.numpy()[1]]
    # explicit valid mask
    mask = rng.uniform(size=(2, 60)) < 0.5
    idx, valid = nms.nms_padded(boxes, scores, 40, 0.5, valid=mask)
    for b in range(2):
        s = np.where(mask[b], scores[b], -np.inf)
        np.testing.assert_array_equal(idx.numpy()[b][valid.numpy()[b]], ref.greedy_nms(boxes[b], s, 0.5, 40))


def test_multiclass_nms_matches_reference():
    rng = np.random.default_rng(11)
    n, k = 50, 3
    boxes = np.stack([np.stack([_clustered_boxes(rng, n) for _ in range(k)], axis=1) for _ in range(2)])
    scores = rng.uniform(size=(2, n, k)).astype(np.float32) ** 3
    out_boxes, out_scores, out_classes, num = nms.multiclass_nms(boxes, scores, 0.05, 0.5, 20)
    assert out_boxes.shape == (2, 20, 4) and out_classes.dtype == tf.int32
    for b in range(2):
        want = ref.multiclass_nms(boxes[b], scores[b], 0.05, 0.5, 20)
        assert num.numpy()[b] == len(want)
        np.testing.assert_allclose(out_scores.numpy()[b][: len(want)], [d[0] for d in want], rtol=1e-6)
        np.testing.assert_array_equal(out_classes.numpy()[b][: len(want)], [d[1] for d in want])
        np.testing.assert_allclose(out_boxes.numpy()[b][: len(want)], [d[2] for d in want], rtol=1e-6)
    # Few candidates: empty slots are zero / class 0; shared boxes [B, N, 4] accepted.
    scores = np.zeros((1, 6, 2), np.float32)
    scores[0, 0, 1] = 0.9
    b, s, c, n_det = nms.multiclass_nms(boxes[:1, :6, 0], scores, 0.05, 0.5, 10)
    assert n_det.numpy()[0] == 1 and c.numpy()[0, 0] == 2 and np.all(c.numpy()[0, 1:] == 0)
    np.testing.assert_allclose(b.numpy()[0, 0], boxes[0, 0, 0])
    assert np.all(s.numpy()[0, 1:] == 0)


def test_generate_proposals_matches_reference():
    rng = np.random.default_rng(12)
    anchors = anchor_ops.multilevel_anchors((64, 64), 2, 4, (16, 32, 64), (0.5, 1.0, 2.0))
    anchors = {level: a.numpy() for level, a in anchors.items()}
    objectness = {lv: rng.normal(size=(2, len(a))).astype(np.float32) for lv, a in anchors.items()}
    deltas = {lv: rng.normal(0, 0.3, size=(2, len(a), 4)).astype(np.float32) for lv, a in anchors.items()}
    image_info = np.array([[[60, 50], [60, 50], [1, 1], [0, 0]], [[40, 64], [40, 64], [1, 1], [0, 0]]], np.float32)
    boxes, scores = proposals.generate_proposals(objectness, deltas, anchors, image_info, 50, 200, 0.7, 2.0)
    assert boxes.shape == (2, 200, 4) and scores.shape == (2, 200)
    for b in range(2):
        want_boxes, want_scores = ref.proposals(
            {lv: o[b] for lv, o in objectness.items()}, {lv: d[b] for lv, d in deltas.items()},
            anchors, image_info[b, 1], 50, 200, 0.7, 2.0,
        )
        n = len(want_scores)
        assert 0 < n < 150, n  # some padded slots, some real ones
        got_scores = scores.numpy()[b]
        assert np.all(np.isfinite(got_scores[:n])) and np.all(np.isneginf(got_scores[n:]))
        np.testing.assert_allclose(got_scores[:n], want_scores, rtol=1e-6)
        np.testing.assert_allclose(boxes.numpy()[b][:n], want_boxes, atol=1e-3)
        assert np.all(boxes.numpy()[b][n:] == 0)
