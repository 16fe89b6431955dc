"""VOC mAP: a hand-worked case and the devkit's published behaviour (duplicates, difficult, ties, IoU = 0.5,
a class without ground truth, the +1 pixel convention, both interpolations)."""

import numpy as np
import pytest

from rethink_tf.data.sources import coco_from_dict
from rethink_tf.evaluation import voc_evaluator as voc

# Devkit-frame boxes (xmin, ymin, xmax, ymax), inclusive pixels: [1, 1, 10, 10] is 10 x 10 = 100 pixels.
A = [1, 1, 10, 10]


def test_devkit_iou_counts_pixels_inclusively():
    assert voc.devkit_iou(A, [A])[0] == 1.0
    assert voc.devkit_iou([5, 5, 5, 5], [[5, 5, 5, 5]])[0] == 1.0  # a one-pixel box has area 1, not 0
    assert voc.devkit_iou(A, [[11, 1, 20, 10]])[0] == 0.0  # side by side: no shared pixel column
    # one shared column: intersection 1 x 10 = 10, union 100 + 100 - 10 = 190
    assert voc.devkit_iou(A, [[10, 1, 19, 10]])[0] == pytest.approx(10 / 190)
    assert voc.devkit_iou(A, np.zeros((0, 4))).shape == (0,)


def _gt(per_image):
    return {i: (np.asarray([b for b, _ in v], np.float64), np.asarray([d for _, d in v], bool))
            for i, v in per_image.items()}


