"""Balanced random sampling of positives and negatives with static output shapes.

keras-cv's `sampling.balanced_sample` exceeds the positive fraction when negatives are scarce; this one
follows detectron2's `subsample_labels`: at most floor(num_samples * positive_fraction) positives, the
rest negatives, and unused slots when both run out.

Randomness: `seed=None` draws from TF's global (stateful) RNG; a python int or an int32 [2] tensor makes
the draw a stateless function of (seed, labels), so a training step keyed by (seed, global step,
replica) draws the same sample after a resume as in the uninterrupted run.
"""
import numbers

import tensorflow as tf


def as_stateless_seed(seed):
    """None -> None; a python int s -> int32 [2] (s, 0); an int [2] tensor -> int32 [2]."""
    if seed is None:
        return None
    if isinstance(seed, numbers.Integral):
        return tf.constant([seed, 0], tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank != 1 or seed.shape[0] != 2 or not seed.dtype.is_integer:
        raise ValueError(f"sampling seed must be None, a python int or an integer [2] tensor, got {seed!r}")
    return tf.cast(seed, tf.int32)


def split_seed(seed, num):
    """`num` int32 [2] seeds derived from one (a list of tensors); same values in eager, graph and XLA."""
    seeds = tf.random.stateless_uniform([num, 2], seed=as_stateless_seed(seed), minval=None, maxval=None,
                                        dtype=tf.int32, alg="philox")
    return tf.unstack(seeds)


def _random_keys(shape, seed):
    """Random int32 keys in [0, 2**31 - 1). Stateless draws are integers from Philox: XLA converts
    random bits to floats differently from the TF kernels, integers are the same everywhere."""
    seed = as_stateless_seed(seed)
    if seed is None:
        return tf.random.uniform(shape, minval=0, maxval=2**31 - 1, dtype=tf.int32)
    bits = tf.random.stateless_uniform(shape, seed=seed, minval=None, maxval=None, dtype=tf.int32, alg="philox")
    return tf.bitwise.bitwise_and(bits, 2**31 - 1)


def _gather_slots(values, slot_index):
    return tf.gather(values, slot_index, batch_dims=1)


def sample_balanced(labels, num_samples, positive_fraction, seed=None):
    """Samples `num_samples` entries per row of `labels` [B, N] (1 positive, 0 negative, -1 ignore).

    Returns:
      indices int32 [B, num_samples]: positives first, then negatives, then unused slots (index 0).
      sampled_labels int32 [B, num_samples]: 1, 0, or -1 for an unused slot.
    `seed`: None draws from the global RNG; a python int or an int32 [2] tensor (stateless RNG seed)
    makes the draw a deterministic function of the seed and the labels.
    """
    labels = tf.convert_to_tensor(labels, tf.int32)
    if labels.shape.rank != 2 or labels.shape[1] is None:
        raise ValueError(f"sample_balanced: labels must be [B, N] with static N, got {labels.shape}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"sample_balanced: positive_fraction must be in [0, 1], got {positive_fraction}")
    num_rows = labels.shape[1]
    if num_rows < num_samples:  # top_k needs k <= N: pad with ignored entries.
        labels = tf.pad(labels, [[0, 0], [0, num_samples - num_rows]], constant_values=-1)
    max_positives = int(num_samples * positive_fraction)
    keys = _random_keys(tf.shape(labels), seed)

    # Random order among positives (resp. negatives) via top-k of random keys; non-members get key -1.
    pos_keys, pos_index = tf.math.top_k(tf.where(labels == 1, keys, -1), k=max(max_positives, 1))
    neg_keys, neg_index = tf.math.top_k(tf.where(labels == 0, keys, -1), k=num_samples)
    num_pos = tf.reduce_sum(tf.cast(pos_keys[:, :max_positives] >= 0, tf.int32), axis=1, keepdims=True)
    num_neg = tf.reduce_sum(tf.cast(neg_keys >= 0, tf.int32), axis=1, keepdims=True)
    num_neg = tf.minimum(num_neg, num_samples - num_pos)

    slots = tf.range(num_samples, dtype=tf.int32)[tf.newaxis, :]
    is_pos = slots < num_pos
    is_neg = (~is_pos) & (slots < num_pos + num_neg)
    pos_slot = tf.minimum(slots, tf.shape(pos_index)[1] - 1)
    neg_slot = tf.clip_by_value(slots - num_pos, 0, num_samples - 1)
    indices = tf.where(
        is_pos,
        _gather_slots(pos_index, tf.broadcast_to(pos_slot, tf.shape(is_pos))),
        tf.where(is_neg, _gather_slots(neg_index, neg_slot), 0),
    )
    sampled_labels = tf.where(is_pos, 1, tf.where(is_neg, 0, -1))
    return tf.cast(indices, tf.int32), tf.cast(sampled_labels, tf.int32)
