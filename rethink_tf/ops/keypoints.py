"""Keypoint R-CNN ops: heatmap targets, the spatial-softmax loss and heatmap decoding (Detectron's).

Coordinates are continuous pixels (pixel column i covers [i, i + 1)), boxes yxyx, keypoints (x, y, v)
with v > 0 labeled. Discrete <-> continuous as Detectron (Heckbert 1990): d = floor(c), c = d + 0.5.

- `heatmap_targets`: Detectron's keypoints_to_heatmap_labels for static [B, R] RoIs: each labeled
  keypoint's cell in an S x S grid over its RoI, as the index y * S + x, with weight 1 when it lies in
  the RoI (a point exactly on the right / bottom border goes to the last cell), else 0.
- `keypoint_loss`: softmax cross-entropy over the S^2 cells per keypoint, weighted by those weights and
  divided by their sum (Detectron's KRCNN.NORMALIZE_BY_VISIBLE_KEYPOINTS = True) or by a fixed count.
- `heatmaps_to_keypoints`: Detectron's heatmaps_to_keypoints: the heatmap resized bicubically (OpenCV
  INTER_CUBIC: a = -0.75, replicated border) to the box's size in pixels (ceil(w) x ceil(h)), argmax,
  the cell centre mapped back into the box; the score is the resized logit there. Static shapes: the
  resized map is evaluated only in a window of `window` x `window` pixels around the 56 x 56 argmax
  (covering +-1 heatmap cell for boxes up to about 14 * window pixels per side; all pixels for boxes
  up to `window` pixels), so the result equals Detectron's whenever the resized map's maximum lies in
  that window (it does unless two separate peaks have nearly equal logits).
"""
import tensorflow as tf

CUBIC_A = -0.75  # OpenCV's / torch's bicubic coefficient
DEFAULT_WINDOW = 32


def _xyxy(boxes):
    y1, x1, y2, x2 = tf.unstack(tf.cast(boxes, tf.float32), axis=-1)
    return x1, y1, x2, y2


def visible_in_box(keypoints, boxes):
    """bool [..., K]: labeled (v > 0) and inside the box, borders included (Detectron's _within_box).

    keypoints float [..., K, 3] (x, y, v); boxes float [..., 4] yxyx (same pixels)."""
    x1, y1, x2, y2 = (c[..., None] for c in _xyxy(boxes))
    x, y, v = tf.unstack(tf.cast(keypoints, tf.float32), axis=-1)
    inside = (x >= x1) & (x <= x2) & (y >= y1) & (y <= y2)
    return inside & (v > 0)


def heatmap_targets(keypoints, rois, heatmap_size):
    """Detectron's keypoints_to_heatmap_labels.

    Args:
      keypoints: float [B, R, K, 3] (x, y, v) of each RoI's matched gt instance, canvas pixels.
      rois: float [B, R, 4] yxyx canvas pixels.
      heatmap_size: S (56).
    Returns:
      (labels int32 [B, R, K] in [0, S^2): y * S + x, 0 where the weight is 0;
       weights float32 [B, R, K]: 1 for a labeled keypoint inside the RoI, else 0).
    """
    size = float(heatmap_size)
    x1, y1, x2, y2 = (c[..., None] for c in _xyxy(rois))
    x, y, v = tf.unstack(tf.cast(keypoints, tf.float32), axis=-1)

    def cell(c, lo, hi):
        # floor((c - lo) * S / (hi - lo)); a point on the far border goes to the last cell.
        extent = hi - lo
        scaled = tf.floor((c - lo) * tf.math.divide_no_nan(tf.constant(size), extent))
        scaled = tf.where(c == hi, size - 1.0, scaled)
        return scaled, extent > 0

    gx, ok_x = cell(x, x1, x2)
    gy, ok_y = cell(y, y1, y2)
    valid = (gx >= 0) & (gy >= 0) & (gx < size) & (gy < size) & (v > 0) & ok_x & ok_y
    labels = tf.where(valid, tf.cast(gy * size + gx, tf.int32), 0)
    return labels, tf.cast(valid, tf.float32)


def keypoint_loss(logits, labels, weights, normalizer=None):
    """Softmax cross-entropy over each keypoint's heatmap cells.

    Args:
      logits: float [B, R, S, S, K] (the keypoint head's output, channels last).
      labels: int [B, R, K] in [0, S^2); weights: float [B, R, K] (0 for unlabeled / outside / padding).
      normalizer: None: divide by the sum of weights (the number of visible keypoints; Detectron's
        default), or a number (Detectron's NORMALIZE_BY_VISIBLE_KEYPOINTS = False:
        images * RoIs per image * fg fraction * K).
    Returns:
      float32 scalar (0 when no keypoint is visible).
    """
    logits = tf.cast(logits, tf.float32)
    b, r, s, k = tf.shape(logits)[0], tf.shape(logits)[1], logits.shape[2], logits.shape[4]
    flat = tf.reshape(tf.transpose(logits, [0, 1, 4, 2, 3]), [b, r, k, s * s])
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=flat)
    weights = tf.cast(weights, tf.float32)
    total = tf.reduce_sum(ce * weights)
    if normalizer is None:
        return tf.math.divide_no_nan(total, tf.reduce_sum(weights))
    return total / float(normalizer)


