"""rpn_targets, sample_rois and mask_targets against numpy references."""
import numpy as np

from rethink_tf.ops import anchors as anchor_ops
from rethink_tf.ops import masks, roi_sampling, rpn_targets

from . import reference as ref


def _gt(rng, batch, m, canvas):
    boxes = np.stack([ref.random_boxes(rng, m, canvas, 8, canvas / 2) for _ in range(batch)])
    classes = rng.integers(1, 5, (batch, m)).astype(np.int32)
    valid = np.ones((batch, m), bool)
    valid[0, -2:] = False
    boxes[0, -2:] = 0.0
    classes[0, -2:] = -1
    return boxes, classes, valid


def test_rpn_targets_match_reference():
    rng = np.random.default_rng(20)
    anchors = anchor_ops.multilevel_anchors((64, 64), 2, 4, (16, 32, 64), (0.5, 1.0, 2.0))
    anchors = np.concatenate([anchors[level].numpy() for level in (2, 3, 4)])
    gt_boxes, _, gt_valid = _gt(rng, 2, 5, 64)
    image_info = np.tile(np.array([[64, 64], [64, 64], [1, 1], [0, 0]], np.float32), (2, 1, 1))
    labels, targets = rpn_targets.rpn_targets(anchors, gt_boxes, gt_valid, image_info, 64, 0.5, seed=3)
    labels, targets = labels.numpy(), targets.numpy()
    assert labels.shape == (2, len(anchors)) and targets.shape == (2, len(anchors), 4)
    for b in range(2):
        iou = ref.iou_matrix(anchors, gt_boxes[b])
        matched, want = ref.match(iou, gt_valid[b], 0.7, 0.3, True)
        n_pos, n_neg = (want == 1).sum(), (want == 0).sum()
        assert (labels[b] == 1).sum() == min(n_pos, 32) > 0
        assert (labels[b] == 0).sum() == min(n_neg, 64 - min(n_pos, 32))
        sampled = labels[b] >= 0
        np.testing.assert_array_equal(labels[b][sampled], want[sampled])
        for i in np.flatnonzero(labels[b] == 1):
            np.testing.assert_allclose(targets[b, i], ref.encode(gt_boxes[b, matched[i]], anchors[i], (1, 1, 1, 1)), atol=1e-4)
        assert np.all(targets[b][labels[b] != 1] == 0)


def test_rpn_targets_boundary_threshold_ignores_straddling_anchors():
    anchors = np.array([[-8, -8, 8, 8], [4, 4, 20, 20], [40, 40, 72, 72]], np.float32)
    gt = np.array([[[0, 0, 20, 20]]], np.float32)
    info = np.array([[[64, 64], [64, 64], [1, 1], [0, 0]]], np.float32)
    labels, _ = rpn_targets.rpn_targets(anchors, gt, np.ones((1, 1), bool), info, 4, 0.5, boundary_threshold=0)
    np.testing.assert_array_equal(labels.numpy(), [[-1, 1, -1]])
    labels, _ = rpn_targets.rpn_targets(anchors, gt, np.ones((1, 1), bool), info, 4, 0.5)
    np.testing.assert_array_equal(labels.numpy(), [[0, 1, 0]])


