"""Draws detections (boxes, instance masks, class names, scores) on uint8 RGB images.

Pure numpy + PIL, no TensorFlow: used by `rethink_tf.predict` to write PNGs and by the trainer
for TensorBoard image summaries (`tf.summary.image` takes the uint8 arrays returned here, stacked).

Conventions: boxes are yxyx in the pixels of the image being drawn on; masks
given to `draw_detections` are full-image {0,1} arrays, one per box. Box-frame masks (the model's
28x28 probabilities or the pipeline's SxS gt crops) are pasted first with `paste_box_masks`.
"""
from __future__ import annotations

import colorsys
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# The pipeline's default normalization (rethink_tf.data.preprocess); used to undo it for display.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


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


def draw_detections(image: np.ndarray,
                    boxes: np.ndarray,
                    classes: np.ndarray,
                    scores: np.ndarray | None = None,
                    masks: np.ndarray | None = None,
                    class_names: Mapping[int, str] | None = None,
                    *,
                    score_threshold: float = 0.0,
                    mask_alpha: float = 0.45,
                    line_width: int | None = None,
                    font_size: int | None = None) -> np.ndarray:
    """Returns a copy of `image` with the detections drawn on it.

    Args:
        image: uint8 [h, w, 3] RGB (a grayscale [h, w] or [h, w, 1] image is drawn in RGB).
        boxes: float [N, 4] yxyx in this image's pixels.
        classes: int [N] class ids (COCO category ids or contiguous labels, matching `class_names`);
            entries <= 0 are empty slots (padding) and are skipped.
        scores: float [N] in [0, 1], or None (ground truth: no score in the label).
        masks: [N, h, w] {0, 1} (any dtype; > 0 is foreground) full-image masks, or None.
        class_names: {class id: name}; ids missing from it are labelled by their number.
        score_threshold: detections with a score below it are not drawn.
        mask_alpha: opacity of the mask fill.
        line_width, font_size: in pixels; default scales with the image (2 px / 12 px at 512 px).

    Returns:
        uint8 [h, w, 3].
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype} (use denormalize_image first)")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"image must be [h, w, 3] or [h, w, 1], got shape {image.shape}")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
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
    class_names = class_names or {}
    scale = max(height, width) / 512.0
    line_width = line_width or max(1, int(round(2 * scale)))
    font = _font(font_size or max(10, int(round(12 * scale))))

    keep = classes > 0
    if scores is not None:
        keep &= scores >= score_threshold
    # Draw low scores first so the most confident detections end up on top.
    order = np.flatnonzero(keep)
    if scores is not None:
        order = order[np.argsort(scores[order], kind="stable")]

    canvas = image.astype(np.float32)
    if masks is not None:
        for i in order:
            mask = masks[i] > 0
            color = np.asarray(color_for_class(classes[i]), np.float32)
            canvas[mask] = (1.0 - mask_alpha) * canvas[mask] + mask_alpha * color
            canvas[_mask_outline(mask)] = color
    pil = Image.fromarray(np.clip(np.round(canvas), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for i in order:
        color = color_for_class(classes[i])
        y0, x0, y1, x1 = boxes[i].tolist()
        draw.rectangle([x0, y0, x1, y1], outline=color, width=line_width)
        label = class_names.get(int(classes[i]), str(int(classes[i])))
        if scores is not None:
            label = f"{label} {scores[i]:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        text_w, text_h = right - left, bottom - top
        pad = max(1, line_width)
        # Label above the box when it fits, otherwise just inside its top edge.
        ty = y0 - text_h - 2 * pad if y0 - text_h - 2 * pad >= 0 else y0
        tx = min(max(x0, 0), max(width - text_w - 2 * pad, 0))
        draw.rectangle([tx, ty, tx + text_w + 2 * pad, ty + text_h + 2 * pad], fill=color)
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        draw.text((tx + pad - left, ty + pad - top), label, font=font,
                  fill=(0, 0, 0) if luminance > 140 else (255, 255, 255))
    return np.asarray(pil)


def draw_ground_truth(image: np.ndarray, gt_boxes: np.ndarray, gt_classes: np.ndarray,
                      gt_masks: np.ndarray | None = None,
                      class_names: Mapping[int, str] | None = None,
                      mask_threshold: float = 0.5) -> np.ndarray:
    """Draws one image of an input-pipeline batch (for the trainer's TensorBoard images).

    Args:
        image: uint8 [H, W, 3] canvas (see `denormalize_image`).
        gt_boxes: [M, 4] yxyx canvas pixels; gt_classes: [M] labels, -1 padding.
        gt_masks: [M, S, S] box-cropped masks in {0, 1} (the pipeline's `gt_masks`), or None.
        class_names: {label: name}, e.g. `class_names_by_id(source.categories, key="label")`.
    """
    gt_classes = np.asarray(gt_classes).reshape(-1)
    valid = gt_classes > 0
    boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)[valid]
    masks = None
    if gt_masks is not None:
        masks = paste_box_masks(np.asarray(gt_masks)[valid], boxes, np.asarray(image).shape[:2],
                                threshold=mask_threshold)
    return draw_detections(image, boxes, gt_classes[valid], None, masks, class_names)
