"""Keypoint ops against independent references: Detectron's keypoints_to_heatmap_labels written as a
numpy loop, a numpy softmax cross-entropy, and Detectron's heatmaps_to_keypoints with torch's bicubic
resize (OpenCV's INTER_CUBIC kernel) of the whole heatmap to the box size."""
import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.ops import keypoints as kp_ops


def reference_heatmap_labels(keypoints, rois, size):
    """Detectron's keypoints_to_heatmap_labels for one list: keypoints [R, K, 3] (x, y, v), rois [R, 4]
    yxyx -> (labels [R, K], weights [R, K]), float32 arithmetic as Detectron's blobs."""
    r, k = keypoints.shape[:2]
    labels, weights = np.zeros((r, k), np.int64), np.zeros((r, k), np.float32)
    for i in range(r):
        y1, x1, y2, x2 = rois[i].astype(np.float32)
        scale_x, scale_y = np.float32(size) / (x2 - x1), np.float32(size) / (y2 - y1)
        for j in range(k):
            x, y, v = keypoints[i, j].astype(np.float32)
            gx = size - 1 if x == x2 else np.floor((x - x1) * scale_x)
            gy = size - 1 if y == y2 else np.floor((y - y1) * scale_y)
            ok = v > 0 and 0 <= gx < size and 0 <= gy < size
            labels[i, j] = int(gy * size + gx) if ok else 0
            weights[i, j] = float(ok)
    return labels, weights


def random_case(seed, r=40, k=17):
    rng = np.random.default_rng(seed)
    y1, x1 = rng.uniform(0, 200, r), rng.uniform(0, 200, r)
    rois = np.stack([y1, x1, y1 + rng.uniform(5, 300, r), x1 + rng.uniform(5, 300, r)], -1).astype(np.float32)
    # points spread around the RoIs (some outside), some unlabeled (v = 0), labeled v = 1 and 2
    u = rng.uniform(-0.3, 1.3, (r, k, 2))
    x = rois[:, None, 1] + u[..., 0] * (rois[:, None, 3] - rois[:, None, 1])
    y = rois[:, None, 0] + u[..., 1] * (rois[:, None, 2] - rois[:, None, 0])
    v = rng.integers(0, 3, (r, k)).astype(np.float32)
    keypoints = np.stack([x, y, v], -1).astype(np.float32)
    # exact borders: left / top (cell 0), right / bottom (last cell, Detectron's special case), and an
    # unlabeled point on a border (weight 0)
    keypoints[0, 0, :2] = rois[0, 1], rois[0, 0]
    keypoints[0, 1, :2] = rois[0, 3], rois[0, 2]
    keypoints[0, 2, :2] = rois[0, 3], rois[0, 0] + 1.0
    keypoints[0, 3, :2] = rois[0, 1] + 2.0, rois[0, 2]
    keypoints[0, :4, 2] = 2.0
    keypoints[1, 0] = [rois[1, 3], rois[1, 2], 0.0]
    keypoints[1, 1, :2] = rois[1, 3] + 1e-3, rois[1, 2]  # just outside the right border
    keypoints[1, 1, 2] = 2.0
    return keypoints, rois


def test_heatmap_targets_match_detectron_reference():
    keypoints, rois = random_case(0)
    labels, weights = kp_ops.heatmap_targets(keypoints[None], rois[None], 56)
    ref_labels, ref_weights = reference_heatmap_labels(keypoints, rois, 56)
    np.testing.assert_array_equal(weights.numpy()[0], ref_weights)
    np.testing.assert_array_equal(labels.numpy()[0], ref_labels)
    # the constructed border cases: left/top -> cell 0, right/bottom -> last cell, unlabeled -> weight 0
    assert labels.numpy()[0, 0, 0] == 0 and labels.numpy()[0, 0, 1] == 56 * 56 - 1
    assert labels.numpy()[0, 0, 2] % 56 == 55 and labels.numpy()[0, 0, 3] // 56 == 55
    assert weights.numpy()[0, 1, 0] == 0 and weights.numpy()[0, 1, 1] == 0
    assert 0.2 < ref_weights.mean() < 0.8  # the random case mixes inside / outside / unlabeled


def test_visible_in_box_includes_borders_and_needs_a_label():
    keypoints, rois = random_case(1, r=6)
    got = kp_ops.visible_in_box(keypoints, rois).numpy()
    x, y, v = keypoints[..., 0], keypoints[..., 1], keypoints[..., 2]
    ref = ((x >= rois[:, None, 1]) & (x <= rois[:, None, 3]) & (y >= rois[:, None, 0]) & (y <= rois[:, None, 2])
           & (v > 0))
    np.testing.assert_array_equal(got, ref)
    assert got[0, 1] and not got[1, 0] and not got[1, 1]