def _cubic_taps(source, size):
    """Indices int32 [..., 4] (clamped to [0, size)) and weights [..., 4] of bicubic interpolation at
    continuous source positions `source` [...] (OpenCV / torch: a = -0.75, replicated border)."""
    x0 = tf.floor(source)
    t = source - x0
    a = CUBIC_A

    def near(d):  # |d| <= 1
        return ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a

    weights = tf.stack([far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)], axis=-1)
    index = tf.cast(x0, tf.int32)[..., None] + tf.constant([-1, 0, 1, 2], tf.int32)
    return tf.clip_by_value(index, 0, size - 1), weights


def _interp_matrix(positions, scale, size):
    """float32 [..., T, size]: row t holds the bicubic weights of resized pixel positions[..., t] (resize
    factor `scale` = size / resized length [..., 1]), so that matrix @ column = the resized values."""
    source = (tf.cast(positions, tf.float32) + 0.5) * scale - 0.5
    index, weights = _cubic_taps(source, size)
    return tf.reduce_sum(tf.one_hot(index, size, dtype=tf.float32) * weights[..., None], axis=-2)


def heatmaps_to_keypoints(logits, boxes, window=DEFAULT_WINDOW):
    """Keypoint coordinates and scores from heatmap logits (Detectron's heatmaps_to_keypoints).

    Args:
      logits: float [B, D, S, S, K] heatmap logits of boxes `boxes`.
      boxes: float [B, D, 4] yxyx, the pixels of the output (original-image pixels in the model).
      window: static side of the resized-pixel window searched around the coarse argmax.
    Returns:
      float32 [B, D, K, 3]: (x, y, logit at the maximum) per keypoint, x / y in the boxes' pixels.
    """
    logits = tf.cast(logits, tf.float32)
    s = logits.shape[2]
    maps = tf.transpose(logits, [0, 1, 4, 2, 3])  # [B, D, K, S, S]
    x1, y1, x2, y2 = _xyxy(boxes)
    width = tf.maximum(x2 - x1, 1.0)[..., None]  # [B, D, 1]
    height = tf.maximum(y2 - y1, 1.0)[..., None]
    width_px, height_px = tf.math.ceil(width), tf.math.ceil(height)

    flat = tf.reshape(maps, tf.concat([tf.shape(maps)[:3], [s * s]], 0))
    coarse = tf.argmax(flat, axis=-1, output_type=tf.int32)  # [B, D, K]
    coarse_x, coarse_y = tf.cast(coarse % s, tf.float32), tf.cast(coarse // s, tf.float32)

    def window_positions(coarse_c, length):
        # The `window` resized pixels centred on the coarse cell's centre, kept inside [0, length).
        centre = (coarse_c + 0.5) * length / s - 0.5
        start = tf.floor(centre) - float(window // 2 - 1)
        start = tf.clip_by_value(start, 0.0, tf.maximum(length - float(window), 0.0))
        positions = start[..., None] + tf.range(window, dtype=tf.float32)  # [B, D, K, T]
        return positions, positions < length[..., None]

    px, valid_x = window_positions(coarse_x, width_px)
    py, valid_y = window_positions(coarse_y, height_px)
    wx = _interp_matrix(px, (s / width_px)[..., None], s)  # [B, D, K, T, S]
    wy = _interp_matrix(py, (s / height_px)[..., None], s)
    resized = tf.matmul(tf.matmul(wy, maps), wx, transpose_b=True)  # [B, D, K, T, T] (rows y, cols x)
    valid = valid_y[..., :, None] & valid_x[..., None, :]
    resized = tf.where(valid, resized, float("-inf"))
    best = tf.argmax(tf.reshape(resized, tf.concat([tf.shape(resized)[:3], [window * window]], 0)),
                     axis=-1, output_type=tf.int32)
    score = tf.reduce_max(resized, axis=[-2, -1])
    tx, ty = best % window, best // window
    x_int = tf.gather(px, tx[..., None], batch_dims=3)[..., 0]
    y_int = tf.gather(py, ty[..., None], batch_dims=3)[..., 0]
    x = (x_int + 0.5) * (width / width_px) + x1[..., None]
    y = (y_int + 0.5) * (height / height_px) + y1[..., None]
    return tf.stack([x, y, score], axis=-1)
