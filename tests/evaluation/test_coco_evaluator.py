"""COCO evaluation: GT as detections scores AP 100, a hand-worked case, results json accepted by loadRes."""

import contextlib
import io
import json
import os

import numpy as np
import pytest
from pycocotools.coco import COCO

from rethink_tf.evaluation import coco_evaluator

# Non-contiguous category ids, as COCO's: labels 1, 2, 3 <-> ids 3, 7, 90.
CATEGORIES = [{"id": 3, "name": "car"}, {"id": 7, "name": "train"}, {"id": 90, "name": "toothbrush"}]
LABEL_TO_ID = np.array([0, 3, 7, 90])
# Ground truth: axis-aligned rectangles with integer corners (x, y, w, h), masks = the rectangles.
GT = {
    11: {"size": (60, 80), "objects": [((10, 5, 20, 30), 3), ((40, 20, 30, 25), 7)]},
    12: {"size": (50, 50), "objects": [((5, 5, 40, 40), 90), ((20, 10, 6, 8), 3)]},
}


def _gt_coco():
    images, anns = [], []
    for image_id, spec in GT.items():
        h, w = spec["size"]
        images.append({"id": image_id, "height": h, "width": w, "file_name": f"{image_id}.png"})
        for (x, y, bw, bh), cat in spec["objects"]:
            poly = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat, "bbox": [x, y, bw, bh],
                         "area": bw * bh, "iscrowd": 0, "segmentation": [poly]})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": CATEGORIES}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _gt_as_detections(image_ids, d=5):
    """Model-format detections (padded to d slots) reproducing the ground truth of `image_ids`."""
    b = len(image_ids)
    det = {"detection_boxes": np.zeros((b, d, 4), np.float32), "detection_scores": np.zeros((b, d), np.float32),
           "detection_classes": np.zeros((b, d), np.int32), "num_detections": np.zeros((b,), np.int32),
           "detection_masks": np.zeros((b, d, 28, 28), np.float32)}
    info = np.zeros((b, 4, 2), np.float32)
    id_to_label = {c: l for l, c in enumerate(LABEL_TO_ID) if l}
    for i, image_id in enumerate(image_ids):
        if image_id < 0:
            continue
        spec = GT[image_id]
        info[i, 0] = spec["size"]
        for j, ((x, y, w, h), cat) in enumerate(spec["objects"]):
            det["detection_boxes"][i, j] = [y, x, y + h, x + w]
            det["detection_scores"][i, j] = 0.9 - 0.1 * j
            det["detection_classes"][i, j] = id_to_label[cat]
            det["detection_masks"][i, j] = 1.0  # the whole box: pasted back it is the rectangle
        det["num_detections"][i] = len(spec["objects"]) + 1  # one empty slot (class 0) inside num
    return det, info


def test_ground_truth_as_detections_scores_ap_100(tmp_path):
    evaluator = coco_evaluator.CocoEvaluator(_gt_coco(), LABEL_TO_ID, include_masks=True)
    det, info = _gt_as_detections([11, -1])  # second slot: a padding image
    evaluator.update(det, [11, -1], info)
    det, info = _gt_as_detections([12])
    evaluator.update(det, [12], info)
    assert evaluator.image_ids == {11, 12}
    assert len(evaluator.results) == 4  # empty slots and the padding image are dropped
    metrics = evaluator.evaluate()
    for kind in ("bbox", "segm"):
        for name in ("AP", "AP50", "AP75"):
            assert metrics[kind][name] == pytest.approx(100.0), (kind, name)
    assert set(metrics["bbox"]) == set(coco_evaluator.METRIC_NAMES)
    # What the run summary and DIR/coco_eval.txt show: COCOeval's table and the AP of each category.
    report = evaluator.report_text()
    assert report.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000") == 2
    assert report.count("AP per category: car 100.0  train 100.0  toothbrush 100.0") == 2
    assert report.index("bbox:") < report.index("segm:")


def test_results_json_is_coco_format_and_loads(tmp_path):
    gt = _gt_coco()
    evaluator = coco_evaluator.CocoEvaluator(gt, LABEL_TO_ID, include_masks=True)
    det, info = _gt_as_detections([11, 12])
    evaluator.update(det, [11, 12], info)
    path = tmp_path / "results.json"
    evaluator.write_results(str(path))
    with open(path) as f:
        results = json.load(f)
    first = results[0]
    assert first["image_id"] == 11 and first["category_id"] == 3
    assert first["bbox"] == [10.0, 5.0, 20.0, 30.0]  # x, y, w, h in original pixels
    assert first["segmentation"]["size"] == [60, 80] and isinstance(first["segmentation"]["counts"], str)
    assert {r["category_id"] for r in results} == {3, 7, 90}
    with contextlib.redirect_stdout(io.StringIO()):
        loaded = gt.loadRes(str(path))
    assert len(loaded.getAnnIds()) == 4
    assert loaded.anns[1]["area"] == pytest.approx(20 * 30)  # the pasted mask is exactly the rectangle


