"""Multilevel anchors for the RPN, built with keras-cv's AnchorGenerator at a static image size.

keras-cv 0.9.0's AnchorGenerator only works with a static (python) image shape and takes aspect ratios as
width / height; this module speaks detectron2's height / width and converts. Anchor centres are at
((i + 0.5) * stride, (j + 0.5) * stride), i.e. the centre of each feature-map cell (Model Garden/keras-cv
convention; detectron2's default offset is 0.0 and Detectron1's base anchor centre is (stride - 1) / 2).
Anchor h = size * sqrt(ratio), w = size / sqrt(ratio) (no rounding, as detectron2).
"""
import keras_cv
import tensorflow as tf


def multilevel_anchors(
    image_size,
    min_level=2,
    max_level=6,
    sizes=(32, 64, 128, 256, 512),
    aspect_ratios=(0.5, 1.0, 2.0),
):
    """Anchors for levels min_level..max_level of an image (canvas) of `image_size` = (H, W) python ints.

    Returns {level: float32 [H_l * W_l * A, 4]} yxyx pixels, with H_l = ceil(H / 2**level) and
    A = len(aspect_ratios), ordered (y, x, anchor) so a head output [B, H_l, W_l, A * k] reshaped to
    [B, H_l * W_l * A, k] lines up row for row. `sizes` has one entry per level.
    """
    try:
        height, width = (int(v) for v in image_size)
    except TypeError as err:
        raise ValueError(f"multilevel_anchors: image_size must be a static (H, W) pair, got {image_size!r}") from err
    levels = list(range(min_level, max_level + 1))
    if len(sizes) != len(levels):
        raise ValueError(
            f"multilevel_anchors: sizes has {len(sizes)} entries for levels {min_level}..{max_level} "
            f"({len(levels)} levels)"
        )
    if any(ratio <= 0 for ratio in aspect_ratios):
        raise ValueError(f"multilevel_anchors: aspect_ratios must be positive, got {aspect_ratios}")
    generator = keras_cv.layers.AnchorGenerator(
        bounding_box_format="yxyx",
        sizes={level: float(size) for level, size in zip(levels, sizes)},
        scales=[1.0],
        # keras-cv's ratio is w / h: ours (h / w) inverted gives the same shapes in the same order.
        aspect_ratios=[1.0 / float(ratio) for ratio in aspect_ratios],
        strides={level: 2**level for level in levels},
        clip_boxes=False,
    )
    anchors = generator(image_shape=(height, width, 3))
    return {level: tf.cast(anchors[level], tf.float32) for level in levels}


def num_anchors_per_level(image_size, min_level=2, max_level=6, num_aspect_ratios=3):
    """{level: H_l * W_l * A} for an image of (H, W) pixels, without building the anchors."""
    height, width = image_size
    return {
        level: -(-height // 2**level) * -(-width // 2**level) * num_aspect_ratios
        for level in range(min_level, max_level + 1)
    }
