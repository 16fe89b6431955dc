"""PASCAL VOC detection metric: per-class AP at IoU 0.5, averaged over classes (mAP), in percent.

Follows the VOC devkit's `VOCevaldet.m` / `VOCap.m` (VOC2007 11-point and VOC2010+ all-point areas):

- Per class, the detections of all images are sorted by score, highest first. Equal scores keep the
  order the detections were added in (the devkit's MATLAB `sort` is stable; py-faster-rcnn's
  `np.argsort` is not).
- Each detection is compared with every ground-truth box of its class in its image and taken to the one
  of largest IoU (the first one on equal IoU). With IoU >= 0.5 (the devkit's `>=`; py-faster-rcnn has
  `>`): a "difficult" box -> neither TP nor FP; a box already matched -> FP (duplicate; the detection is
  not re-assigned to another box); otherwise TP. Below 0.5, or no box of the class: FP.
- Recall = TP / (number of non-difficult boxes); precision = TP / (TP + FP) (0 while both are 0).
- Boxes are compared in the devkit's inclusive 1-based pixel coordinates with its +1 width convention:
  a continuous box (x0, y0, x1, y1) of this package (detectron2's reading of VOC: the XML's xmin - 1,
  ymin - 1, xmax, ymax) is (x0 + 1, y0 + 1, x1, y1) in the devkit's frame.
- A class without non-difficult ground truth among the evaluated images has no AP (the devkit divides
  by zero): it is reported as -1 and left out of the mean, as COCOeval's -1.

Ground truth comes from the source's `coco_gt()` (VOC sources: "iscrowd" = difficult), detections from
the model through `coco_evaluator.detections_to_results`; `VocEvaluator` has CocoEvaluator's interface.
"""

from __future__ import annotations

import collections

import numpy as np

from rethink_tf.evaluation import coco_evaluator

METRIC_NAMES = ("mAP", "mAP_07")  # all-point (VOC2010+), 11-point (VOC2007); IoU 0.5, percent
IOU_THRESHOLD = 0.5


