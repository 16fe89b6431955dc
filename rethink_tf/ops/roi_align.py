"""Multilevel RoIAlign (Detectron's ROIAlign: aligned=False, `sampling_ratio` samples per bin and axis).

Written here: keras-cv 0.9.0's `multilevel_crop_and_resize` fails on any map with more than one channel.
For a box (y1, x1, y2, x2) in canvas pixels on a level of stride s, the RoI is (y1/s, x1/s, y2/s, x2/s),
its height/width are clamped to >= 1, each of the output_size^2 bins averages sampling_ratio^2 bilinear
samples at the sub-bin centres, and a sample outside [-1, H] x [-1, W] contributes 0 (Caffe2 semantics).
Two implementations with the same values (tested against one numpy reference):
- "crop_and_resize": the boxes partitioned by level, then per level `tf.image.crop_and_resize` onto
  the sub-bin grid of an edge-replicated map (the 1-pixel pad reproduces Caffe2's clamping in
  [-1, 0) and (H-1, H]), then a sampling_ratio average pool. Several times faster than "gather" for
  forward plus backward on CPU (measured here), but its shapes depend on the data and
  CropAndResize has no XLA kernel.
- "gather": all levels flattened into one [B, sum(H_l W_l), C] tensor so one gather serves every box
  whatever its level; compiles under XLA.
The default, "auto", takes "gather" when traced for XLA (jit_compile=True) and "crop_and_resize" otherwise.
"""
import tensorflow as tf

from rethink_tf.ops.tracing import in_xla_context

ROI_ALIGN_METHODS = ("crop_and_resize", "gather")


LEVEL_MAPPINGS = ("detectron", "torchvision")


def assign_levels(boxes, min_level=2, max_level=5, canonical_size=224.0, canonical_level=4,
                  level_mapping="detectron"):
    """FPN level of each box [..., 4]: floor(canonical_level + log2(sqrt(area) / canonical_size)),
    clamped to [min_level, max_level] -> int32 [...]. level_mapping "detectron": eps 1e-8 inside the
    log (detectron2); "torchvision": eps 1e-6 added after the log (MultiScaleRoIAlign's LevelMapper), so
    a box a hair below a level boundary goes up a level."""
    if level_mapping not in LEVEL_MAPPINGS:
        raise ValueError(f"assign_levels: level_mapping {level_mapping!r} is not one of {LEVEL_MAPPINGS}")
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    height = tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    width = tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    scale = tf.sqrt(height * width)
    if level_mapping == "torchvision":
        level = tf.floor(canonical_level + tf.math.log(scale / canonical_size) / tf.math.log(2.0) + 1e-6)
        level = tf.where(scale > 0, level, float(min_level))  # log(0) = -inf: the finest level
    else:
        level = tf.floor(canonical_level + tf.math.log(scale / canonical_size + 1e-8) / tf.math.log(2.0))
    return tf.cast(tf.clip_by_value(level, min_level, max_level), tf.int32)


def _sample_coordinates(start, end, output_size, sampling_ratio):
    """Sample positions [..., output_size * sampling_ratio] along one axis of RoIs [start, end)."""
    size = tf.maximum(end - start, 1.0)
    bin_size = size / output_size
    steps = (tf.range(output_size * sampling_ratio, dtype=tf.float32) + 0.5) / sampling_ratio
    return start[..., tf.newaxis] + steps * bin_size[..., tf.newaxis]


def _bilinear_axis(coords, limit):
    """Caffe2 bilinear bookkeeping along one axis: (low index, high index, high weight, in-range mask)."""
    limit = tf.cast(limit, tf.float32)[..., tf.newaxis]
    inside = (coords >= -1.0) & (coords <= limit)
    coords = tf.maximum(coords, 0.0)
    low = tf.floor(coords)
    at_edge = low >= limit - 1.0
    low = tf.where(at_edge, limit - 1.0, low)
    high = tf.where(at_edge, limit - 1.0, low + 1.0)
    coords = tf.where(at_edge, limit - 1.0, coords)
    return tf.cast(low, tf.int32), tf.cast(high, tf.int32), coords - low, inside