def test_rpn_targets_straddle_matches_reference_on_an_image_smaller_than_its_canvas():
    """Only anchors inside the scaled image (40x56 of a 96 canvas) are labelled, and each gt's best
    (low-quality) anchors are chosen among them, as Detectron matches only the inside anchors."""
    rng = np.random.default_rng(24)
    anchors = anchor_ops.multilevel_anchors((96, 96), 2, 4, (16, 32, 64), (0.5, 1.0, 2.0))
    anchors = np.concatenate([anchors[level].numpy() for level in (2, 3, 4)])
    # gt 0 hugs the image's corner: its best anchor overall straddles the border (IoU < 0.7).
    gt_boxes = np.array([[[30, 44, 40, 56], [4, 6, 20, 30], [0, 0, 0, 0]]], np.float32)
    gt_valid = np.array([[True, True, False]])
    info = np.array([[[80, 112], [40, 56], [0.5, 0.5], [0, 0]]], np.float32)
    labels, _ = rpn_targets.rpn_targets(anchors, gt_boxes, gt_valid, info, 10000, 0.5, boundary_threshold=0, seed=1)
    labels = labels.numpy()[0]
    inside = np.array([ref.inside_image(a, 40, 56) for a in anchors])
    iou = ref.iou_matrix(anchors, gt_boxes[0])
    assert not inside[iou[:, 0].argmax()] and iou[:, 0].max() < 0.7
    _, want = ref.match(np.where(inside[:, None], iou, 0.0), gt_valid[0], 0.7, 0.3, True)
    want[~inside] = -1
    np.testing.assert_array_equal(labels, want)
    assert (labels[iou[:, 0] > 0.0] == 1).any()  # gt 0 still has a positive anchor
    # An anchor exactly on the image's border does not cross it.
    edge = np.array([[0, 0, 40, 56], [0, 0, 40, 56.5]], np.float32)
    labels, _ = rpn_targets.rpn_targets(edge, gt_boxes, gt_valid, info, 4, 0.5, boundary_threshold=0)
    np.testing.assert_array_equal(labels.numpy()[0] >= 0, [True, False])


def test_sample_rois_ignore_proposals_inside_crowd_regions():
    gt_boxes = np.array([[[0, 0, 20, 20], [40, 40, 60, 80], [0, 0, 0, 0]]], np.float32)
    gt_classes = np.array([[1, 2, -1]], np.int32)
    gt_valid = np.array([[True, False, False]])
    gt_is_crowd = np.array([[False, True, False]])
    # Intersection over own area with the crowd box: 1.0, 0.75, exactly 0.7 (kept: Detectron's test is
    # strict), 0.5; then an fg proposal on gt 0 and a plain background one.
    props = np.array([[[42, 42, 58, 78], [45, 50, 65, 70], [46, 50, 66, 70], [50, 50, 70, 70],
                       [1, 1, 20, 20], [20, 0, 40, 20]]], np.float32)
    want_ratio = [1.0, 0.75, 0.7, 0.5, 0.0, 0.0]
    ratio = roi_sampling.crowd_overlap(props, gt_boxes, gt_is_crowd).numpy()[0]
    np.testing.assert_allclose(ratio, [ref.intersection_over_first(p, gt_boxes[0, 1]) for p in props[0]], atol=1e-6)
    np.testing.assert_allclose(ratio, want_ratio, atol=1e-6)
    out = roi_sampling.sample_rois(props, gt_boxes, gt_classes, gt_valid, 16, 0.5, gt_is_crowd=gt_is_crowd, seed=0)
    rois, classes = out["rois"].numpy()[0], out["classes"].numpy()[0]
    sampled = {tuple(r): c for r, c in zip(rois, classes) if c >= 0}
    assert set(sampled) == {tuple(p) for p in props[0, 2:]} | {tuple(gt_boxes[0, 0])}
    assert [sampled[tuple(p)] for p in props[0, 2:]] == [0, 0, 1, 0]
    # Off (None or 0): the crowd proposals are background, as before.
    for off in (None, 0.0):
        out = roi_sampling.sample_rois(props, gt_boxes, gt_classes, gt_valid, 16, 0.5, gt_is_crowd=gt_is_crowd,
                                       crowd_filter_thresh=off, seed=0)
        assert (out["classes"].numpy()[0] == 0).sum() == 5