def _single_class_gt():
    """Image 11 only, both of its boxes relabelled to category 3 (two cars)."""
    gt = _gt_coco()
    gt.dataset["annotations"] = [dict(a, category_id=3) for a in gt.dataset["annotations"] if a["image_id"] == 11]
    gt.dataset["images"] = [i for i in gt.dataset["images"] if i["id"] == 11]
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def test_hand_worked_average_precision():
    """One class, two GT boxes, detections ranked TP (0.9), FP (0.8), TP (0.7).

    Precision/recall after each: (1, 1/2), (1/2, 1/2), (2/3, 1). COCO interpolates precision as the max at
    recall >= r over 101 recall points: r in [0, 0.5] (51 points) -> 1; r in (0.5, 1] (50 points) -> 2/3.
    The TPs are exact boxes, so every IoU threshold gives the same: AP = AP50 = AP75 = (51 + 50·2/3) / 101.
    """
    results = [
        {"image_id": 11, "category_id": 3, "bbox": [10, 5, 20, 30], "score": 0.9},
        {"image_id": 11, "category_id": 3, "bbox": [50, 40, 20, 15], "score": 0.8},  # overlaps nothing
        {"image_id": 11, "category_id": 3, "bbox": [40, 20, 30, 25], "score": 0.7},
    ]
    metrics = coco_evaluator.coco_metrics(_single_class_gt(), results, "bbox")
    expected = (51 + 50 * 2 / 3) / 101 * 100
    for name in ("AP", "AP50", "AP75"):
        assert metrics[name] == pytest.approx(expected, abs=1e-6), name


def test_per_category_ap_names_each_category():
    # One image: the car found, the train missed, no toothbrush in the image (-1: not averaged).
    det, info = _gt_as_detections([11])
    det["num_detections"][0] = 1
    report = {}
    results = coco_evaluator.detections_to_results(det, [11], info, LABEL_TO_ID, False)
    metrics = coco_evaluator.coco_metrics(_gt_coco(), results, "bbox", [11], report)
    assert report["per_category"] == {3: pytest.approx(100.0), 7: 0.0, 90: -1.0}
    assert metrics["AP"] == pytest.approx(50.0)
    assert "Average Recall" in report["table"]


def test_hand_worked_mean_over_classes():
    """AP averages over categories with ground truth in the evaluated images.

    Category 3 (cars: 20x30 in image 11, 6x8 in image 12): FP (0.8) then TP (0.7), the small car missed:
    P/R (0, 0), (1/2, 1/2) -> r <= 0.5 interpolates to 1/2, r > 0.5 to 0: AP = 51 * 0.5 / 101.
    Category 90: its one GT found: 1. Category 7: a GT and no detection: 0.
    """
    results = [
        {"image_id": 12, "category_id": 90, "bbox": [5, 5, 40, 40], "score": 0.9},
        {"image_id": 11, "category_id": 3, "bbox": [50, 40, 20, 15], "score": 0.8},
        {"image_id": 11, "category_id": 3, "bbox": [10, 5, 20, 30], "score": 0.7},
    ]
    metrics = coco_evaluator.coco_metrics(_gt_coco(), results, "bbox", image_ids=[11, 12])
    expected = (51 * 0.5 / 101 + 1.0 + 0.0) / 3 * 100
    assert metrics["AP"] == pytest.approx(expected, abs=1e-6)
    assert metrics["AP50"] == pytest.approx(expected, abs=1e-6)


def test_no_detections_scores_zero_and_unknown_image_fails():
    gt = _gt_coco()
    assert coco_evaluator.coco_metrics(gt, [], "segm")["AP"] == 0.0
    evaluator = coco_evaluator.CocoEvaluator(gt, LABEL_TO_ID, include_masks=False)
    det, info = _gt_as_detections([11])
    evaluator.update(det, [999], info)
    with pytest.raises(ValueError, match="999"):
        evaluator.evaluate()


def test_metrics_jsonl_appends(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    coco_evaluator.append_metrics_jsonl(path, {"step": 10, "bbox": {"AP": 1.0}})
    coco_evaluator.append_metrics_jsonl(path, {"step": 20, "bbox": {"AP": 2.0}})
    assert [r["step"] for r in coco_evaluator.read_metrics_jsonl(path)] == [10, 20]
    assert coco_evaluator.flatten_metrics({"bbox": {"AP": 1.0}, "segm": {"AP50": 2.0}}) == {
        "bbox/AP": 1.0, "segm/AP50": 2.0}


def test_plot_curves_against_samples_seen(tmp_path):
    from rethink_tf.evaluation import plot

    for name, aps in (("scratch", (1.0, 5.0)), ("pretrained", (4.0, 6.0))):
        run = tmp_path / name
        for step, ap in zip((10, 20), aps):
            coco_evaluator.append_metrics_jsonl(str(run / "metrics.jsonl"), {
                "step": step, "images_seen": step * 16.0, "bbox": {"AP": ap}, "segm": {"AP": ap / 2}})
    assert plot.curve(str(tmp_path / "scratch"), "segm/AP", "images") == [(160.0, 0.5), (320.0, 2.5)]
    out = plot.plot([str(tmp_path / "scratch"), str(tmp_path / "pretrained")], str(tmp_path / "ap.png"),
                    x="images")
    assert os.path.getsize(out) > 0
    with pytest.raises(ValueError, match="expected one of"):
        plot.curve(str(tmp_path / "scratch"), x="epochs")
