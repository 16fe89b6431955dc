"""Loop-based numpy reference of Detectron's TTA box merge (box_results_with_nms_and_limit with
TEST.BBOX_VOTE), written from its description, independently of rethink_tf.modeling.tta."""
import numpy as np

from tests.ops.reference import iou


def merge(boxes, scores, score_threshold, nms_iou, max_detections, vote_iou=None):
    """boxes [N, K or 1, 4], scores [N, K] (one image, all variants concatenated) ->
    list of (score, class 1..K, box [4]) best first; box voting when vote_iou is given."""
    dets = []
    for j in range(scores.shape[1]):
        class_boxes = boxes[:, j if boxes.shape[1] > 1 else 0].astype(np.float64)
        cand = [i for i in range(len(scores)) if scores[i, j] > score_threshold]
        keep = []
        for i in sorted(cand, key=lambda i: -scores[i, j]):
            if all(iou(class_boxes[i], class_boxes[k]) <= nms_iou for k in keep):
                keep.append(i)
        for k in keep:
            box = class_boxes[k]
            if vote_iou is not None:
                voters = [i for i in cand if iou(class_boxes[k], class_boxes[i]) >= vote_iou]
                w = np.array([scores[i, j] for i in voters], np.float64)
                box = (w[:, None] * class_boxes[voters]).sum(0) / w.sum()
            dets.append((float(scores[k, j]), j + 1, box))
    dets.sort(key=lambda d: -d[0])
    return dets[:max_detections]


def variant_box(box, scale_yx, flip, scaled_w):
    """A box in original pixels -> the variant's canvas (scaled, then mirrored in the scaled image)."""
    y0, x0, y1, x1 = np.asarray(box, np.float64) * np.array([scale_yx[0], scale_yx[1]] * 2)
    return np.array([y0, scaled_w - x1, y1, scaled_w - x0] if flip else [y0, x0, y1, x1])
