"""COCO keypoint evaluation: the ground truth of coco_mini's person_keypoints_val2017.json, submitted as
model detections, scores keypoint AP 100; moved keypoints score less."""
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from rethink_tf.evaluation import coco_evaluator

ANNOTATIONS = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco_mini" / "annotations"
               / "person_keypoints_val2017.json")


@pytest.fixture(scope="module")
def coco_gt():
    if not ANNOTATIONS.exists():
        pytest.skip(f"{ANNOTATIONS} not present")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ANNOTATIONS))


def gt_as_detections(coco_gt, shift=0.0):
    """Model-format detections of every image (one batch), one per non-crowd person with keypoints;
    `shift` pixels added to x of every other instance's keypoints."""
    image_ids = sorted(coco_gt.getImgIds())
    per_image = [[a for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[i]))
                  if not a["iscrowd"] and a["num_keypoints"] > 0] for i in image_ids]
    b, d = len(image_ids), max(1, max(len(a) for a in per_image))
    det = {"detection_boxes": np.zeros((b, d, 4), np.float32), "detection_scores": np.zeros((b, d), np.float32),
           "detection_classes": np.zeros((b, d), np.int32), "num_detections": np.zeros((b,), np.int32),
           "detection_keypoints": np.zeros((b, d, 17, 3), np.float32)}
    info = np.zeros((b, 4, 2), np.float32)
    count = 0
    for i, (image_id, anns) in enumerate(zip(image_ids, per_image)):
        im = coco_gt.loadImgs([image_id])[0]
        info[i, 0] = im["height"], im["width"]
        for j, a in enumerate(anns):
            x, y, w, h = a["bbox"]
            det["detection_boxes"][i, j] = [y, x, y + h, x + w]
            det["detection_scores"][i, j] = 1.0
            det["detection_classes"][i, j] = 1
            kp = np.asarray(a["keypoints"], np.float32).reshape(17, 3)
            kp[:, 2] = 0.5  # a model's per-point score; the results carry visibility 1
            if count % 2:
                kp[:, 0] += shift
            det["detection_keypoints"][i, j] = kp
            count += 1
        det["num_detections"][i] = len(anns)
    return det, image_ids, info


def evaluate(coco_gt, shift=0.0):
    det, image_ids, info = gt_as_detections(coco_gt, shift)
    evaluator = coco_evaluator.CocoEvaluator(coco_gt, np.array([0, 1]), include_masks=False,
                                             include_keypoints=True)
    evaluator.update(det, image_ids, info)
    return evaluator, evaluator.evaluate()


def test_ground_truth_keypoints_score_ap_100(coco_gt, tmp_path):
    evaluator, metrics = evaluate(coco_gt)
    assert set(metrics) == {"bbox", "keypoints"}
    assert set(metrics["keypoints"]) == set(coco_evaluator.KEYPOINT_METRIC_NAMES)
    for name in ("AP", "AP50", "AP75", "APm", "APl"):
        assert metrics["keypoints"][name] == pytest.approx(100.0), name
    result = evaluator.results[0]
    assert len(result["keypoints"]) == 51 and result["keypoints"][2::3] == [1.0] * 17
    evaluator.write_results(str(tmp_path / "results.json"))  # the results json carries the keypoints
    assert all("keypoints" in r for r in json.loads((tmp_path / "results.json").read_text()))
    assert "keypoints:" in evaluator.report_text()


def test_moved_keypoints_score_less(coco_gt):
    _, metrics = evaluate(coco_gt, shift=25.0)
    assert metrics["keypoints"]["AP"] < 70.0


def test_keypoint_results_need_keypoint_detections(coco_gt):
    det, image_ids, info = gt_as_detections(coco_gt)
    det.pop("detection_keypoints")
    evaluator = coco_evaluator.CocoEvaluator(coco_gt, np.array([0, 1]), include_masks=False, include_keypoints=True)
    with pytest.raises(ValueError, match="detection_keypoints"):
        evaluator.update(det, image_ids, info)
