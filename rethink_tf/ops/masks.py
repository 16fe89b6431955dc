"""Mask targets for the mask head, and pasting predicted masks into the image.

Both are bilinear resampling between a box-aligned grid and another grid, written as separable
"triangle kernel" weight matrices: sampling an S-pixel axis at continuous position u (pixel centres at
integers) uses weights max(0, 1 - |u - j|) for j = 0..S-1, i.e. bilinear interpolation with zeros outside
the grid (torch grid_sample(align_corners=False, padding_mode="zeros"), which detectron2 uses to paste).
"""
import numpy as np
import tensorflow as tf


def _triangle_weights_tf(positions, size):
    """[..., P] continuous pixel positions -> [..., P, size] bilinear weights (zeros outside)."""
    grid = tf.range(size, dtype=tf.float32)
    return tf.maximum(0.0, 1.0 - tf.abs(positions[..., None] - grid))


def _box_sample_positions(start, end, box_start, box_end, grid_size, output_size):
    """Positions, in the pixel frame of a grid_size grid spanning [box_start, box_end], of the
    output_size cell centres of [start, end]."""
    step = (end - start) / output_size
    centres = start[..., None] + (tf.range(output_size, dtype=tf.float32) + 0.5) * step[..., None]
    box_extent = tf.maximum(box_end - box_start, 1e-6)[..., None]
    return (centres - box_start[..., None]) / box_extent * grid_size - 0.5


def mask_targets(gt_masks, gt_boxes, rois, matched_gt_index, output_size=28, threshold=None):
    """Crops each RoI out of its matched gt mask.

    Args:
      gt_masks: [B, M, S, S] in {0, 1}: each instance's mask in the frame of its own gt box (the batch's
        `gt_masks`).
      gt_boxes: float [B, M, 4] yxyx canvas pixels. rois: float [B, R, 4]. matched_gt_index: int [B, R].
    Returns:
      float32 [B, R, output_size, output_size] in [0, 1]: the mask sampled bilinearly at the centres of an
      output_size^2 grid over each RoI (0 outside the gt box), not thresholded unless `threshold` is
      given (then 1.0 where the value >= threshold, else 0.0: Detectron's binary targets).
    """
    gt_masks = tf.cast(gt_masks, tf.float32)
    mask_size = gt_masks.shape[-1]
    if gt_masks.shape.rank != 4 or gt_masks.shape[-2] != mask_size:
        raise ValueError(f"mask_targets: gt_masks must be [B, M, S, S], got {gt_masks.shape}")
    rois = tf.stop_gradient(tf.convert_to_tensor(rois, tf.float32))
    masks = tf.gather(gt_masks, matched_gt_index, batch_dims=1)  # [B, R, S, S]
    boxes = tf.gather(tf.convert_to_tensor(gt_boxes, tf.float32), matched_gt_index, batch_dims=1)
    ys = _box_sample_positions(rois[..., 0], rois[..., 2], boxes[..., 0], boxes[..., 2], mask_size, output_size)
    xs = _box_sample_positions(rois[..., 1], rois[..., 3], boxes[..., 1], boxes[..., 3], mask_size, output_size)
    weight_y = _triangle_weights_tf(ys, mask_size)  # [B, R, out, S]
    weight_x = _triangle_weights_tf(xs, mask_size)
    targets = tf.einsum("brik,brkl,brjl->brij", weight_y, masks, weight_x)
    if threshold is not None:
        targets = tf.cast(targets >= threshold, tf.float32)
    return targets


def _paste_positions(start, end, grid_size, image_size):
    """Positions in a grid_size mask spanning [start, end] of the image pixel centres 0..image_size-1."""
    extent = max(end - start, 1e-6)
    return (np.arange(image_size) + 0.5 - start) / extent * grid_size - 0.5


