"""Balanced random sampling of positives and negatives with static output shapes.

keras-cv's `sampling.balanced_sample` exceeds the positive fraction when negatives are scarce; this one
follows detectron2's `subsample_labels`: at most floor(num_samples * positive_fraction) positives, the
rest negatives, and unused slots when both run out.
"""
import tensorflow as tf


def _random_keys(shape, seed):
    if seed is None:
        return tf.random.uniform(shape)
    return tf.random.stateless_uniform(shape, seed=tf.constant([seed, 0], tf.int32))


def _gather_slots(values, slot_index):
    return tf.gather(values, slot_index, batch_dims=1)


def sample_balanced(labels, num_samples, positive_fraction, seed=None):
    """Samples `num_samples` entries per row of `labels` [B, N] (1 positive, 0 negative, -1 ignore).

    Returns:
      indices int32 [B, num_samples]: positives first, then negatives, then unused slots (index 0).
      sampled_labels int32 [B, num_samples]: 1, 0, or -1 for an unused slot.
    `seed` (python int) makes the draw deterministic (stateless RNG); None draws from the global RNG.
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
    pos_keys, pos_index = tf.math.top_k(tf.where(labels == 1, keys, -1.0), k=max(max_positives, 1))
    neg_keys, neg_index = tf.math.top_k(tf.where(labels == 0, keys, -1.0), k=num_samples)
    num_pos = tf.reduce_sum(tf.cast(pos_keys[:, :max_positives] >= 0.0, tf.int32), axis=1, keepdims=True)
    num_neg = tf.reduce_sum(tf.cast(neg_keys >= 0.0, tf.int32), axis=1, keepdims=True)
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