def test_hand_worked_case():
    # Class with 3 non-difficult boxes (images 1, 2) and one difficult box (image 2).
    truth = _gt({1: [(A, False), ([21, 21, 30, 30], False)],
                 2: [(A, False), ([41, 41, 50, 50], True)]})
    dets = [  # (image, score, box)
        (1, 0.9, A),                    # IoU 1 with image 1's A -> TP
        (1, 0.8, A),                    # same box again -> duplicate -> FP
        (2, 0.7, [41, 41, 50, 50]),     # the difficult box -> neither TP nor FP
        (2, 0.6, [1, 1, 10, 5]),        # inter 10*5 = 50, union 100 + 50 - 50 = 100: IoU 0.5 exactly -> TP
        (1, 0.5, [100, 100, 110, 110]),  # overlaps nothing -> FP
    ]
    tp, fp, npos = voc.match_detections([d[0] for d in dets], [d[1] for d in dets], [d[2] for d in dets], truth)
    assert npos == 3
    np.testing.assert_array_equal(tp, [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(fp, [0, 1, 0, 0, 1])
    recall, precision = voc.precision_recall(tp, fp, npos)
    # cumulative TP 1 1 1 2 2, FP 0 1 1 1 2 -> recall 1/3 1/3 1/3 2/3 2/3, precision 1 1/2 1/2 2/3 1/2
    np.testing.assert_allclose(recall, [1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(precision, [1, 1 / 2, 1 / 2, 2 / 3, 1 / 2])
    # All-point: envelope (max to the right) is 1 up to recall 1/3 and 2/3 up to 2/3, 0 after:
    # AP = (1/3 - 0) * 1 + (2/3 - 1/3) * 2/3 + (1 - 2/3) * 0 = 1/3 + 2/9 = 5/9.
    assert voc.average_precision(recall, precision) == pytest.approx(5 / 9)
    # 11-point: t = 0, .1, .2, .3 -> best precision at recall >= t is 1; t = .4, .5, .6 -> 2/3 (the
    # points at recall 2/3); t = .7 ... 1 -> no point, 0. AP = (4 * 1 + 3 * 2/3) / 11 = 6/11.
    assert voc.average_precision(recall, precision, use_07_metric=True) == pytest.approx(6 / 11)


def test_duplicates_are_not_reassigned_to_an_unmatched_box():
    # Two identical boxes: both detections take the first (largest IoU, first on ties); the second is a
    # duplicate (FP) although the other box is still free, as in VOCevaldet.m.
    truth = _gt({7: [(A, False), (A, False)]})
    tp, fp, npos = voc.match_detections([7, 7], [0.9, 0.8], [A, A], truth)
    assert (tp.tolist(), fp.tolist(), npos) == ([1, 0], [0, 1], 2)
    # recall 1/2 1/2, precision 1 1/2 -> AP = 1/2 * 1 = 0.5
    assert voc.average_precision(*voc.precision_recall(tp, fp, npos)) == pytest.approx(0.5)


def test_a_detection_on_a_difficult_box_is_ignored_even_if_it_also_fits_another():
    # Largest IoU is with the difficult box (1.0); the non-difficult one (IoU 0.6) is not considered.
    truth = _gt({3: [(A, True), ([1, 1, 10, 6], False)]})  # 60 of A's 100 pixels: IoU 60 / 100 = 0.6
    tp, fp, npos = voc.match_detections([3], [0.9], [A], truth)
    assert (tp.tolist(), fp.tolist(), npos) == ([0], [0], 1)
    # Difficult boxes do not count as positives: a class whose only box is difficult has no AP.
    assert voc.match_detections([3], [0.9], [A], _gt({3: [(A, True)]}))[2] == 0


def test_iou_just_below_one_half_is_a_false_positive():
    truth = _gt({1: [(A, False)]})
    tp, fp, _ = voc.match_detections([1], [0.9], [[1, 1, 10, 4]], truth)  # 40 / 100 = 0.4
    assert (tp.tolist(), fp.tolist()) == ([0], [1])
    tp, fp, _ = voc.match_detections([1], [0.9], [[1, 1, 9, 5]], truth)  # 45 / 100 = 0.45
    assert (tp.tolist(), fp.tolist()) == ([0], [1])


def test_equal_scores_keep_the_input_order():
    truth = _gt({1: [(A, False)]})
    miss = [200, 200, 210, 210]
    # Hit first: precision 1 at recall 1 -> AP 1. Miss first: precision 0 then 1/2 at recall 1 -> AP 1/2.
    for boxes, expected in (([A, miss], 1.0), ([miss, A], 0.5)):
        tp, fp, npos = voc.match_detections([1, 1], [0.5, 0.5], boxes, truth)
        assert voc.average_precision(*voc.precision_recall(tp, fp, npos)) == pytest.approx(expected)


def test_eleven_point_thresholds_are_exact_tenths():
    # Recall exactly 3/10 reaches the 0.3 point: t = 0, .1, .2, .3 -> 4 points of precision 1.
    assert voc.average_precision([0.3], [1.0], use_07_metric=True) == pytest.approx(4 / 11)
    assert voc.average_precision([1.0], [1.0], use_07_metric=True) == pytest.approx(1.0)
    assert voc.average_precision(np.zeros(0), np.zeros(0)) == 0.0  # no detections


CATEGORIES = [{"id": 1, "name": "aeroplane"}, {"id": 2, "name": "bicycle"}, {"id": 3, "name": "bird"}]


def _coco_gt():
    # Continuous boxes [x, y, w, h]: devkit [1, 1, 10, 10] is x = 0, y = 0, w = h = 10.
    boxes = [(1, 1, [0, 0, 10, 10], 0), (2, 1, [20, 20, 10, 10], 0), (3, 1, [0, 0, 10, 10], 0),
             (4, 1, [40, 40, 10, 10], 1),
             (5, 3, [0, 0, 30, 30], 0)]  # "bird": one box, never detected -> AP 0 (counts in the mean)
    anns = [{"id": i, "image_id": 1 if i <= 2 else 2, "category_id": c, "bbox": b, "area": b[2] * b[3],
             "iscrowd": d, "difficult": d} for i, c, b, d in boxes]
    anns[-1]["image_id"] = 1
    images = [{"id": i, "height": 120, "width": 120} for i in (1, 2)]
    return coco_from_dict({"images": images, "annotations": anns, "categories": CATEGORIES})


def _model_detections():
    """The hand-worked detections (class "aeroplane", label 1) plus two of "bicycle" (no ground truth),
    as the model returns them: yxyx continuous boxes, padded slots, a padding image."""
    per_image = {1: [(0.9, [0, 0, 10, 10], 1), (0.8, [0, 0, 10, 10], 1), (0.5, [99, 99, 110, 110], 1),
                     (0.95, [0, 0, 10, 10], 2)],
                 2: [(0.7, [40, 40, 50, 50], 1), (0.6, [0, 0, 10, 5], 1), (0.4, [0, 0, 9, 9], 2)]}
    d = 6
    det = {"detection_boxes": np.zeros((3, d, 4), np.float32), "detection_scores": np.zeros((3, d), np.float32),
           "detection_classes": np.zeros((3, d), np.int32), "num_detections": np.zeros((3,), np.int32)}
    for row, image_id in enumerate((1, 2)):
        for j, (score, (x0, y0, x1, y1), label) in enumerate(per_image[image_id]):
            det["detection_boxes"][row, j] = [y0, x0, y1, x1]
            det["detection_scores"][row, j] = score
            det["detection_classes"][row, j] = label
        det["num_detections"][row] = len(per_image[image_id]) + 1  # an empty (class 0) slot inside num
    det["num_detections"][2] = 2  # padding image: ignored
    return det, np.array([1, 2, -1]), np.tile([[120.0, 120.0]], (3, 4, 1))


def test_voc_evaluator_end_to_end():
    evaluator = voc.VocEvaluator(_coco_gt(), np.array([0, 1, 2, 3]))
    det, ids, info = _model_detections()
    evaluator.update(det, ids, info)
    metrics = evaluator.evaluate()
    # aeroplane 5/9 (all-point), 6/11 (11-point); bird 0; bicycle has no ground truth: -1, not averaged.
    assert metrics["voc"]["mAP"] == pytest.approx(100 * (5 / 9 + 0) / 2)
    assert metrics["voc"]["mAP_07"] == pytest.approx(100 * (6 / 11 + 0) / 2)
    per = evaluator.report["per_category"]
    assert per[2][:3] == (-1.0, -1.0, 0) and per[2][3] == 2
    assert per[3] == (0.0, 0.0, 1, 0)
    text = evaluator.report_text()
    assert "aeroplane" in text and "55.56" in text and "54.55" in text
    assert evaluator.image_ids == {1, 2}
    evaluator.reset()
    with pytest.raises(ValueError, match="no images"):
        evaluator.evaluate()
    evaluator.update(det, np.array([1, 9, -1]), info)
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluator.evaluate()


def test_only_the_evaluated_images_count():
    evaluator = voc.VocEvaluator(_coco_gt(), np.array([0, 1, 2, 3]))
    det, _, info = _model_detections()
    evaluator.update({k: v[:1] for k, v in det.items()}, np.array([1]), info[:1])
    # Image 1 alone: aeroplane boxes A and [21..30]; dets 0.9 TP, 0.8 FP, 0.5 FP -> recall 1/2 1/2 1/2,
    # precision 1 1/2 1/3 -> AP 1/2; bird (box in image 1) 0 -> mAP 1/4.
    assert evaluator.evaluate()["voc"]["mAP"] == pytest.approx(25.0)
