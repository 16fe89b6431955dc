"""Instance masks cropped to their boxes at a fixed size (numpy + pycocotools, runs per image in Python).

A full-image mask per instance does not fit in memory (hundreds of instances at 800x1333), so every mask
travels as an S x S crop of its own box, the frame the mask head's targets live in. Resizing the image does
not change this crop (the box scales with the image); a horizontal flip reverses its columns.

Polygons are rasterized directly in the box frame (as Detectron builds mask targets from polygons); RLE
masks (crowd regions, or RLE-encoded instances) are decoded at full size once and bilinearly resampled.
"""

import numpy as np
from pycocotools import mask as mask_utils


def polygons_to_box_mask(polygons, box_xywh, size):
    """Rasterizes COCO polygons into the frame of `box_xywh` at `size` x `size`.

    Args:
      polygons: list of flat [x0, y0, x1, y1, ...] lists in image pixels.
      box_xywh: (x, y, w, h) box in image pixels, w, h > 0.
      size: output side S.
    Returns: uint8 [S, S] in {0, 1}.
    """
    x, y, w, h = box_xywh
    scaled = []
    for p in polygons:
        if len(p) < 6:
            continue
        p = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        p = (p - (x, y)) * (size / w, size / h)
        scaled.append(p.ravel().tolist())
    if not scaled:
        return np.zeros((size, size), np.uint8)
    rles = mask_utils.frPyObjects(scaled, size, size)
    return mask_utils.decode(mask_utils.merge(rles)).astype(np.uint8)


def crop_and_resize_mask(full_mask, box_xywh, size):
    """Bilinear resampling of a full-image binary mask inside a box, thresholded at 0.5.

    Sample points are the centres of an S x S grid over the box (continuous coordinates, pixel i covers
    [i, i+1)), like RoIAlign with one sample per bin.

    Args: full_mask uint8 [h, w]; box_xywh in pixels; size S. Returns uint8 [S, S].
    """
    h, w = full_mask.shape
    bx, by, bw, bh = box_xywh
    ys = by + (np.arange(size) + 0.5) * bh / size - 0.5
    xs = bx + (np.arange(size) + 0.5) * bw / size - 0.5
    y0 = np.clip(np.floor(ys).astype(np.int64), 0, h - 1)
    x0 = np.clip(np.floor(xs).astype(np.int64), 0, w - 1)
    y1 = np.clip(y0 + 1, 0, h - 1)
    x1 = np.clip(x0 + 1, 0, w - 1)
    wy = np.clip(ys - np.floor(ys), 0, 1)[:, None]
    wx = np.clip(xs - np.floor(xs), 0, 1)[None, :]
    m = full_mask.astype(np.float32)
    top = m[y0][:, x0] * (1 - wx) + m[y0][:, x1] * wx
    bottom = m[y1][:, x0] * (1 - wx) + m[y1][:, x1] * wx
    return ((top * (1 - wy) + bottom * wy) >= 0.5).astype(np.uint8)


def segmentation_to_rle(segmentation, height, width):
    """Any COCO segmentation (polygons, uncompressed or compressed RLE) -> compressed RLE dict."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def annotation_box_mask(segmentation, box_xywh, height, width, size):
    """Box-cropped S x S mask of one COCO annotation (polygons or RLE). Returns uint8 [S, S]."""
    if isinstance(segmentation, list):
        return polygons_to_box_mask(segmentation, box_xywh, size)
    full = mask_utils.decode(segmentation_to_rle(segmentation, height, width))
    return crop_and_resize_mask(full, box_xywh, size)


def paste_box_mask(box_mask, box_yxyx, height, width):
    """Inverse of the crop, for tests and visualisation: resamples an S x S box mask into an image.

    Args: box_mask [S, S] in {0,1}; box_yxyx in image pixels; output size (height, width).
    Returns: uint8 [height, width] in {0, 1}; a pixel is on if its centre falls in an "on" cell
    (nearest-cell lookup).
    """
    size = box_mask.shape[0]
    y0, x0, y1, x1 = [float(v) for v in box_yxyx]
    out = np.zeros((height, width), np.uint8)
    rows = np.arange(height) + 0.5
    cols = np.arange(width) + 0.5
    in_r = (rows >= y0) & (rows < y1)
    in_c = (cols >= x0) & (cols < x1)
    if not in_r.any() or not in_c.any() or y1 <= y0 or x1 <= x0:
        return out
    ri = np.clip(((rows[in_r] - y0) / (y1 - y0) * size).astype(np.int64), 0, size - 1)
    ci = np.clip(((cols[in_c] - x0) / (x1 - x0) * size).astype(np.int64), 0, size - 1)
    out[np.ix_(in_r, in_c)] = box_mask[np.ix_(ri, ci)]
    return out
