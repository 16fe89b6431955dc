"""Losses against direct numpy formulas."""
import math

import numpy as np
import pytest

from rethink_tf.ops import losses


def _smooth_l1(x, beta):
    x = abs(x)
    if beta == 0:
        return x
    return 0.5 * x * x / beta if x < beta else x - 0.5 * beta


def _bce(logit, label):
    p = 1 / (1 + math.exp(-logit))
    return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def test_smooth_l1():
    x = np.array([-2.0, -0.05, 0.0, 0.1, 0.5, 3.0], np.float32)
    for beta in (0.0, 1 / 9, 1.0):
        np.testing.assert_allclose(losses.smooth_l1(x, beta).numpy(), [_smooth_l1(v, beta) for v in x], rtol=1e-5, atol=1e-7)


def test_rpn_losses():
    rng = np.random.default_rng(30)
    logits = rng.normal(size=(2, 50)).astype(np.float32)
    deltas = rng.normal(size=(2, 50, 4)).astype(np.float32)
    labels = rng.choice([1, 0, -1], size=(2, 50)).astype(np.int32)
    targets = rng.normal(size=(2, 50, 4)).astype(np.float32)
    obj, box = losses.rpn_losses(logits, deltas, labels, targets, num_samples_per_image=16)
    want_obj = sum(_bce(logits[b, i], labels[b, i]) for b in range(2) for i in range(50) if labels[b, i] >= 0) / 32
    want_box = sum(
        _smooth_l1(deltas[b, i, j] - targets[b, i, j], 1 / 9) for b in range(2) for i in range(50) for j in range(4)
        if labels[b, i] == 1
    ) / 32
    np.testing.assert_allclose([obj.numpy(), box.numpy()], [want_obj, want_box], rtol=1e-5)
    # Per-level dicts are concatenated in level order.
    split = losses.rpn_losses({2: logits[:, :30], 3: logits[:, 30:]}, {2: deltas[:, :30], 3: deltas[:, 30:]}, labels, targets, 16)
    np.testing.assert_allclose([v.numpy() for v in split], [obj.numpy(), box.numpy()], rtol=1e-6)


@pytest.mark.parametrize("layout", ["agnostic", "no_bg", "with_bg"])
def test_fast_rcnn_losses(layout):
    rng = np.random.default_rng(31)
    k = 3
    logits = rng.normal(size=(2, 10, k + 1)).astype(np.float32)
    classes = rng.integers(-1, k + 1, (2, 10)).astype(np.int32)
    width = {"agnostic": 1, "no_bg": k, "with_bg": k + 1}[layout]
    deltas = rng.normal(size=(2, 10, width, 4)).astype(np.float32)
    targets = rng.normal(size=(2, 10, 4)).astype(np.float32)
    cls_loss, box_loss = losses.fast_rcnn_losses(logits, deltas, classes, targets)
    sampled = [(b, r) for b in range(2) for r in range(10) if classes[b, r] >= 0]
    ce = [-(logits[b, r, classes[b, r]] - np.log(np.exp(logits[b, r]).sum())) for b, r in sampled]
    slot = {"agnostic": lambda c: 0, "no_bg": lambda c: c - 1, "with_bg": lambda c: c}[layout]
    box = [
        _smooth_l1(deltas[b, r, slot(classes[b, r]), j] - targets[b, r, j], 1.0)
        for b, r in sampled if classes[b, r] > 0 for j in range(4)
    ]
    np.testing.assert_allclose([cls_loss.numpy(), box_loss.numpy()], [np.mean(ce), sum(box) / len(sampled)], rtol=1e-5)


def test_mask_loss():
    rng = np.random.default_rng(32)
    k = 3
    logits = rng.normal(size=(2, 4, 5, 5, k)).astype(np.float32)
    targets = rng.uniform(size=(2, 4, 5, 5)).astype(np.float32)
    classes = np.array([[1, 0, 3, -1], [2, 2, 0, 0]], np.int32)
    got = losses.mask_loss(logits, targets, classes).numpy()
    terms = [
        _bce(logits[b, r, i, j, classes[b, r] - 1], targets[b, r, i, j])
        for b in range(2) for r in range(4) if classes[b, r] > 0 for i in range(5) for j in range(5)
    ]
    np.testing.assert_allclose(got, np.mean(terms), rtol=1e-5)
    assert losses.mask_loss(logits, targets, np.zeros((2, 4), np.int32)).numpy() == 0.0