def paste_masks(masks, boxes, image_hw, threshold=0.5):
    """Pastes box-frame mask probabilities into full images (numpy, for evaluation).

    Args:
      masks: float [D, m, m] probabilities in each box's frame. boxes: float [D, 4] yxyx image pixels.
      image_hw: (h, w) of the output image. threshold: pixels with probability >= threshold are set.
    Returns:
      uint8 [D, h, w] binary masks.
    """
    masks = np.asarray(masks, np.float32)
    boxes = np.asarray(boxes, np.float32)
    height, width = int(image_hw[0]), int(image_hw[1])
    if masks.ndim != 3 or boxes.shape != (masks.shape[0], 4):
        raise ValueError(f"paste_masks: masks [D, m, m] and boxes [D, 4] expected, got {masks.shape}, {boxes.shape}")
    out = np.zeros((masks.shape[0], height, width), np.uint8)
    grid = np.arange(masks.shape[1], dtype=np.float32)
    for i, (mask, box) in enumerate(zip(masks, boxes)):
        ys = _paste_positions(box[0], box[2], mask.shape[0], height)
        xs = _paste_positions(box[1], box[3], mask.shape[1], width)
        weight_y = np.maximum(0.0, 1.0 - np.abs(ys[:, None] - grid[None, :]))
        weight_x = np.maximum(0.0, 1.0 - np.abs(xs[:, None] - grid[None, :]))
        out[i] = (weight_y @ mask @ weight_x.T) >= threshold
    return out


def paste_masks_tf(masks, boxes, image_hw, threshold=0.5):
    """TF version of `paste_masks` for serving: masks [D, m, m], boxes [D, 4], image_hw (h, w) ints or
    scalar int tensors -> uint8 [D, h, w]."""
    masks = tf.convert_to_tensor(masks, tf.float32)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    mask_size = masks.shape[-1]
    height, width = image_hw

    def positions(start, end, size):
        pixels = tf.cast(tf.range(size), tf.float32)[None, :] + 0.5
        extent = tf.maximum(end - start, 1e-6)[:, None]
        return (pixels - start[:, None]) / extent * mask_size - 0.5

    weight_y = _triangle_weights_tf(positions(boxes[:, 0], boxes[:, 2], height), mask_size)  # [D, h, m]
    weight_x = _triangle_weights_tf(positions(boxes[:, 1], boxes[:, 3], width), mask_size)  # [D, w, m]
    probs = tf.einsum("dik,dkl,djl->dij", weight_y, masks, weight_x)
    return tf.cast(probs >= threshold, tf.uint8)


def _resize_bilinear_half_pixel(image, out_h, out_w):
    """float32 [h, w] -> [out_h, out_w]: bilinear with half-pixel centres, source positions clamped at 0
    and the last pixel (torch F.interpolate(mode="bilinear", align_corners=False), no antialias)."""
    def axis(in_size, out_size):
        scale = np.float32(in_size) / np.float32(out_size)
        src = np.maximum((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5),
                         np.float32(0))
        low = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
        high = np.minimum(low + 1, in_size - 1)
        frac = (src - low).astype(np.float32)
        return low, high, frac

    y0, y1, fy = axis(image.shape[0], out_h)
    x0, x1, fx = axis(image.shape[1], out_w)
    top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    return (top * (1 - fy)[:, None] + bottom * fy[:, None]).astype(np.float32)