def test_keypoint_loss_is_weighted_softmax_ce_over_cells():
    rng = np.random.default_rng(2)
    b, r, s, k = 2, 3, 8, 5
    logits = rng.normal(size=(b, r, s, s, k)).astype(np.float32)
    labels = rng.integers(0, s * s, (b, r, k))
    weights = (rng.uniform(size=(b, r, k)) < 0.6).astype(np.float32)
    flat = logits.transpose(0, 1, 4, 2, 3).reshape(b, r, k, s * s).astype(np.float64)
    logz = np.log(np.exp(flat).sum(-1))
    ce = logz - np.take_along_axis(flat, labels[..., None], -1)[..., 0]
    total = (ce * weights).sum()
    np.testing.assert_allclose(float(kp_ops.keypoint_loss(logits, labels, weights)), total / weights.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(kp_ops.keypoint_loss(logits, labels, weights, normalizer=128.0)),
                               total / 128.0, rtol=1e-5)
    assert float(kp_ops.keypoint_loss(logits, labels, 0 * weights)) == 0.0


def reference_decode(maps, box):
    """Detectron's heatmaps_to_keypoints for one box (x1, y1 from yxyx), torch bicubic for cv2.resize."""
    import torch
    import torch.nn.functional as F
    y1, x1, y2, x2 = box
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    wc, hc = int(np.ceil(w)), int(np.ceil(h))
    resized = F.interpolate(torch.from_numpy(maps.transpose(2, 0, 1))[None], size=(hc, wc), mode="bicubic",
                            align_corners=False)[0].numpy()
    out = []
    for k in range(resized.shape[0]):
        pos = resized[k].argmax()
        xi, yi = pos % wc, pos // wc
        out.append([(xi + 0.5) * w / wc + x1, (yi + 0.5) * h / hc + y1, resized[k, yi, xi]])
    return np.array(out)


@pytest.fixture(scope="module")
def decode_case():
    rng = np.random.default_rng(3)
    s, k = 56, 4
    yy, xx = np.mgrid[:s, :s]
    boxes = np.array([[10, 20, 50, 90], [0, 0, 300, 200], [5, 5, 6.5, 7], [3, 4, 600, 500],
                      [1, 2, 30, 30.3], [100, 50, 700, 400]], np.float32)
    maps = np.zeros((len(boxes), s, s, k), np.float32)
    for d in range(len(boxes)):
        for j in range(k):  # one smooth peak each (anywhere, borders included) plus noise
            cy, cx = rng.uniform(-2, s + 2, 2)
            maps[d, :, :, j] = -((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(4, 30) + rng.normal(0, 0.05, (s, s))
    return maps, boxes


def test_heatmaps_to_keypoints_matches_detectron_full_resize(decode_case):
    maps, boxes = decode_case
    got = kp_ops.heatmaps_to_keypoints(maps[None], boxes[None]).numpy()[0]
    for d in range(len(boxes)):
        np.testing.assert_allclose(got[d], reference_decode(maps[d], boxes[d]), rtol=1e-4, atol=1e-3)


def test_heatmaps_to_keypoints_compiles_with_xla(decode_case):
    maps, boxes = decode_case
    eager = kp_ops.heatmaps_to_keypoints(maps[None], boxes[None])
    xla = tf.function(kp_ops.heatmaps_to_keypoints, jit_compile=True)(tf.constant(maps[None]), tf.constant(boxes[None]))
    np.testing.assert_allclose(xla.numpy(), eager.numpy(), rtol=1e-5, atol=1e-3)


def test_heatmap_targets_round_trip_through_decoding():
    """A one-hot heatmap at a keypoint's target cell decodes to a point within one cell of it."""
    keypoints, rois = random_case(4, r=5, k=6)
    keypoints[..., 2] = 2.0
    keypoints[..., 0] = np.clip(keypoints[..., 0], rois[:, None, 1], rois[:, None, 3])
    keypoints[..., 1] = np.clip(keypoints[..., 1], rois[:, None, 0], rois[:, None, 2])
    labels, weights = kp_ops.heatmap_targets(keypoints[None], rois[None], 56)
    assert weights.numpy().all()
    maps = tf.one_hot(labels[0], 56 * 56) * 20.0  # [R, K, S^2]
    maps = tf.transpose(tf.reshape(maps, (5, 6, 56, 56)), [0, 2, 3, 1])
    decoded = kp_ops.heatmaps_to_keypoints(maps[None], rois[None]).numpy()[0]
    cell = np.stack([(rois[:, 3] - rois[:, 1]) / 56, (rois[:, 2] - rois[:, 0]) / 56], -1)[:, None, :]
    assert np.all(np.abs(decoded[..., :2] - keypoints[..., :2]) <= cell + 1.0)
