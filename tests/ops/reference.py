"""Small, loop-based numpy references for rethink_tf.ops (written independently of the TF code).

Written for clarity over speed; use them on tiny inputs only.
"""
import math

import numpy as np


def random_boxes(rng, n, size=64.0, min_side=1.0, max_side=32.0):
    """n random yxyx boxes inside [0, size]^2 with sides in [min_side, max_side]."""
    y1 = rng.uniform(0, size - max_side, n)
    x1 = rng.uniform(0, size - max_side, n)
    h = rng.uniform(min_side, max_side, n)
    w = rng.uniform(min_side, max_side, n)
    return np.stack([y1, x1, y1 + h, x1 + w], axis=-1).astype(np.float32)


def iou(a, b):
    """IoU of two single yxyx boxes (0 when the union is empty)."""
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def iou_matrix(a, b):
    return np.array([[iou(x, y) for y in b] for x in a], dtype=np.float64).reshape(len(a), len(b))


def intersection_over_first(a, b):
    """Intersection of yxyx boxes a and b divided by a's area (COCO's iou with iscrowd=1)."""
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1])
    return ih * iw / area if area > 0 else 0.0


def inside_image(box, height, width, threshold=0.0):
    """Detectron's RPN_STRADDLE_THRESH test for exclusive yxyx boxes."""
    return (box[0] >= -threshold and box[1] >= -threshold
            and box[2] <= height + threshold and box[3] <= width + threshold)


def encode(box, anchor, weights):
    """Detectron2 Box2BoxTransform.get_deltas, one box, returned as (dy, dx, dh, dw)."""
    ax, ay = (anchor[1] + anchor[3]) / 2, (anchor[0] + anchor[2]) / 2
    aw, ah = anchor[3] - anchor[1], anchor[2] - anchor[0]
    bx, by = (box[1] + box[3]) / 2, (box[0] + box[2]) / 2
    bw, bh = box[3] - box[1], box[2] - box[0]
    wy, wx, wh, ww = weights
    return np.array([wy * (by - ay) / ah, wx * (bx - ax) / aw, wh * math.log(bh / ah), ww * math.log(bw / aw)])


def decode(delta, anchor, weights, clamp=math.log(1000 / 16)):
    ax, ay = (anchor[1] + anchor[3]) / 2, (anchor[0] + anchor[2]) / 2
    aw, ah = anchor[3] - anchor[1], anchor[2] - anchor[0]
    wy, wx, wh, ww = weights
    cy = delta[0] / wy * ah + ay
    cx = delta[1] / wx * aw + ax
    h = math.exp(min(delta[2] / wh, clamp)) * ah
    w = math.exp(min(delta[3] / ww, clamp)) * aw
    return np.array([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])


def anchors_for_level(image_hw, stride, size, aspect_ratios):
    """detectron2-style anchors (ratio = h / w, area = size^2) centred at cell centres, order (y, x, a)."""
    rows = []
    for i in range(math.ceil(image_hw[0] / stride)):
        for j in range(math.ceil(image_hw[1] / stride)):
            cy, cx = (i + 0.5) * stride, (j + 0.5) * stride
            for ratio in aspect_ratios:
                w = math.sqrt(size * size / ratio)
                h = ratio * w
                rows.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.array(rows)


def match(iou_nm, valid_m, high, low, allow_low_quality):
    """detectron2 Matcher on one image: (matched index [N], label [N])."""
    n, m = iou_nm.shape
    cols = [j for j in range(m) if valid_m[j]]
    matched = np.zeros(n, np.int64)
    labels = np.zeros(n, np.int64)
    if not cols:
        return matched, labels
    for i in range(n):
        best_j = max(cols, key=lambda j: (iou_nm[i, j], -j))
        matched[i] = best_j
        v = iou_nm[i, best_j]
        labels[i] = 1 if v >= high else (0 if v < low else -1)
    if allow_low_quality:
        for j in cols:
            best = iou_nm[:, j].max()
            if best > 0:
                labels[iou_nm[:, j] == best] = 1
    return matched, labels


def bilinear_caffe2(feature, y, x):
    """Caffe2/Detectron RoIAlign bilinear sample of feature [H, W, C] at (y, x)."""
    height, width = feature.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(feature.shape[2])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (
        hy * hx * feature[y_low, x_low]
        + hy * lx * feature[y_low, x_high]
        + ly * hx * feature[y_high, x_low]
        + ly * lx * feature[y_high, x_high]
    )


