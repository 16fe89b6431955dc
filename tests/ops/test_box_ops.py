"""box_ops (keras-cv compute_iou inside) and box_coder against the numpy reference."""
import numpy as np

from rethink_tf.ops import box_coder, box_ops

from . import reference as ref


def test_pairwise_iou_matches_reference_unbatched_and_batched():
    rng = np.random.default_rng(0)
    a = ref.random_boxes(rng, 7)
    b = ref.random_boxes(rng, 5)
    b[1] = [10, 10, 10, 20]  # zero-area box: IoU 0 with everything
    np.testing.assert_allclose(box_ops.pairwise_iou(a, b).numpy(), ref.iou_matrix(a, b), atol=1e-6)
    a2 = np.stack([a, ref.random_boxes(rng, 7)])
    b2 = np.stack([b, ref.random_boxes(rng, 5)])
    got = box_ops.pairwise_iou(a2, b2).numpy()
    assert got.shape == (2, 7, 5)
    for i in range(2):
        np.testing.assert_allclose(got[i], ref.iou_matrix(a2[i], b2[i]), atol=1e-6)
    assert np.all(got[0][:, 1] == 0.0)
    # Unbatched anchors against batched gt broadcast to [B, N, M].
    np.testing.assert_allclose(box_ops.pairwise_iou(a, b2).numpy()[1], ref.iou_matrix(a, b2[1]), atol=1e-6)


def test_identical_boxes_have_iou_one_and_disjoint_zero():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 40]], np.float32)
    iou = box_ops.pairwise_iou(boxes, boxes).numpy()
    np.testing.assert_allclose(iou, np.eye(2), atol=1e-6)


def test_clip_boxes_and_areas():
    boxes = np.array([[[-5, 3, 70, 40]], [[10, -2, 20, 90]]], np.float32)
    clipped = box_ops.clip_boxes(boxes, np.array([[64, 32], [50, 80]], np.float32)).numpy()
    np.testing.assert_array_equal(clipped, [[[0, 3, 64, 32]], [[10, 0, 20, 80]]])
    np.testing.assert_array_equal(box_ops.clip_boxes(boxes[0], (30, 30)).numpy(), [[0, 3, 30, 30]])
    np.testing.assert_allclose(box_ops.box_areas(clipped).numpy(), [[64 * 29], [10 * 80]])


def test_encode_decode_match_reference_and_round_trip():
    rng = np.random.default_rng(1)
    anchors = ref.random_boxes(rng, 20)
    boxes = ref.random_boxes(rng, 20)
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        deltas = box_coder.encode_boxes(boxes, anchors, weights).numpy()
        want = np.stack([ref.encode(b, a, weights) for b, a in zip(boxes, anchors)])
        np.testing.assert_allclose(deltas, want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(box_coder.decode_boxes(deltas, anchors, weights).numpy(), boxes, atol=1e-3)
    # Random deltas, including huge dh/dw that must be clamped at log(1000/16).
    deltas = rng.normal(0, 1, (20, 4)).astype(np.float32)
    deltas[:3, 2:] = 20.0
    got = box_coder.decode_boxes(deltas, anchors).numpy()
    want = np.stack([ref.decode(d, a, (1, 1, 1, 1)) for d, a in zip(deltas, anchors)])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    assert np.all(np.isfinite(got))