def test_sample_rois_match_reference():
    rng = np.random.default_rng(21)
    gt_boxes, gt_classes, gt_valid = _gt(rng, 2, 6, 128)
    # Proposals: jittered gts (many fg) plus random boxes (mostly bg); last 5 are padding.
    jitter = gt_boxes[:, rng.integers(0, 4, 40)] + rng.normal(0, 4, (2, 40, 4)).astype(np.float32)
    props = np.concatenate([jitter, np.stack([ref.random_boxes(rng, 60, 128, 4, 60) for _ in range(2)])], axis=1)
    props_valid = np.ones(props.shape[:2], bool)
    props_valid[:, -5:] = False
    out = roi_sampling.sample_rois(props, gt_boxes, gt_classes, gt_valid, 64, 0.25, proposal_valid=props_valid, seed=5)
    out = {k: v.numpy() for k, v in out.items()}
    assert out["rois"].shape == (2, 64, 4)
    for b in range(2):
        cands = np.concatenate([props[b], gt_boxes[b]])
        cand_valid = np.concatenate([props_valid[b], gt_valid[b]])
        iou = ref.iou_matrix(cands, gt_boxes[b])
        matched, want = ref.match(iou, gt_valid[b], 0.5, 0.5, False)
        want[~cand_valid] = -1
        n_fg = min((want == 1).sum(), 16)
        classes = out["classes"][b]
        assert (classes > 0).sum() == n_fg > 0 and (classes == 0).sum() == min((want == 0).sum(), 64 - n_fg)
        for r in range(64):
            if classes[r] < 0:
                continue
            # locate the sampled candidate (rois are copies of candidates)
            i = int(np.flatnonzero(np.all(cands == out["rois"][b, r], axis=1) & cand_valid)[0])
            assert (classes[r] > 0) == (want[i] == 1)
            if classes[r] > 0:
                assert classes[r] == gt_classes[b, matched[i]] and out["matched_gt_index"][b, r] == matched[i]
                want_t = ref.encode(gt_boxes[b, matched[i]], cands[i], (10, 10, 5, 5))
                np.testing.assert_allclose(out["box_targets"][b, r], want_t, atol=1e-3)
            else:
                assert np.all(out["box_targets"][b, r] == 0)


def test_mask_targets_match_reference():
    rng = np.random.default_rng(22)
    gt_boxes, _, _ = _gt(rng, 2, 3, 64)
    gt_boxes[0, -2:] = ref.random_boxes(rng, 2, 64, 8, 32)
    gt_masks = (rng.uniform(size=(2, 3, 12, 12)) < 0.5).astype(np.uint8)
    rois = np.stack([ref.random_boxes(rng, 4, 64, 4, 40) for _ in range(2)])
    matched = rng.integers(0, 3, (2, 4)).astype(np.int32)
    got = masks.mask_targets(gt_masks, gt_boxes, rois, matched, output_size=7).numpy()
    assert got.shape == (2, 4, 7, 7)
    for b in range(2):
        for r in range(4):
            want = ref.mask_target(gt_masks[b, matched[b, r]].astype(float), gt_boxes[b, matched[b, r]], rois[b, r], 7)
            np.testing.assert_allclose(got[b, r], want, atol=1e-5)
    binary = masks.mask_targets(gt_masks, gt_boxes, rois, matched, output_size=7, threshold=0.5).numpy()
    np.testing.assert_array_equal(binary, (got >= 0.5).astype(np.float32))
    # An RoI equal to its gt box, at the mask's own resolution, reproduces the mask exactly.
    same = masks.mask_targets(gt_masks, gt_boxes, gt_boxes, np.tile(np.arange(3, dtype=np.int32), (2, 1)), 12)
    np.testing.assert_allclose(same.numpy(), gt_masks, atol=1e-5)


def test_paste_masks_numpy_and_tf_match_reference():
    rng = np.random.default_rng(23)
    probs = rng.uniform(size=(3, 6, 6)).astype(np.float32)
    boxes = np.array([[2.3, 4.1, 15.7, 11.0], [-3, -2, 8, 9], [10, 10, 30, 30]], np.float32)
    got = masks.paste_masks(probs, boxes, (20, 18))
    assert got.dtype == np.uint8 and got.shape == (3, 20, 18)
    for d in range(3):
        np.testing.assert_array_equal(got[d], ref.paste_mask(probs[d].astype(float), boxes[d], (20, 18), 0.5))
    np.testing.assert_array_equal(masks.paste_masks_tf(probs, boxes, (20, 18)).numpy(), got)
    full = masks.paste_masks(np.ones((1, 28, 28)), np.array([[4, 6, 12, 16]]), (20, 20))[0]
    assert full[4:12, 6:16].all() and full.sum() == 8 * 10
