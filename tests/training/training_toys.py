"""A small real Keras detector and dataset following the model and batch conventions
(rethink_tf/modeling/README.md, rethink_tf.data.input_pipeline).

Used by the trainer tests so they do not depend on the big Mask R-CNN. The model regresses the first
gt box (normalized) and classifies its label; `training=False` returns the detections dict.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

CANVAS = 32
MAX_INSTANCES = 4
NUM_CLASSES = 3


class ToyDetector(keras.Model):
    """conv → norm → relu → conv → norm → relu → pool → (box, class) heads; returns loss terms."""

    def __init__(self, norm: str = "gn", width: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.norm_kind = norm
        self.conv1 = keras.layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name="conv1")
        self.conv2 = keras.layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name="conv2")
        if norm == "gn":
            self.norm1 = keras.layers.GroupNormalization(groups=4, epsilon=1e-5, name="norm1")
            self.norm2 = keras.layers.GroupNormalization(groups=4, epsilon=1e-5, name="norm2")
        elif norm == "syncbn":
            self.norm1 = keras.layers.BatchNormalization(synchronized=True, momentum=0.9, name="norm1")
            self.norm2 = keras.layers.BatchNormalization(synchronized=True, momentum=0.9, name="norm2")
        else:
            raise ValueError(norm)
        self.box_head = keras.layers.Dense(4, name="box_head")
        self.cls_head = keras.layers.Dense(NUM_CLASSES + 1, name="cls_head")

    def features(self, images, training):
        x = keras.ops.relu(self.norm1(self.conv1(images), training=training))
        x = keras.ops.relu(self.norm2(self.conv2(x), training=training))
        return keras.ops.mean(x, axis=(1, 2))

    def call(self, batch, training=False):
        f = self.features(batch["images"], training)
        boxes = keras.ops.sigmoid(self.box_head(f)) * CANVAS
        logits = self.cls_head(f)
        if not training:
            b = keras.ops.shape(boxes)[0]
            scale = batch["image_info"][:, 2:3, :]  # [B,1,2] scale_y, scale_x
            scale = keras.ops.concatenate([scale, scale], axis=-1)
            probs = keras.ops.softmax(logits)[:, 1:]
            lo = keras.ops.minimum(boxes[:, :2], boxes[:, 2:])
            hi = keras.ops.maximum(boxes[:, :2], boxes[:, 2:])
            boxes = keras.ops.concatenate([lo, hi], axis=-1)  # valid yxyx (y0 <= y1, x0 <= x1)
            return {
                "detection_boxes": boxes[:, None, :] / scale,
                "detection_scores": keras.ops.max(probs, axis=-1)[:, None],
                "detection_classes": keras.ops.cast(keras.ops.argmax(probs, axis=-1) + 1, "int32")[:, None],
                "num_detections": keras.ops.ones((b,), "int32"),
            }
        gt_box = batch["gt_boxes"][:, 0, :]
        gt_cls = batch["gt_classes"][:, 0]
        box_loss = keras.ops.mean(keras.ops.abs(boxes - gt_box)) / CANVAS
        cls_loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(gt_cls, logits, from_logits=True))
        losses = {"toy_box": box_loss, "toy_class": cls_loss}
        return losses


def _example(index):
    """One deterministic contract-shaped example from an int64 index."""
    g = tf.random.stateless_uniform([6], seed=tf.stack([index, tf.constant(7, tf.int64)]), dtype=tf.float32)
    y0, x0 = g[0] * CANVAS / 2, g[1] * CANVAS / 2
    y1, x1 = y0 + 4 + g[2] * CANVAS / 2, x0 + 4 + g[3] * CANVAS / 2
    label = 1 + tf.cast(g[4] * NUM_CLASSES, tf.int32) % NUM_CLASSES
    yy = tf.range(CANVAS, dtype=tf.float32)[:, None]
    xx = tf.range(CANVAS, dtype=tf.float32)[None, :]
    inside = tf.cast((yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1), tf.float32)
    color = tf.stack([tf.cast(label, tf.float32) * 40.0, 50.0, 200.0 - tf.cast(label, tf.float32) * 30])
    image = inside[..., None] * color - 100.0
    box = tf.stack([y0, x0, y1, x1])
    pad = MAX_INSTANCES - 1
    return {
        "images": image,
        "image_info": tf.constant([[CANVAS, CANVAS], [CANVAS, CANVAS], [1.0, 1.0], [0.0, 0.0]], tf.float32),
        "image_id": index,
        "gt_boxes": tf.concat([box[None], tf.zeros([pad, 4])], 0),
        "gt_classes": tf.concat([label[None], -tf.ones([pad], tf.int32)], 0),
        "gt_is_crowd": tf.zeros([MAX_INSTANCES], tf.bool),
    }


def toy_dataset(input_context=None, global_batch_size=4, shuffle_seed=3, num_examples=64):
    """Training batches: shuffled (seeded), repeated, sharded by the input context, contract keys."""
    ds = tf.data.Dataset.range(num_examples)
    batch = global_batch_size
    if input_context is not None:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch = input_context.get_per_replica_batch_size(global_batch_size)
    ds = ds.shuffle(16, seed=shuffle_seed, reshuffle_each_iteration=True).repeat()
    return ds.map(_example).batch(batch, drop_remainder=True).prefetch(2)


def poison_from(dataset, first_bad_batch):
    """Makes the images of every batch from `first_bad_batch` on (0-based) NaN."""
    def poison(i, batch):
        batch = dict(batch)
        batch["images"] = tf.where(i >= first_bad_batch, np.float32("nan"), batch["images"])
        return batch
    return dataset.enumerate().map(poison)


def fixed_batch(global_batch_size=4, offset=0):
    """A single deterministic batch (no shuffling), as a dict of tensors."""
    ds = tf.data.Dataset.range(offset, offset + global_batch_size).map(_example).batch(global_batch_size)
    return next(iter(ds))
