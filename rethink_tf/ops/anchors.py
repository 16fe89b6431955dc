"""Multilevel anchors for the RPN, built with keras-cv's AnchorGenerator at a static image size.

keras-cv 0.9.0's AnchorGenerator only works with a static (python) image shape and takes aspect ratios as
width / height; this module speaks detectron2's height / width and converts. Anchor centres are at
((i + 0.5) * stride, (j + 0.5) * stride), i.e. the centre of each feature-map cell (Model Garden/keras-cv
convention; detectron2's default offset is 0.0 and Detectron1's base anchor centre is (stride - 1) / 2).
Anchor h = size * sqrt(ratio), w = size / sqrt(ratio) (no rounding, as detectron2).

torchvision's AnchorGenerator differs in two ways, each a switch here: its anchors are centred at
(i * stride, j * stride) (`offset=0.0`) and its zero-centred base anchors (-w/2, -h/2, w/2, h/2) are
rounded to integers in float32, half to even (`round_base=True`), and its stride on each axis is the
canvas size // the level's grid size (`stride_from_grid=True`: not 2**level where the canvas is not a
multiple of it, e.g. P6 of an 800-pixel side: 800 // 13 = 61). With the defaults (0.5, False, False)
the anchors come from keras-cv exactly as before.
"""
import keras_cv
import numpy as np
import tensorflow as tf


def multilevel_anchors(
    image_size,
    min_level=2,
    max_level=6,
    sizes=(32, 64, 128, 256, 512),
    aspect_ratios=(0.5, 1.0, 2.0),
    offset=0.5,
    round_base=False,
    stride_from_grid=False,
):
    """Anchors for levels min_level..max_level of an image (canvas) of `image_size` = (H, W) python ints.

    Returns {level: float32 [H_l * W_l * A, 4]} yxyx pixels, with H_l = ceil(H / 2**level) and
    A = len(aspect_ratios), ordered (y, x, anchor) so a head output [B, H_l, W_l, A * k] reshaped to
    [B, H_l * W_l * A, k] lines up row for row. `sizes` has one entry per level.
    offset: anchor centres at ((i + offset) * stride, (j + offset) * stride) pixels (0.5; torchvision 0.0).
    round_base: round the zero-centred base anchors to whole pixels (torchvision) before shifting them.
    stride_from_grid: strides (H // H_l, W // W_l) instead of 2**level (torchvision).
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
    if offset != 0.5 or round_base or stride_from_grid:
        return {level: tf.constant(_shifted_base_anchors((height, width), 2**level, size, aspect_ratios,
                                                         offset, round_base, stride_from_grid))
                for level, size in zip(levels, sizes)}
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


def _shifted_base_anchors(image_size, stride, size, aspect_ratios, offset, round_base, stride_from_grid):
    """float32 [H_l * W_l * A, 4] yxyx: base anchors (in float32, as torchvision computes them) shifted
    to every cell, order (y, x, ratio)."""
    h_ratios = np.sqrt(np.asarray(aspect_ratios, np.float32))
    half_h = h_ratios * np.float32(size) / np.float32(2)
    half_w = (np.float32(1) / h_ratios) * np.float32(size) / np.float32(2)
    base = np.stack([-half_h, -half_w, half_h, half_w], axis=1)  # [A, 4] yxyx
    if round_base:
        base = np.round(base)
    grid_h, grid_w = -(-image_size[0] // stride), -(-image_size[1] // stride)
    stride_y, stride_x = (image_size[0] // grid_h, image_size[1] // grid_w) if stride_from_grid else (stride, stride)
    ys = (np.arange(grid_h, dtype=np.float32) + np.float32(offset)) * np.float32(stride_y)
    xs = (np.arange(grid_w, dtype=np.float32) + np.float32(offset)) * np.float32(stride_x)
    shift_y, shift_x = np.meshgrid(ys, xs, indexing="ij")
    shifts = np.stack([shift_y, shift_x, shift_y, shift_x], axis=-1).reshape(-1, 1, 4)
    return (shifts + base[None]).reshape(-1, 4).astype(np.float32)


def num_anchors_per_level(image_size, min_level=2, max_level=6, num_aspect_ratios=3):
    """{level: H_l * W_l * A} for an image of (H, W) pixels, without building the anchors."""
    height, width = image_size
    return {
        level: -(-height // 2**level) * -(-width // 2**level) * num_aspect_ratios
        for level in range(min_level, max_level + 1)
    }