def multilevel_roi_align(
    features,
    boxes,
    output_size,
    sampling_ratio=2,
    min_level=2,
    max_level=5,
    canonical_size=224.0,
    canonical_level=4,
    method="auto",
    level_mapping="detectron",
):
    """RoIAlign each box from its FPN level.

    Args:
      features: {level: float [B, H_l, W_l, C]} with stride 2**level; must contain min_level..max_level.
      boxes: float [B, R, 4] yxyx canvas pixels.
      output_size: int, bins per side.
      method: "auto", "gather" (XLA-compilable) or "crop_and_resize" (faster in graph mode).
      level_mapping: "detectron" or "torchvision" (`assign_levels`).
    Returns:
      float [B, R, output_size, output_size, C].
    """
    levels = list(range(min_level, max_level + 1))
    missing = [level for level in levels if level not in features]
    if missing:
        raise ValueError(f"multilevel_roi_align: features lack levels {missing} (have {sorted(features)})")
    if method == "auto":
        method = "gather" if in_xla_context() else "crop_and_resize"
    if method not in ROI_ALIGN_METHODS:
        raise ValueError(f"multilevel_roi_align: method {method!r} is not one of {ROI_ALIGN_METHODS}")
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    if len(levels) == 1:
        box_level = tf.zeros(tf.shape(boxes)[:2], tf.int32)
    else:
        box_level = assign_levels(boxes, min_level, max_level, canonical_size, canonical_level,
                                  level_mapping) - min_level
    if method == "crop_and_resize":
        return _roi_align_crop_and_resize(features, boxes, box_level, levels, output_size, sampling_ratio)
    batch_size = tf.shape(boxes)[0]
    num_boxes = boxes.shape[1]
    channels = features[min_level].shape[-1]

    flat, offsets, heights, widths = [], [], [], []
    offset = 0
    for level in levels:
        _, height, width, _ = features[level].shape
        flat.append(tf.reshape(features[level], [batch_size, height * width, channels]))
        offsets.append(offset)
        heights.append(height)
        widths.append(width)
        offset += height * width
    flat = tf.concat(flat, axis=1)

    level_offset = tf.gather(tf.constant(offsets, tf.int32), box_level)
    level_height = tf.gather(tf.constant(heights, tf.int32), box_level)
    level_width = tf.gather(tf.constant(widths, tf.int32), box_level)
    scale = 1.0 / tf.pow(2.0, tf.cast(box_level + min_level, tf.float32))

    scaled = boxes * scale[..., tf.newaxis]
    ys = _sample_coordinates(scaled[..., 0], scaled[..., 2], output_size, sampling_ratio)  # [B, R, S]
    xs = _sample_coordinates(scaled[..., 1], scaled[..., 3], output_size, sampling_ratio)
    y0, y1, wy, in_y = _bilinear_axis(ys, level_height)
    x0, x1, wx, in_x = _bilinear_axis(xs, level_width)

    def gather(yi, xi):
        index = level_offset[..., None, None] + yi[..., :, None] * level_width[..., None, None] + xi[..., None, :]
        flat_index = tf.reshape(index, [batch_size, -1])
        values = tf.gather(flat, flat_index, batch_dims=1)
        samples = output_size * sampling_ratio
        return tf.reshape(values, [batch_size, num_boxes, samples, samples, channels])

    wy = tf.cast(wy, flat.dtype)[..., :, None, None]
    wx = tf.cast(wx, flat.dtype)[..., None, :, None]
    value = (
        gather(y0, x0) * (1.0 - wy) * (1.0 - wx)
        + gather(y0, x1) * (1.0 - wy) * wx
        + gather(y1, x0) * wy * (1.0 - wx)
        + gather(y1, x1) * wy * wx
    )
    inside = tf.cast(in_y[..., :, None] & in_x[..., None, :], value.dtype)[..., None]
    value = value * inside
    value = tf.reshape(
        value, [batch_size, num_boxes, output_size, sampling_ratio, output_size, sampling_ratio, channels]
    )
    return tf.reduce_mean(value, axis=[3, 5])


def _roi_align_crop_and_resize(features, boxes, box_level, levels, output_size, sampling_ratio):
    """The "crop_and_resize" method of multilevel_roi_align (same arguments, level index per box).

    Each box is cropped on its own level only: the boxes are partitioned by level (dynamic sizes,
    which is why this method is not for XLA) and stitched back in their original order.
    """
    batch_size = tf.shape(boxes)[0]
    num_boxes = boxes.shape[1] if boxes.shape[1] is not None else tf.shape(boxes)[1]
    samples = output_size * sampling_ratio
    flat_boxes = tf.reshape(boxes, [-1, 4])
    flat_level = tf.reshape(box_level, [-1])
    box_index = tf.repeat(tf.range(batch_size), num_boxes)
    positions = tf.dynamic_partition(tf.range(tf.shape(flat_boxes)[0]), flat_level, len(levels))
    crops = []
    for index, level in enumerate(levels):
        feature = features[level]
        height, width = feature.shape[1], feature.shape[2]
        # Edge-replicating pad: map coordinates shift by +1, and the valid range [-1, H] of Caffe2
        # becomes crop_and_resize's [0, H + 1]; outside it both give 0.
        padded = tf.pad(feature, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        scaled = tf.gather(flat_boxes, positions[index]) / (2.0 ** level)
        ys = _sample_coordinates(scaled[:, 0], scaled[:, 2], output_size, sampling_ratio)
        xs = _sample_coordinates(scaled[:, 1], scaled[:, 3], output_size, sampling_ratio)
        # crop_and_resize samples `samples` points evenly from the box's first to last corner.
        grid_box = tf.stack([(ys[:, 0] + 1.0) / (height + 1.0), (xs[:, 0] + 1.0) / (width + 1.0),
                             (ys[:, -1] + 1.0) / (height + 1.0), (xs[:, -1] + 1.0) / (width + 1.0)], axis=1)
        crops.append(tf.image.crop_and_resize(padded, grid_box, tf.gather(box_index, positions[index]),
                                              [samples, samples]))
    pooled = tf.dynamic_stitch(positions, crops)
    pooled = tf.nn.avg_pool2d(pooled, sampling_ratio, sampling_ratio, "VALID")
    channels = features[levels[0]].shape[-1]
    return tf.reshape(pooled, [batch_size, num_boxes, output_size, output_size, channels])
