"""COCO evaluation: model detections -> COCO results json -> pycocotools bbox / segm / keypoints metrics.

Results are in the dataset's terms: boxes [x, y, w, h] in original image pixels, COCO category ids
(through the source's label -> category id mapping), masks as RLE of the pasted full-image masks,
keypoints as [x1, y1, 1, x2, y2, 1, ...] in original pixels (visibility 1 and the box score as the
instance score, as Detectron submits them: KRCNN.KEYPOINT_CONFIDENCE = "bbox").
Metrics are pycocotools' COCOeval summaries (AP, AP50, AP75, APs, APm, APl; keypoints: AP, AP50, AP75,
APm, APl), in percent like the paper's tables.
"""

from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np
from pycocotools import mask as mask_api
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
KEYPOINT_METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl")  # COCOeval's first 5 keypoint stats
IOU_TYPES = ("bbox", "segm", "keypoints")


def encode_mask(mask: np.ndarray) -> dict:
    """{0,1} mask [h, w] -> COCO RLE dict with a str `counts` (json-serializable)."""
    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def detections_to_results(detections: dict, image_ids, image_info, label_to_category_id,
                          include_masks: bool, mask_threshold: float = 0.5,
                          include_keypoints: bool = False, mask_paste: str = "detectron") -> list[dict]:
    """Converts one batch of model detections to COCO result dicts.

    Args:
      detections: numpy dict with `detection_boxes` [B, D, 4] yxyx original pixels,
        `detection_scores` [B, D], `detection_classes` [B, D] contiguous labels (0 = empty),
        `num_detections` [B], and `detection_masks` [B, D, m, m] probabilities when `include_masks`.
      image_ids: int [B]; entries < 0 are padding images and are skipped.
      image_info: float [B, 4, 2]; row 0 is the original (h, w).
      label_to_category_id: int array [K + 1] (entry 0 unused) mapping labels to category ids.
      include_masks: also emit `segmentation` RLEs (masks pasted at `mask_threshold`).
      include_keypoints: also emit `keypoints` from `detection_keypoints` [B, D, K, 3] (x, y, score)
        original pixels.
      mask_paste: the model's paste convention ("detectron" / "torchvision"; build_postprocessor.mask_paste).
    Returns:
      list of {"image_id", "category_id", "bbox", "score"[, "segmentation"][, "keypoints"]}.
    """
    if include_keypoints and "detection_keypoints" not in detections:
        raise ValueError("keypoint evaluation needs detections with 'detection_keypoints' (a model with the "
                         "keypoint branch, build_model.keypoints = True; test-time augmentation has none)")
    from rethink_tf.ops.masks import paste_function  # ops is heavy only at import of TF; numpy here

    paste_masks = paste_function(mask_paste)

    lookup = np.asarray(label_to_category_id, np.int64)
    results = []
    for i, image_id in enumerate(np.asarray(image_ids).reshape(-1)):
        if image_id < 0:
            continue
        n = int(detections["num_detections"][i])
        classes = np.asarray(detections["detection_classes"][i][:n], np.int64)
        keep = classes > 0
        if np.any(classes >= len(lookup)):
            raise ValueError(f"detection class {classes.max()} outside the label map (K = {len(lookup) - 1})")
        boxes = np.asarray(detections["detection_boxes"][i][:n], np.float64)[keep]
        keypoints = (np.asarray(detections["detection_keypoints"][i][:n], np.float64)[keep]
                     if include_keypoints else None)
        scores = np.asarray(detections["detection_scores"][i][:n], np.float64)[keep]
        classes = classes[keep]
        masks = None
        if include_masks:
            h, w = (int(round(v)) for v in np.asarray(image_info[i])[0])
            masks = paste_masks(np.asarray(detections["detection_masks"][i][:n])[keep], boxes, (h, w),
                                threshold=mask_threshold)
        for j in range(len(classes)):
            y1, x1, y2, x2 = boxes[j]
            result = {
                "image_id": int(image_id),
                "category_id": int(lookup[classes[j]]),
                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                "score": float(scores[j]),
            }
            if masks is not None:
                result["segmentation"] = encode_mask(masks[j])
            if keypoints is not None:
                points = np.concatenate([keypoints[j, :, :2], np.ones_like(keypoints[j, :, :1])], axis=1)
                result["keypoints"] = [float(v) for v in points.reshape(-1)]
            results.append(result)
    return results


def _quiet(fn, *args, out=None):
    with contextlib.redirect_stdout(out if out is not None else io.StringIO()):
        return fn(*args)


def per_category_ap(evaluator: COCOeval) -> dict[int, float]:
    """{category id: AP in percent} of an accumulated COCOeval (IoU 0.50:0.95, all areas, 100 dets);
    -1 for a category without ground truth among the evaluated images."""
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall points, categories, areas, max dets]
    out = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        out[int(category_id)] = float(np.mean(values)) * 100.0 if values.size else -1.0
    return out