def roi_align(feature, box, scale, output_size, sampling_ratio):
    """Detectron ROIAlign (aligned=False) of one yxyx box on feature [H, W, C] -> [out, out, C]."""
    y1, x1, y2, x2 = (v * scale for v in box)
    roi_h, roi_w = max(y2 - y1, 1.0), max(x2 - x1, 1.0)
    bin_h, bin_w = roi_h / output_size, roi_w / output_size
    out = np.zeros((output_size, output_size, feature.shape[2]))
    for ph in range(output_size):
        for pw in range(output_size):
            acc = np.zeros(feature.shape[2])
            for iy in range(sampling_ratio):
                for ix in range(sampling_ratio):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / sampling_ratio
                    x = x1 + pw * bin_w + (ix + 0.5) * bin_w / sampling_ratio
                    acc += bilinear_caffe2(feature, y, x)
            out[ph, pw] = acc / sampling_ratio**2
    return out


def fpn_level(box, min_level, max_level, canonical_size=224.0, canonical_level=4):
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    level = math.floor(canonical_level + math.log2(math.sqrt(area) / canonical_size + 1e-8))
    return min(max(level, min_level), max_level)


def greedy_nms(boxes, scores, iou_threshold, max_output):
    """torchvision-style NMS: keep in score order, drop boxes with IoU > threshold to a kept one."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if not np.isfinite(scores[i]):
            continue
        if all(iou(boxes[i], boxes[k]) <= iou_threshold for k in keep):
            keep.append(i)
        if len(keep) == max_output:
            break
    return keep


def multiclass_nms(boxes, scores, score_threshold, iou_threshold, max_detections):
    """boxes [N, K, 4], scores [N, K] -> list of (score, class 1..K, box), best first."""
    dets = []
    for k in range(scores.shape[1]):
        cand = [i for i in range(scores.shape[0]) if scores[i, k] > score_threshold]
        keep = greedy_nms(boxes[cand, k], scores[cand, k], iou_threshold, len(cand))
        dets += [(scores[cand[i], k], k + 1, boxes[cand[i], k]) for i in keep]
    dets.sort(key=lambda d: -d[0])
    return dets[:max_detections]


def proposals(objectness, deltas, anchors, image_hw, pre_topk, post_topk, nms_iou, min_size):
    """detectron2 find_top_rpn_proposals for one image: dict inputs per level -> (boxes, scores)."""
    out = []
    for level in sorted(objectness):
        scores = objectness[level]
        order = np.argsort(-scores, kind="stable")[:pre_topk]
        boxes = []
        for i in order:
            b = decode(deltas[level][i], anchors[level][i], (1, 1, 1, 1))
            b = np.array([min(max(b[0], 0), image_hw[0]), min(max(b[1], 0), image_hw[1]),
                          min(max(b[2], 0), image_hw[0]), min(max(b[3], 0), image_hw[1])])
            boxes.append(b)
        ok = [j for j, b in enumerate(boxes) if b[2] - b[0] > min_size and b[3] - b[1] > min_size]
        keep = greedy_nms([boxes[j] for j in ok], [scores[order[j]] for j in ok], nms_iou, post_topk)
        out += [(scores[order[ok[j]]], boxes[ok[j]]) for j in keep]
    out.sort(key=lambda d: -d[0])
    out = out[:post_topk]
    return np.array([b for _, b in out]).reshape(-1, 4), np.array([s for s, _ in out])


def bilinear_zero_padded(grid, u, v):
    """Bilinear sample of a 2-D grid at continuous (row u, col v), pixel centres at integers, 0 outside."""
    def at(i, j):
        return grid[i, j] if 0 <= i < grid.shape[0] and 0 <= j < grid.shape[1] else 0.0
    i0, j0 = math.floor(u), math.floor(v)
    a, b = u - i0, v - j0
    return ((1 - a) * (1 - b) * at(i0, j0) + (1 - a) * b * at(i0, j0 + 1)
            + a * (1 - b) * at(i0 + 1, j0) + a * b * at(i0 + 1, j0 + 1))


def mask_target(gt_mask, gt_box, roi, output_size):
    """RoI crop of a box-frame mask: sample at the RoI's output-cell centres."""
    s = gt_mask.shape[0]
    out = np.zeros((output_size, output_size))
    for i in range(output_size):
        for j in range(output_size):
            y = roi[0] + (i + 0.5) * (roi[2] - roi[0]) / output_size
            x = roi[1] + (j + 0.5) * (roi[3] - roi[1]) / output_size
            u = (y - gt_box[0]) / (gt_box[2] - gt_box[0]) * s - 0.5
            v = (x - gt_box[1]) / (gt_box[3] - gt_box[1]) * s - 0.5
            out[i, j] = bilinear_zero_padded(gt_mask, u, v)
    return out


def paste_mask(mask, box, image_hw, threshold):
    out = np.zeros(image_hw, np.uint8)
    m = mask.shape[0]
    for y in range(image_hw[0]):
        for x in range(image_hw[1]):
            u = (y + 0.5 - box[0]) / (box[2] - box[0]) * m - 0.5
            v = (x + 0.5 - box[1]) / (box[3] - box[1]) * m - 0.5
            out[y, x] = bilinear_zero_padded(mask, u, v) >= threshold
    return out
