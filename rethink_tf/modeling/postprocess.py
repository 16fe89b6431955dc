"""`DetectionPostProcessor`: score threshold, per-class NMS, top-k, canvas -> original pixels.

detectron2's fast_rcnn_inference: candidates need score > score_threshold (0.05), NMS per class at
IoU nms_iou (0.5, a box is dropped only at IoU > threshold), then the top detections_per_image
(100) over all classes. `select` works in canvas pixels (the branches run on its boxes);
`to_original` maps boxes to original-image pixels (divide by the resize scale, clip to the original
image). Evaluation and export get detections through this one object. With a keypoint branch,
`to_original` also turns its heatmap logits (`KEYPOINT_LOGITS`, in the boxes' frames) into
`detection_keypoints` in original pixels (rethink_tf.ops.keypoints.heatmaps_to_keypoints).

torchvision's postprocess_detections also drops boxes with a side < 1e-2 pixels before NMS
(`min_box_size`, 0 = off), and its masks are pasted its own way (`mask_paste = "torchvision"`, read
by the consumers that paste: rethink_tf.ops.masks.paste_masks_torchvision).
"""
import gin
import keras
from keras import ops

from rethink_tf.ops.keypoints import heatmaps_to_keypoints
from rethink_tf.ops.nms import multiclass_nms
from rethink_tf.utils import validate

# Mask probabilities are binarized at this when pasted into the image (Detectron); evaluation and
# export paste with it unless told otherwise.
MASK_THRESHOLD = 0.5
DETECTION_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
# Keypoint heatmap logits [B, D, S, S, K] of the detections (canvas frame), replaced by `to_original`
# with "detection_keypoints" [B, D, K, 3] (x, y, score) in original pixels.
KEYPOINT_LOGITS = "detection_keypoint_logits"
MASK_PASTES = ("detectron", "torchvision")


@keras.saving.register_keras_serializable(package="rethink_tf")
class DetectionPostProcessor(keras.layers.Layer):
    """Args: score_threshold, nms_iou, detections_per_image (D), min_box_size (pixels; candidates with
    a side < this are dropped before NMS, 0 = off), mask_paste ("detectron" / "torchvision": how the
    consumers paste detection_masks, rethink_tf.ops.masks)."""

    def __init__(self, score_threshold=0.05, nms_iou=0.5, detections_per_image=100, min_box_size=0.0,
                 mask_paste="detectron", **kwargs):
        kwargs.setdefault("name", "postprocessor")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.detections_per_image = int(detections_per_image)
        self.min_box_size = float(min_box_size)
        if mask_paste not in MASK_PASTES:
            raise ValueError(f"DetectionPostProcessor: mask_paste {mask_paste!r} is not one of {MASK_PASTES}")
        self.mask_paste = mask_paste

    def select(self, boxes, scores):
        """boxes float32 [B, N, K, 4] or [B, N, 1, 4] / [B, N, 4] (class-agnostic), scores float32
        [B, N, K] -> dict detection_boxes [B, D, 4] (canvas), detection_scores [B, D],
        detection_classes int32 [B, D] (1..K, 0 in empty slots), num_detections int32 [B];
        slots [0, num) filled in decreasing score, empty slots 0."""
        if boxes.ndim == 4 and boxes.shape[2] == 1:  # one box shared by every class
            boxes = boxes[:, :, 0, :]
        if self.min_box_size > 0:  # torchvision's remove_small_boxes: keep sides >= min_box_size
            sides = ops.minimum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])
            if boxes.ndim == 3:
                sides = sides[:, :, None]
            scores = ops.where(sides >= self.min_box_size, scores, 0.0)
        det_boxes, det_scores, det_classes, num = multiclass_nms(
            boxes, scores, score_threshold=self.score_threshold, iou_threshold=self.nms_iou,
            max_detections=self.detections_per_image)
        num = ops.cast(num, "int32")
        valid = self._valid(num)
        return {"detection_boxes": ops.where(valid[:, :, None], det_boxes, 0.0),
                "detection_scores": ops.where(valid, det_scores, 0.0),
                "detection_classes": ops.where(valid, ops.cast(det_classes, "int32"), 0),
                "num_detections": num}

    def to_original(self, detections, image_info):
        """The same dict with detection_boxes in original-image pixels, clipped to the original
        image (image_info [B, 4, 2]: rows original (h, w), scaled (h, w), scale (y, x), offset);
        KEYPOINT_LOGITS, when present, becomes detection_keypoints [B, D, K, 3] (0 in empty slots);
        other entries are passed through."""
        image_info = ops.cast(image_info, "float32")
        scale = image_info[:, 2, :]
        orig_hw = image_info[:, 0, :]
        boxes = detections["detection_boxes"] / ops.concatenate([scale, scale], axis=-1)[:, None, :]
        limits = ops.concatenate([orig_hw, orig_hw], axis=-1)[:, None, :]
        boxes = ops.minimum(ops.maximum(boxes, 0.0), limits)
        valid = self._valid(detections["num_detections"])
        out = {**detections, "detection_boxes": ops.where(valid[:, :, None], boxes, 0.0)}
        if KEYPOINT_LOGITS in out:
            # Decoded in the original image's pixels, as Detectron resizes the heatmap to the box there.
            keypoints = heatmaps_to_keypoints(out.pop(KEYPOINT_LOGITS), out["detection_boxes"])
            out["detection_keypoints"] = ops.where(valid[:, :, None, None], keypoints, 0.0)
        return out

    def _valid(self, num):
        return ops.arange(self.detections_per_image)[None, :] < ops.cast(num, "int32")[:, None]

    def get_config(self):
        return {**super().get_config(), "score_threshold": self.score_threshold,
                "nms_iou": self.nms_iou, "detections_per_image": self.detections_per_image,
                "min_box_size": self.min_box_size, "mask_paste": self.mask_paste}


def check_postprocessor_arguments(args):
    validate.number("build_postprocessor.score_threshold", args["score_threshold"], minimum=0, maximum=1)
    validate.number("build_postprocessor.nms_iou", args["nms_iou"], minimum=0, maximum=1, exclusive_minimum=True)
    validate.integer("build_postprocessor.detections_per_image", args["detections_per_image"], minimum=1)
    validate.number("build_postprocessor.min_box_size", args["min_box_size"], minimum=0)
    if args["mask_paste"] not in MASK_PASTES:
        validate.fail("build_postprocessor.mask_paste", args["mask_paste"], f"one of {MASK_PASTES}")


@gin.configurable
def build_postprocessor(score_threshold=0.05, nms_iou=0.5, detections_per_image=100, min_box_size=0.0,
                        mask_paste="detectron"):
    """The model's DetectionPostProcessor (shared by evaluation and export).

    Args (gin): score_threshold: keep candidates with score > this (0.05); nms_iou: per-class NMS IoU
      (0.5); detections_per_image: top-k over all classes (100); min_box_size: drop candidates with a
      side < this many pixels before NMS (0.0: off; torchvision 1e-2); mask_paste: "detectron" or
      "torchvision" (how evaluation / export paste the 28x28 masks, rethink_tf.ops.masks).
    """
    check_postprocessor_arguments(locals())
    return DetectionPostProcessor(score_threshold=score_threshold, nms_iou=nms_iou,
                                  detections_per_image=detections_per_image, min_box_size=min_box_size,
                                  mask_paste=mask_paste)