def paste_masks_torchvision(masks, boxes, image_hw, threshold=None, padding=1):
    """Pastes box-frame masks the way torchvision's paste_masks_in_image does (numpy).

    Each m x m mask gets `padding` zero pixels on every side, its box is grown about its centre by
    (m + 2 padding) / m and truncated to integers (x1, y1, x2, y2); the padded mask is resized
    bilinearly (half-pixel centres) to (y2 - y1 + 1, x2 - x1 + 1) pixels and written at rows y1..y2,
    columns x1..x2 (inclusive), cut to the image. Detectron / detectron2 instead sample each image
    pixel centre in the box's continuous frame (`paste_masks`).

    Args:
      masks: float [D, m, m] probabilities. boxes: float [D, 4] yxyx image pixels.
      image_hw: (h, w). threshold: None -> float32 [D, h, w] probabilities (torchvision's output);
        else uint8 [D, h, w] of probability >= threshold.
    """
    masks = np.asarray(masks, np.float32)
    boxes = np.asarray(boxes, np.float32)
    height, width = int(image_hw[0]), int(image_hw[1])
    if masks.ndim != 3 or boxes.shape != (masks.shape[0], 4):
        raise ValueError(f"paste_masks_torchvision: masks [D, m, m] and boxes [D, 4] expected, got "
                         f"{masks.shape}, {boxes.shape}")
    size = masks.shape[-1]
    scale = np.float32(float(size + 2 * padding) / size)
    half = (boxes[:, 2:] - boxes[:, :2]) * np.float32(0.5) * scale
    centre = (boxes[:, 2:] + boxes[:, :2]) * np.float32(0.5)
    grown = np.trunc(np.concatenate([centre - half, centre + half], axis=1)).astype(np.int64)
    out = np.zeros((masks.shape[0], height, width), np.float32)
    for i, (mask, (y1, x1, y2, x2)) in enumerate(zip(masks, grown)):
        padded = np.pad(mask, padding)
        resized = _resize_bilinear_half_pixel(padded, max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1))
        top, bottom = max(y1, 0), min(y2 + 1, height)
        left, right = max(x1, 0), min(x2 + 1, width)
        if bottom > top and right > left:
            out[i, top:bottom, left:right] = resized[top - y1:bottom - y1, left - x1:right - x1]
    if threshold is None:
        return out
    return (out >= threshold).astype(np.uint8)


def paste_masks_torchvision_tf(masks, boxes, image_hw, threshold=0.5, padding=1):
    """TF version of `paste_masks_torchvision` for serving: masks [D, m, m], boxes [D, 4] yxyx,
    image_hw (h, w) ints or scalar int tensors -> uint8 [D, h, w] (probability >= threshold), or
    float32 probabilities when threshold is None. Each image row / column takes its value from the
    resized padded mask through a 2-tap weight matrix, so no per-box resize is needed."""
    masks = tf.convert_to_tensor(masks, tf.float32)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    size = masks.shape[-1]
    grid = size + 2 * padding
    padded = tf.pad(masks, [[0, 0], [padding, padding], [padding, padding]])
    scale = float(grid) / size
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    centre = (boxes[:, 2:] + boxes[:, :2]) * 0.5
    low_corner = tf.cast(centre - half, tf.int32)  # truncation toward zero, as torch's .to(int64)
    high_corner = tf.cast(centre + half, tf.int32)
    height, width = image_hw

    def weights(start, end, limit):
        extent = tf.maximum(end - start + 1, 1)  # [D]
        pixels = tf.range(limit)[None, :]  # [1, L]
        local = pixels - start[:, None]  # [D, L]
        inside = (local >= 0) & (local < extent[:, None])
        src = (tf.cast(local, tf.float32) + 0.5) * (float(grid) / tf.cast(extent, tf.float32))[:, None] - 0.5
        src = tf.maximum(src, 0.0)
        low = tf.minimum(tf.floor(src), grid - 1.0)
        frac = src - low
        high = tf.minimum(low + 1.0, grid - 1.0)
        w = (tf.one_hot(tf.cast(low, tf.int32), grid) * (1.0 - frac)[..., None]
             + tf.one_hot(tf.cast(high, tf.int32), grid) * frac[..., None])
        return w * tf.cast(inside, tf.float32)[..., None]  # [D, L, grid]

    weight_y = weights(low_corner[:, 0], high_corner[:, 0], height)
    weight_x = weights(low_corner[:, 1], high_corner[:, 1], width)
    probs = tf.einsum("dik,dkl,djl->dij", weight_y, padded, weight_x)
    if threshold is None:
        return probs
    return tf.cast(probs >= threshold, tf.uint8)


def paste_function(convention, backend="numpy"):
    """The paste of a post-processor's `mask_paste` convention ("detectron" / "torchvision"), numpy or TF."""
    table = {("detectron", "numpy"): paste_masks, ("detectron", "tf"): paste_masks_tf,
             ("torchvision", "numpy"): paste_masks_torchvision, ("torchvision", "tf"): paste_masks_torchvision_tf}
    if (convention, backend) not in table:
        raise ValueError(f"paste_function: unknown mask paste {convention!r} / backend {backend!r}")
    return table[(convention, backend)]
