"""Draws detections (boxes, instance masks, class names, scores, keypoint skeletons) on uint8 RGB images.

The one drawing module of the package: `rethink_tf.predict` (PNGs), `rethink_tf.Detector.draw` and the
trainer's TensorBoard images all come through `draw_detections`. Pure numpy + PIL, no TensorFlow.

The layout follows the idea of detectron2's Visualizer (own code):
- small images are upscaled for drawing (shorter side -> `DRAW_MIN_SIDE` px) so that text and lines
  stay legible; the returned picture is then larger than the input (`drawing_scale` gives the factor);
- line width and font size follow the drawn image's shorter side;
- masks, then every box outline, then every label, so no outline is drawn over a label;
- each label is placed, most confident detection first, at the best of several spots around its box
  (above, below, inside top, inside bottom; left- or right-aligned; then shifted past the labels
  already placed): never over an already placed label when a free spot exists, and as little as
  possible over any box outline (its own included);
- one score threshold, `SCORE_THRESHOLD`, is the default everywhere a picture is drawn.

Conventions: boxes are yxyx in the pixels of the image given (before upscaling); masks given to
`draw_detections` are full-image {0,1} arrays, one per box. Box-frame masks (the model's 28x28
probabilities or the pipeline's SxS gt crops) are pasted first with `paste_box_masks`.
"""
from __future__ import annotations

import colorsys
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# The pipeline's default normalization (rethink_tf.data.preprocess); used to undo it for display.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
# Detections scoring below this are not drawn (predict's --min_score default, the API, TensorBoard).
SCORE_THRESHOLD = 0.5
# Images whose shorter side is below this many pixels are upscaled to it for drawing.
DRAW_MIN_SIDE = 512
# Keypoints with a score (heatmap logit) above this are drawn (Detectron's vis kp_thresh).
KEYPOINT_THRESHOLD = 2.0
# COCO's person skeleton (person_keypoints json "skeleton", made 0-based): nose, eyes, ears, shoulders,
# elbows, wrists, hips, knees, ankles.
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
                 (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))