def coco_metrics(coco_gt: COCO, results: list[dict], iou_type: str, image_ids=None,
                 report: dict | None = None) -> dict[str, float]:
    """Runs COCOeval; returns {AP, AP50, AP75, APs, APm, APl} in percent (keypoints: KEYPOINT_METRIC_NAMES).

    `image_ids` restricts the evaluation to the images that were run (default: all of `coco_gt`).
    With no results at all every metric is 0. A `report` dict receives "table" (COCOeval's 12-line
    summary as it prints it; empty without results) and "per_category" ({category id: AP}).
    """
    if report is not None:
        report.update(table="", per_category={})
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    names = KEYPOINT_METRIC_NAMES if iou_type == "keypoints" else METRIC_NAMES
    if iou_type == "segm":
        results = [{k: v for k, v in r.items() if k != "keypoints"} for r in results if "segmentation" in r]
    elif iou_type == "keypoints":
        # Without bbox / segmentation, loadRes derives each result's area from its keypoints' extent
        # (what Detectron's keypoint submissions get).
        results = [{k: v for k, v in r.items() if k not in ("bbox", "segmentation")}
                   for r in results if "keypoints" in r]
    else:
        results = [{k: v for k, v in r.items() if k not in ("segmentation", "keypoints")} for r in results]
    if not results:
        return {k: 0.0 for k in names}
    coco_dt = _quiet(coco_gt.loadRes, results)
    evaluator = COCOeval(coco_gt, coco_dt, iou_type)
    if image_ids is not None:
        evaluator.params.imgIds = sorted(int(i) for i in image_ids)
    _quiet(evaluator.evaluate)
    _quiet(evaluator.accumulate)
    table = io.StringIO()
    _quiet(evaluator.summarize, out=table)
    if report is not None:
        report.update(table=table.getvalue(), per_category=per_category_ap(evaluator))
    # COCOeval reports -1 where a size range has no ground truth; keep it as -1 (not averaged in).
    return {name: float(v) * 100.0 if v >= 0 else -1.0 for name, v in zip(names, evaluator.stats[:len(names)])}


class CocoEvaluator:
    """Accumulates detections over an evaluation pass, then scores them with pycocotools.

    Args:
      coco_gt: the source's `coco_gt()` (original coordinates, original category ids).
      label_to_category_id: int array [K + 1] (the source's `label_to_category_id_array`).
      include_masks: evaluate masks (segm) too.
      include_keypoints: evaluate keypoints too (the detections' `detection_keypoints`; coco_gt with
        keypoint annotations, e.g. person_keypoints_val2017.json).
      mask_threshold, mask_paste: how masks are pasted (rethink_tf.ops.masks.paste_function).
    """

    def __init__(self, coco_gt: COCO, label_to_category_id, include_masks: bool, mask_threshold: float = 0.5,
                 include_keypoints: bool = False, mask_paste: str = "detectron"):
        self.coco_gt = coco_gt
        self.mask_paste = mask_paste
        self.label_to_category_id = np.asarray(label_to_category_id, np.int64)
        self.include_masks = include_masks
        self.include_keypoints = include_keypoints
        self.mask_threshold = mask_threshold
        self.reset()

    def reset(self):
        self.results: list[dict] = []
        self.image_ids: set[int] = set()
        self.reports: dict[str, dict] = {}  # {"bbox" / "segm" / "keypoints": coco_metrics' report} of the last evaluate

    def update(self, detections: dict, image_ids, image_info):
        """Adds one batch (numpy arrays; see `detections_to_results`)."""
        image_ids = np.asarray(image_ids).reshape(-1)
        self.image_ids.update(int(i) for i in image_ids if i >= 0)
        self.results += detections_to_results(detections, image_ids, image_info, self.label_to_category_id,
                                              self.include_masks, self.mask_threshold, self.include_keypoints,
                                              self.mask_paste)

    def _check_image_ids(self):
        """Refuses an empty pass and image ids the ground truth does not have (naming the evaluator)."""
        name = type(self).__name__
        if not self.image_ids:
            raise ValueError(f"{name}.evaluate: no images were evaluated")
        unknown = self.image_ids - set(self.coco_gt.getImgIds())
        if unknown:
            raise ValueError(f"{name}: image ids not in the ground truth: {sorted(unknown)[:5]}")

    def write_results(self, path: str):
        """Writes the COCO results json (a list of result dicts) to `path`."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            json.dump(self.results, f)

    def evaluate(self) -> dict[str, dict[str, float]]:
        """{"bbox": {AP, ...}[, "segm": {AP, ...}][, "keypoints": {AP, ...}]} over the images seen since `reset`."""
        self._check_image_ids()
        kinds = (("bbox",) + (("segm",) if self.include_masks else ())
                 + (("keypoints",) if self.include_keypoints else ()))
        self.reports = {kind: {} for kind in kinds}
        return {kind: coco_metrics(self.coco_gt, self.results, kind, self.image_ids, report)
                for kind, report in self.reports.items()}

    def report_text(self) -> str:
        """The last `evaluate` as a person reads it: per kind, COCOeval's table and the AP per category."""
        names = {c["id"]: c["name"] for c in self.coco_gt.loadCats(self.coco_gt.getCatIds())}
        blocks = []
        for kind, report in self.reports.items():
            per_category = "  ".join(f"{names.get(i, i)} {ap:.1f}" for i, ap in report["per_category"].items())
            blocks.append(f"{kind}:\n{report['table'].rstrip() or '  (no detections)'}\n"
                          f"  AP per category: {per_category or '-'}")
        return "\n".join(blocks)


def flatten_metrics(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """{"bbox": {"AP": x}} -> {"bbox/AP": x} (TensorBoard tags)."""
    return {f"{kind}/{name}": value for kind, values in metrics.items() for name, value in values.items()}


def append_metrics_jsonl(path: str, record: dict) -> None:
    """Appends one JSON object (one evaluation) as a line of `path`."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_metrics_jsonl(path: str) -> list[dict]:
    """All records of a metrics.jsonl, in file order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