def devkit_iou(box, boxes):
    """IoU of one box [4] with boxes [n, 4], all (xmin, ymin, xmax, ymax) inclusive pixel indices
    (widths xmax - xmin + 1, as the devkit); 0 where they do not overlap. float64 [n]."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    iw = np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]) + 1.0
    ih = np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]) + 1.0
    inter = iw * ih
    union = ((box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
             + (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0) - inter)
    return np.where((iw > 0) & (ih > 0), inter / np.where(union > 0, union, 1.0), 0.0)


def match_detections(image_ids, scores, boxes, ground_truth, iou_threshold=IOU_THRESHOLD):
    """Marks the detections of one class TP / FP as the devkit does (module docstring).

    Args:
      image_ids: [D] image of each detection.
      scores: [D] confidences.
      boxes: [D, 4] devkit-frame (xmin, ymin, xmax, ymax).
      ground_truth: {image_id: (boxes [n, 4] devkit frame, difficult bool [n])} of this class; images
        without boxes of the class may be absent.
    Returns:
      (tp [D], fp [D]) float64 0/1 in descending-score order, npos (number of non-difficult boxes).
    """
    scores = np.asarray(scores, np.float64).reshape(-1)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-scores, kind="stable")
    npos = int(sum(int(np.sum(~np.asarray(d, bool))) for _, d in ground_truth.values()))
    matched = {i: np.zeros(len(d), bool) for i, (_, d) in ground_truth.items()}
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for rank, d in enumerate(order):
        image_id = image_ids[d]
        gt_boxes, difficult = ground_truth.get(image_id, (np.zeros((0, 4)), np.zeros(0, bool)))
        overlaps = devkit_iou(boxes[d], gt_boxes)
        if overlaps.size == 0 or overlaps.max() < iou_threshold or not np.any(overlaps > 0):
            fp[rank] = 1.0
            continue
        j = int(np.argmax(overlaps))  # first of equal maxima, as the devkit's strict `ov > ovmax`
        if difficult[j]:
            continue
        if matched[image_id][j]:
            fp[rank] = 1.0
        else:
            tp[rank] = 1.0
            matched[image_id][j] = True
    return tp, fp, npos


def precision_recall(tp, fp, npos):
    """Cumulative (recall [D], precision [D]) of TP / FP flags in score order; recall is NaN without npos."""
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / npos if npos > 0 else np.full(tp.shape, np.nan)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return recall, precision


def average_precision(recall, precision, use_07_metric=False):
    """Area under the precision/recall curve, in [0, 1].

    use_07_metric: VOC2007's 11-point mean of the best precision at recall >= 0, 0.1, ..., 1 (thresholds
      taken as exact tenths: the devkit's `0:0.1:1` accumulates 0.1 and makes 0.3 slightly larger, which
      only matters when a recall lands exactly on it). Else VOC2010+'s all-point area: precision made
      monotone from the right, summed over the recall steps.
    """
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if use_07_metric:
        points = [precision[recall >= k / 10.0] for k in range(11)]
        return float(sum(p.max() if p.size else 0.0 for p in points) / 11.0)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def to_devkit_boxes(xywh):
    """Continuous [x, y, w, h] [n, 4] -> devkit (xmin, ymin, xmax, ymax) = (x + 1, y + 1, x + w, y + h)."""
    b = np.asarray(xywh, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0] + 1.0, b[:, 1] + 1.0, b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)


def voc_metrics(coco_gt, results, image_ids=None, iou_threshold=IOU_THRESHOLD, report=None):
    """VOC mAP of COCO-format `results` against `coco_gt` (difficult = the annotation's "difficult" key,
    else its "iscrowd"), over `image_ids` (default: every image of coco_gt).

    Returns {"mAP": all-point, "mAP_07": 11-point}, percent. A `report` dict receives "per_category"
    ({category id: (AP, AP_07, number of non-difficult boxes, number of detections)}, AP -1 when undefined).
    """
    ids = set(coco_gt.getImgIds()) if image_ids is None else {int(i) for i in image_ids}
    gt = collections.defaultdict(lambda: collections.defaultdict(list))  # category -> image -> [(box, diff)]
    for a in coco_gt.dataset["annotations"]:
        if a["image_id"] in ids:
            difficult = bool(a.get("difficult", a.get("iscrowd", 0)))
            gt[a["category_id"]][a["image_id"]].append((to_devkit_boxes(a["bbox"])[0], difficult))
    dets = collections.defaultdict(list)
    for r in results:
        if r["image_id"] in ids:
            dets[r["category_id"]].append(r)
    per_category = {}
    for category_id in sorted(coco_gt.getCatIds()):
        truth = {i: (np.stack([b for b, _ in v]), np.array([d for _, d in v], bool))
                 for i, v in gt[category_id].items()}
        found = dets[category_id]
        tp, fp, npos = match_detections([r["image_id"] for r in found], [r["score"] for r in found],
                                        to_devkit_boxes([r["bbox"] for r in found]), truth, iou_threshold)
        if npos == 0:
            per_category[category_id] = (-1.0, -1.0, 0, len(found))
            continue
        recall, precision = precision_recall(tp, fp, npos)
        per_category[category_id] = (100.0 * average_precision(recall, precision),
                                     100.0 * average_precision(recall, precision, use_07_metric=True),
                                     npos, len(found))
    if report is not None:
        report["per_category"] = per_category
    defined = [v for v in per_category.values() if v[0] >= 0]
    if not defined:
        return {name: -1.0 for name in METRIC_NAMES}
    return {"mAP": float(np.mean([v[0] for v in defined])), "mAP_07": float(np.mean([v[1] for v in defined]))}


class VocEvaluator(coco_evaluator.CocoEvaluator):
    """Accumulates detections over an evaluation pass (CocoEvaluator's reset / update / write_results,
    boxes only), then scores them with the VOC metric: `evaluate` returns {"voc": {"mAP": ..., "mAP_07":
    ...}} (TensorBoard tags voc/mAP, ...), `report_text` the AP per class.

    Args:
      coco_gt: the source's `coco_gt()` (original coordinates and category ids; difficult objects flagged).
      label_to_category_id: int array [K + 1] (the source's `label_to_category_id_array`).
      iou_threshold: 0.5 for VOC.
    """

    def __init__(self, coco_gt, label_to_category_id, iou_threshold=IOU_THRESHOLD):
        self.iou_threshold = iou_threshold
        super().__init__(coco_gt, label_to_category_id, include_masks=False)

    def reset(self):
        super().reset()
        self.report: dict = {}

    def evaluate(self) -> dict[str, dict[str, float]]:
        self._check_image_ids()
        self.report = {}
        return {"voc": voc_metrics(self.coco_gt, self.results, self.image_ids, self.iou_threshold, self.report)}

    def report_text(self) -> str:
        """Per class: AP (all-point), AP (11-point), non-difficult boxes, detections."""
        names = {c["id"]: c["name"] for c in self.coco_gt.loadCats(self.coco_gt.getCatIds())}
        lines = [f"VOC AP at IoU {self.iou_threshold} (all-point / 11-point), non-difficult boxes, detections:"]
        for category_id, (ap, ap07, npos, ndet) in self.report.get("per_category", {}).items():
            text = "   -   /   -  " if ap < 0 else f"{ap:6.2f} / {ap07:6.2f}"
            lines.append(f"  {str(names.get(category_id, category_id)):>14s} {text}  {npos:6d} {ndet:7d}")
        return "\n".join(lines)