def color_for_class(class_id: int) -> tuple[int, int, int]:
    """A stable, well-separated RGB color for a class id (golden-ratio hue walk)."""
    hue = (int(class_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def class_names_by_id(categories: Sequence[Mapping], key: str = "id") -> dict[int, str]:
    """{id: name} from a list of {"id", "name"} dicts.

    key="id" names COCO category ids (what the SavedModel outputs); key="label" names contiguous
    labels 1..K in list order (what the model and the input pipeline use).
    """
    if key == "label":
        return {i + 1: str(c["name"]) for i, c in enumerate(categories)}
    if key != "id":
        raise ValueError(f"key must be 'id' or 'label', got {key!r}")
    return {int(c["id"]): str(c["name"]) for c in categories}


def denormalize_image(image: np.ndarray, mean=PIXEL_MEAN, std=None, channel_order="rgb") -> np.ndarray:
    """Undoes the pipeline's normalization: float [h, w, 3] (image[order] - mean) / std -> uint8 RGB."""
    image = np.asarray(image, np.float32)
    if std is not None:
        image = image * np.asarray(std, np.float32)
    image = image + np.asarray(mean, np.float32)
    if channel_order == "bgr":
        image = image[..., ::-1]
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def paste_box_masks(masks: np.ndarray, boxes: np.ndarray, image_hw: tuple[int, int],
                    threshold: float = 0.5) -> np.ndarray:
    """Pastes box-frame masks into the image: [N, S, S] probs in [0, 1] -> uint8 [N, h, w] in {0, 1}.

    Delegates to `rethink_tf.ops.masks.paste_masks` (the one used by evaluation) so that what is
    drawn is what is scored.
    """
    from rethink_tf.ops.masks import paste_masks  # lazy: keeps this module TF-free at import
    masks = np.asarray(masks, np.float32)
    boxes = np.asarray(boxes, np.float32)
    if len(masks) == 0:
        return np.zeros((0, int(image_hw[0]), int(image_hw[1])), np.uint8)
    return np.asarray(paste_masks(masks, boxes, tuple(int(v) for v in image_hw), threshold=threshold),
                      np.uint8)


def drawing_scale(image_hw: tuple[int, int], min_side: int | None = DRAW_MIN_SIDE) -> float:
    """The factor `draw_detections` enlarges an image of this (h, w) by: 1 unless the shorter side is
    below `min_side` (None: never), then min_side / shorter side."""
    short = min(int(image_hw[0]), int(image_hw[1]))
    if not min_side or short <= 0 or short >= min_side:
        return 1.0
    return float(min_side) / short


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed-size bitmap font.
        return ImageFont.load_default()


def _mask_outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of a bool mask whose 4-neighbourhood leaves the mask (a 1-pixel contour)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~interior


def _overlap(rects: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection areas [C, P] of rects [C, 4] and others [P, 4], both (left, top, right, bottom)."""
    if len(others) == 0:
        return np.zeros((len(rects), 0), np.float64)
    w = (np.minimum(rects[:, None, 2], others[None, :, 2]) - np.maximum(rects[:, None, 0], others[None, :, 0]))
    h = (np.minimum(rects[:, None, 3], others[None, :, 3]) - np.maximum(rects[:, None, 1], others[None, :, 1]))
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def box_edges(boxes_xyxy: np.ndarray, line_width: float) -> np.ndarray:
    """The 4 outline strips of each box as rectangles [4N, 4] (left, top, right, bottom), line_width
    thick and centred on the edges, as PIL draws a rectangle outline of that width (inside it)."""
    b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    lw = float(line_width)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    strips = [np.stack([x0, y0, x1, y0 + lw], 1), np.stack([x0, y1 - lw, x1, y1], 1),
              np.stack([x0, y0, x0 + lw, y1], 1), np.stack([x1 - lw, y0, x1, y1], 1)]
    return np.concatenate(strips, 0)


def place_labels(boxes_xyxy: np.ndarray, label_sizes: np.ndarray, image_hw: tuple[int, int],
                 line_width: float = 2.0) -> np.ndarray:
    """Chooses where each box's label goes, in the given order (most important first).

    Args:
        boxes_xyxy: float [N, 4] (x0, y0, x1, y1) in the pixels of the picture drawn.
        label_sizes: [N, 2] (width, height) of each label rectangle in pixels.
        image_hw: (height, width) of the picture; labels are kept inside it when they fit.
        line_width: width of the box outlines in pixels.
    Returns:
        float [N, 4] label rectangles (left, top, right, bottom). Cost of a spot, lowest wins:
        area over already placed labels (weight 1000; zero whenever any candidate allows it), area
        over box outlines (weight 10; own box included), distance from the spot just above the box's
        top-left corner (weight 0.01 per px), so a label stays by its box unless that covers
        something.
    """
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    sizes = np.asarray(label_sizes, np.float64).reshape(-1, 2)
    height, width = float(image_hw[0]), float(image_hw[1])
    edges = box_edges(boxes, line_width)
    gap = float(line_width)
    placed = np.zeros((0, 4), np.float64)
    for i, ((x0, y0, x1, y1), (tw, th)) in enumerate(zip(boxes, sizes)):
        xs = [x0, x1 - tw]
        # Next to labels already placed nearby: just right of them or just left of them.
        near = placed[(placed[:, 2] > x0 - tw) & (placed[:, 0] < x1 + tw)
                      & (placed[:, 3] > y0 - 3 * th) & (placed[:, 1] < y1 + 3 * th)]
        xs += list(near[:, 2] + 1) + list(near[:, 0] - tw - 1)
        above, below = y0 - gap - th, y1 + gap
        ys = [above, below, y0 + gap, y1 - gap - th]
        # Stacked away from the box, past labels in the way (each step one label height).
        ys += [above - k * (th + 1) for k in range(1, 4)] + [below + k * (th + 1) for k in range(1, 4)]
        ys += list(near[:, 1] - th - 1) + list(near[:, 3] + 1)
        cand_x = np.clip(np.asarray(xs), 0, max(width - tw, 0))
        cand_y = np.clip(np.asarray(ys), 0, max(height - th, 0))
        cx, cy = np.meshgrid(cand_x, cand_y)
        cx, cy = cx.ravel(), cy.ravel()
        rects = np.stack([cx, cy, cx + tw, cy + th], 1)
        cost = (1000.0 * _overlap(rects, placed).sum(1) + 10.0 * _overlap(rects, edges).sum(1)
                + 0.01 * np.hypot(cx - max(min(x0, width - tw), 0), cy - max(above, 0)))
        placed = np.concatenate([placed, rects[np.argmin(cost)][None]], 0)
    return placed


def as_rgb(image, what: str = "image") -> np.ndarray:
    """uint8 [h, w, 3] RGB from uint8 [h, w, 3], [h, w, 4] (alpha dropped), [h, w, 1] or [h, w] (gray).

    Raises ValueError naming `what` for another dtype or shape.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 RGB pixels 0..255, got dtype {image.dtype} (for floats "
                         "in [0, 1]: (x * 255).round().astype(np.uint8); for a model input: denormalize_image)")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{what}: expected [H, W, 3] RGB, [H, W] / [H, W, 1] gray or [H, W, 4] RGBA, "
                         f"got shape {image.shape}")
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def draw_detections(image: np.ndarray,
                    boxes: np.ndarray,
                    classes: np.ndarray,
                    scores: np.ndarray | None = None,
                    masks: np.ndarray | None = None,
                    class_names: Mapping[int, str] | None = None,
                    *,
                    score_threshold: float = SCORE_THRESHOLD,
                    mask_alpha: float = 0.45,
                    line_width: int | None = None,
                    font_size: int | None = None,
                    min_side: int | None = DRAW_MIN_SIDE,
                    keypoints: np.ndarray | None = None,
                    keypoint_threshold: float = KEYPOINT_THRESHOLD,
                    skeleton: Sequence[tuple[int, int]] = COCO_SKELETON) -> np.ndarray:
    """Returns a copy of `image` with the detections drawn on it (enlarged if it is small).

    Args:
        image: uint8 [h, w, 3] RGB (grayscale [h, w] / [h, w, 1] is drawn in RGB; RGBA drops alpha).
        boxes: float [N, 4] yxyx in this image's pixels.
        classes: int [N] class ids (COCO category ids or contiguous labels, matching `class_names`);
            entries <= 0 are empty slots (padding) and are skipped.
        scores: float [N] in [0, 1], or None (ground truth: no score in the label, no threshold).
        masks: [N, h, w] {0, 1} (any dtype; > 0 is foreground) full-image masks, or None.
        class_names: {class id: name}; ids missing from it are labelled by their number.
        score_threshold: detections with a score below it are not drawn.
        mask_alpha: opacity of the mask fill.
        line_width, font_size: in pixels of the returned picture; default from its shorter side
            (2 px and 15 px at 512 px).
        min_side: images with a shorter side below it are enlarged to it first (bilinear), boxes and
            masks with them; None draws at the input size.
        keypoints: float [N, K, 3] (x, y, score) in this image's pixels, or None: each detection's
            points with score > keypoint_threshold are drawn as dots, joined by the `skeleton` edges
            (pairs of 0-based keypoint indices; COCO's person skeleton by default).
        keypoint_threshold: minimum keypoint score drawn (2.0: Detectron's heatmap-logit threshold).

    Returns:
        uint8 [H, W, 3] with (H, W) = round((h, w) * drawing_scale((h, w), min_side)).
    """
    image = as_rgb(image)
    height, width = image.shape[:2]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(classes).reshape(-1).astype(np.int64)
    num = len(boxes)
    if len(classes) != num:
        raise ValueError(f"boxes has {num} rows but classes has {len(classes)}")
    if scores is not None:
        scores = np.asarray(scores, np.float32).reshape(-1)
        if len(scores) != num:
            raise ValueError(f"boxes has {num} rows but scores has {len(scores)}")
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != (num, height, width):
            raise ValueError(f"masks must be [N, h, w] = {(num, height, width)}, got {masks.shape}")
    if keypoints is not None:
        keypoints = np.asarray(keypoints, np.float32)
        if keypoints.ndim != 3 or keypoints.shape[0] != num or keypoints.shape[2] != 3:
            raise ValueError(f"keypoints must be [N, K, 3] with N = {num}, got {keypoints.shape}")
    class_names = class_names or {}

    keep = classes > 0
    if scores is not None:
        keep &= scores >= score_threshold
    order = np.flatnonzero(keep)
    if scores is not None:  # most confident first (it gets the best label spot, its mask on top)
        order = order[np.argsort(-scores[order], kind="stable")]

    scale = drawing_scale((height, width), min_side)
    pil = Image.fromarray(image)
    if scale != 1.0:
        size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
        pil = pil.resize(size, Image.BILINEAR)
    out_w, out_h = pil.size
    sy, sx = out_h / height if height else 1.0, out_w / width if width else 1.0
    short = min(out_h, out_w)
    line_width = line_width or max(1, int(round(short / 256)))
    font = _font(font_size or max(10, int(round(short * 0.03))))

    if masks is not None and len(order):
        canvas = np.asarray(pil).astype(np.float32)
        for i in order[::-1]:  # least confident first: the best ends on top
            mask = masks[i] > 0
            if scale != 1.0:
                mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(
                    (out_w, out_h), Image.BILINEAR)) >= 128
            color = np.asarray(color_for_class(classes[i]), np.float32)
            canvas[mask] = (1.0 - mask_alpha) * canvas[mask] + mask_alpha * color
            canvas[_mask_outline(mask)] = color
        pil = Image.fromarray(np.clip(np.round(canvas), 0, 255).astype(np.uint8))

    draw = ImageDraw.Draw(pil)
    xyxy = boxes[order][:, [1, 0, 3, 2]] * np.asarray([sx, sy, sx, sy], np.float32)
    for i, (x0, y0, x1, y1) in zip(order, xyxy.tolist()):
        draw.rectangle([x0, y0, max(x1, x0), max(y1, y0)], outline=color_for_class(classes[i]),
                       width=line_width)
    if keypoints is not None:
        for i in order:
            _draw_skeleton(draw, keypoints[i] * np.asarray([sx, sy, 1.0], np.float32), keypoint_threshold,
                           skeleton, color_for_class(classes[i]), line_width)

    labels, sizes, offsets = [], [], []
    pad = max(1, line_width)
    for i in order:
        label = class_names.get(int(classes[i]), str(int(classes[i])))
        if scores is not None:
            label = f"{label} {100 * scores[i]:.0f}%"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        labels.append(label)
        sizes.append((right - left + 2 * pad, bottom - top + 2 * pad))
        offsets.append((pad - left, pad - top))
    rects = place_labels(xyxy, np.asarray(sizes).reshape(-1, 2), (out_h, out_w), line_width)
    for i, box, rect in zip(order, xyxy, rects):  # a label moved away from its box points at it
        label_pt = np.clip((box[:2] + box[2:]) / 2, rect[:2], rect[2:])
        box_pt = np.clip(label_pt, box[:2], box[2:])
        if np.hypot(*(label_pt - box_pt)) > 2 * line_width + 2:
            draw.line([tuple(label_pt), tuple(box_pt)], fill=color_for_class(classes[i]),
                      width=max(1, line_width // 2))
    for i, label, rect, offset in zip(order, labels, rects, offsets):
        color = color_for_class(classes[i])
        lx, ly, rx, by = rect.tolist()
        draw.rectangle([lx, ly, rx - 1, by - 1], fill=color)
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        draw.text((lx + offset[0], ly + offset[1]), label, font=font,
                  fill=(0, 0, 0) if luminance > 140 else (255, 255, 255))
    return np.asarray(pil)


def _draw_skeleton(draw, points, threshold, skeleton, color, line_width):
    """points [K, 3] (x, y, score) in picture pixels: edges between shown points, then the points."""
    shown = points[:, 2] > threshold
    bright = tuple(int(round(0.5 * c + 127.5)) for c in color)  # lighter than the box: visible on it
    for a, b in skeleton:
        if a < len(points) and b < len(points) and shown[a] and shown[b]:
            draw.line([tuple(points[a, :2].tolist()), tuple(points[b, :2].tolist())], fill=bright,
                      width=max(1, line_width))
    radius = max(1.5, 1.5 * line_width)
    for x, y in points[shown, :2].tolist():
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=bright, outline=color)


def draw_ground_truth(image: np.ndarray, gt_boxes: np.ndarray, gt_classes: np.ndarray,
                      gt_masks: np.ndarray | None = None,
                      class_names: Mapping[int, str] | None = None,
                      mask_threshold: float = 0.5,
                      *,
                      min_side: int | None = DRAW_MIN_SIDE,
                      gt_keypoints: np.ndarray | None = None) -> np.ndarray:
    """Draws one image of an input-pipeline batch (for the trainer's TensorBoard images).

    Args:
        image: uint8 [H, W, 3] canvas (see `denormalize_image`).
        gt_boxes: [M, 4] yxyx canvas pixels; gt_classes: [M] labels, -1 padding.
        gt_masks: [M, S, S] box-cropped masks in {0, 1} (the pipeline's `gt_masks`), or None.
        class_names: {label: name}, e.g. `class_names_by_id(source.categories, key="label")`.
        min_side: as in `draw_detections` (the picture has the size `draw_detections` gives).
        gt_keypoints: [M, K, 3] (x, y, v) canvas pixels (the pipeline's `gt_keypoints`), or None:
            labeled points (v > 0) are drawn with the skeleton.
    """
    gt_classes = np.asarray(gt_classes).reshape(-1)
    valid = gt_classes > 0
    boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)[valid]
    masks = None
    if gt_masks is not None:
        masks = paste_box_masks(np.asarray(gt_masks)[valid], boxes, np.asarray(image).shape[:2],
                                threshold=mask_threshold)
    keypoints = None
    if gt_keypoints is not None:
        keypoints = np.asarray(gt_keypoints, np.float32)[valid].copy()
        keypoints[..., 2] = np.where(keypoints[..., 2] > 0, np.inf, -np.inf)
    return draw_detections(image, boxes, gt_classes[valid], None, masks, class_names,
                           min_side=min_side, keypoints=keypoints)
