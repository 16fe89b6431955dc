"""match_boxes against detectron2's Matcher semantics; sample_balanced's guarantees."""
import numpy as np
import tensorflow as tf

from rethink_tf.ops import box_ops, matching, sampling

from . import reference as ref


def test_match_boxes_matches_reference():
    rng = np.random.default_rng(2)
    preds = np.stack([ref.random_boxes(rng, 40), ref.random_boxes(rng, 40)])
    gts = np.stack([ref.random_boxes(rng, 6), ref.random_boxes(rng, 6)])
    valid = np.array([[1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0]], bool)
    iou = box_ops.pairwise_iou(preds, gts).numpy()
    for high, low, low_quality in [(0.7, 0.3, True), (0.5, 0.5, False), (0.4, 0.1, False)]:
        idx, lab = matching.match_boxes(iou, valid, high, low, low_quality)
        for b in range(2):
            want_idx, want_lab = ref.match(iou[b], valid[b], high, low, low_quality)
            np.testing.assert_array_equal(lab.numpy()[b], want_lab)
            if valid[b].any():
                np.testing.assert_array_equal(idx.numpy()[b], want_idx)
    # An image without valid gt: everything negative.
    assert np.all(lab.numpy()[1] == 0)


def test_low_quality_matches_make_each_gt_best_positive():
    iou = np.array([[[0.2, 0.0], [0.1, 0.05], [0.2, 0.0]]], np.float32)
    _, lab = matching.match_boxes(iou, np.ones((1, 2), bool), 0.7, 0.3, True)
    np.testing.assert_array_equal(lab.numpy(), [[1, 1, 1]])
    _, lab = matching.match_boxes(iou, np.array([[True, False]]), 0.7, 0.3, True)
    np.testing.assert_array_equal(lab.numpy(), [[1, 0, 1]])


def _check_sample(labels, idx, sl, num_samples, fraction):
    for b in range(labels.shape[0]):
        used = sl[b] >= 0
        assert len(set(idx[b][used])) == used.sum(), "an entry was sampled twice"
        np.testing.assert_array_equal(labels[b][idx[b][used]], sl[b][used])
        n_pos, n_neg = (labels[b] == 1).sum(), (labels[b] == 0).sum()
        want_pos = min(n_pos, int(num_samples * fraction))
        want_neg = min(n_neg, num_samples - want_pos)
        assert (sl[b] == 1).sum() == want_pos
        assert (sl[b] == 0).sum() == want_neg
        # positives first, then negatives, then unused slots
        np.testing.assert_array_equal(sl[b], [1] * want_pos + [0] * want_neg + [-1] * (num_samples - want_pos - want_neg))


def test_sample_balanced_respects_fraction_and_fills_with_negatives():
    rng = np.random.default_rng(3)
    labels = rng.choice([1, 0, -1], size=(3, 300), p=[0.3, 0.4, 0.3]).astype(np.int32)
    labels[1] = np.where(rng.uniform(size=300) < 0.9, 1, -1)  # negatives scarce: positives capped anyway
    labels[2] = np.where(rng.uniform(size=300) < 0.02, 1, 0)  # positives scarce: negatives fill
    for num_samples, fraction in [(64, 0.25), (256, 0.5)]:
        idx, sl = sampling.sample_balanced(labels, num_samples, fraction, seed=7)
        _check_sample(labels, idx.numpy(), sl.numpy(), num_samples, fraction)
    # Fewer rows than samples: padded with unused slots.
    idx, sl = sampling.sample_balanced(labels[:, :20], 64, 0.5)
    _check_sample(labels[:, :20], idx.numpy(), sl.numpy(), 64, 0.5)


def test_sample_balanced_is_random_but_seedable():
    labels = np.zeros((1, 1000), np.int32)
    labels[0, :500] = 1
    a = sampling.sample_balanced(labels, 32, 0.5, seed=1)[0].numpy()
    b = sampling.sample_balanced(labels, 32, 0.5, seed=1)[0].numpy()
    c = sampling.sample_balanced(labels, 32, 0.5, seed=2)[0].numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.sort(a), np.sort(c))
    unseeded = [set(sampling.sample_balanced(labels, 32, 0.5)[0].numpy()[0]) for _ in range(2)]
    assert unseeded[0] != unseeded[1]


def test_sample_balanced_draws_fresh_samples_each_call_under_xla():
    labels = tf.constant(np.ones((1, 1000), np.int32))
    run = tf.function(lambda l: sampling.sample_balanced(l, 8, 0.5)[0], jit_compile=True)
    first, second = run(labels).numpy(), run(labels).numpy()
    assert set(first[0, :4]) != set(second[0, :4])


def test_sample_balanced_takes_a_stateless_tensor_seed_also_under_xla():
    labels = tf.constant(np.ones((2, 1000), np.int32))
    run = tf.function(lambda l, seed: sampling.sample_balanced(l, 8, 0.5, seed=seed)[0], jit_compile=True)
    a = run(labels, tf.constant([5, 9], tf.int32)).numpy()
    b = run(labels, tf.constant([5, 9], tf.int32)).numpy()
    c = run(labels, tf.constant([6, 9], tf.int32)).numpy()
    np.testing.assert_array_equal(a, b)
    assert set(a[0, :4]) != set(c[0, :4]) and set(a[0, :4]) != set(a[1, :4])
    np.testing.assert_array_equal(a, sampling.sample_balanced(labels, 8, 0.5, seed=np.array([5, 9]))[0].numpy())
    # A python int s is the seed (s, 0).
    np.testing.assert_array_equal(sampling.sample_balanced(labels, 8, 0.5, seed=5)[0].numpy(),
                                  sampling.sample_balanced(labels, 8, 0.5, seed=tf.constant([5, 0]))[0].numpy())
