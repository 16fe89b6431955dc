"""Share of the sampled RPN negatives that lie entirely in the canvas padding, with and without
Detectron's RPN_STRADDLE_THRESH = 0.

No training: each coco128 image goes through the eval input pipeline (shorter side --short_sides,
longer <= 1333, the canvas the pipeline builds by default), the default model's anchors are labelled
and 256 of them sampled per image exactly as in training (`rethink_tf.ops.rpn_targets`, seed = image
id), once with boundary_threshold=-1 (every anchor of the canvas, the old behaviour) and once with the
model's rpn_straddle_thresh. An anchor "in padding" has no overlap with the scaled image
[0, h] x [0, w]; "crossing" ones reach outside it at all.

    PYTHONPATH=$PWD python benchmarks/rpn_padding_negatives.py [--short_sides=800,640] [--num_images=128]
"""
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import app, flags

from rethink_tf.data.input_pipeline import build_dataset
from rethink_tf.data.sources import CocoSource
from rethink_tf.modeling.factory import build_model
from rethink_tf.ops import rpn_targets

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco128"

flags.DEFINE_string("data_dir", str(DATA), "COCO-format directory with annotations/instances_train2017.json")
flags.DEFINE_list("short_sides", ["800", "640"], "shorter sides to measure")
flags.DEFINE_integer("num_images", 128, "images to use (the first ones of the set)")
FLAGS = flags.FLAGS


def measure(source, model, short_side, num_images):
    ds = build_dataset(source, training=False, global_batch_size=1, eval_short_side=short_side, max_size=1333)
    canvas = None
    counts = {}  # threshold -> [negatives, in padding, crossing the border, positives]
    label = tf.function(lambda a, b, v, i, s, t: rpn_targets.rpn_targets(
        a, b, v, i, model.rpn_batch_size_per_image, model.rpn_positive_fraction, model.rpn_fg_iou,
        model.rpn_bg_iou, boundary_threshold=t, seed=s)[0], reduce_retracing=True)
    padding_share = []
    for batch in ds.take(num_images):
        if int(batch["image_id"][0]) < 0:
            continue
        canvas = tuple(batch["images"].shape[1:3])
        anchors = np.concatenate([np.asarray(a) for a in model.anchors(canvas).values()])
        height, width = batch["image_info"][0, 1].numpy()
        padding_share.append(1.0 - height * width / (canvas[0] * canvas[1]))
        in_padding = (anchors[:, 0] >= height) | (anchors[:, 1] >= width) | (anchors[:, 2] <= 0) | (anchors[:, 3] <= 0)
        crossing = (anchors[:, 0] < 0) | (anchors[:, 1] < 0) | (anchors[:, 2] > height) | (anchors[:, 3] > width)
        valid = (batch["gt_classes"] > 0) & ~batch["gt_is_crowd"]
        seed = tf.constant([int(batch["image_id"][0]), 0], tf.int32)
        for threshold in (-1.0, model.rpn_straddle_thresh):
            labels = label(anchors, batch["gt_boxes"], valid, batch["image_info"], seed, threshold).numpy()[0]
            negative = labels == 0
            row = counts.setdefault(threshold, np.zeros(4, np.int64))
            row += [negative.sum(), (negative & in_padding).sum(), (negative & crossing).sum(), (labels == 1).sum()]
        if len(padding_share) % 16 == 0:
            print(f"  {short_side}: {len(padding_share)} images", flush=True)
    return canvas, len(padding_share), float(np.mean(padding_share)), counts


def main(_):
    root = Path(FLAGS.data_dir)
    source = CocoSource(root / "annotations" / "instances_train2017.json", root / "train2017")
    model = build_model(80)  # only its anchors and RPN sampling values are used
    for short_side in (int(s) for s in FLAGS.short_sides):
        canvas, images, padding, counts = measure(source, model, short_side, FLAGS.num_images)
        print(f"short side {short_side}, canvas {canvas[0]}x{canvas[1]}, {images} images, "
              f"padding {100 * padding:.1f}% of the canvas on average")
        for threshold, (neg, pad, cross, pos) in counts.items():
            print(f"  straddle {threshold:+.0f}: {neg} sampled negatives ({pos} positives), "
                  f"{100 * pad / neg:.1f}% entirely in padding, {100 * cross / neg:.1f}% crossing the image border")


if __name__ == "__main__":
    app.run(main)
