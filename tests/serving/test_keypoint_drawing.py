"""Keypoint skeletons in `visualize.draw_detections` (predict's PNGs, TensorBoard eval images)."""
import numpy as np

from rethink_tf.utils import visualize


def person(offset=0.0, score=5.0):
    """A stick figure's 17 COCO keypoints (x, y, score) in a 100 x 100 image."""
    xy = [(50, 10), (47, 8), (53, 8), (44, 10), (56, 10), (40, 25), (60, 25), (35, 40), (65, 40), (33, 55),
          (67, 55), (43, 60), (57, 60), (42, 75), (58, 75), (41, 90), (59, 90)]
    return np.array([[x + offset, y, score] for x, y in xy], np.float32)


def test_skeleton_is_drawn_above_the_threshold_only():
    image = np.zeros((100, 100, 3), np.uint8)
    boxes, classes, scores = np.array([[5, 30, 95, 70]], np.float32), np.array([1]), np.array([0.9])
    plain = visualize.draw_detections(image, boxes, classes, scores, min_side=None)
    with_kp = visualize.draw_detections(image, boxes, classes, scores, min_side=None, keypoints=person()[None])
    changed = np.any(with_kp != plain, axis=-1)
    # the left shin (knee 13 (42, 75) -> ankle 15 (41, 90)) is drawn, far from the box outline
    assert changed[80:86, 40:44].any()
    assert changed.sum() > 200
    low = visualize.draw_detections(image, boxes, classes, scores, min_side=None,
                                    keypoints=person(score=1.0)[None])  # below Detectron's 2.0
    np.testing.assert_array_equal(low, plain)
    # a detection under the score threshold draws no skeleton either
    hidden = visualize.draw_detections(image, boxes, classes, np.array([0.1]), min_side=None,
                                       keypoints=person()[None])
    np.testing.assert_array_equal(hidden, visualize.draw_detections(image, boxes, classes, np.array([0.1]),
                                                                    min_side=None))


def test_ground_truth_keypoints_use_visibility_and_scale_with_the_picture():
    image = np.zeros((100, 100, 3), np.uint8)
    kp = person()
    kp[:, 2] = 2.0
    kp[13:, 2] = 0.0  # legs unlabeled
    drawn = visualize.draw_ground_truth(image, np.array([[5, 30, 95, 70]]), np.array([1]), min_side=200,
                                        gt_keypoints=kp[None])
    plain = visualize.draw_ground_truth(image, np.array([[5, 30, 95, 70]]), np.array([1]), min_side=200)
    assert drawn.shape == (200, 200, 3)
    changed = np.any(drawn != plain, axis=-1)
    assert changed[2 * 45:2 * 55, 2 * 30:2 * 40].any()  # elbow -> wrist, at twice the size
    assert not changed[2 * 78:2 * 92, 2 * 38:2 * 45].any()  # no unlabeled leg


def test_tensorboard_eval_images_draw_predicted_and_true_skeletons():
    from rethink_tf.evaluation import eval_loop
    kp = person()
    batch = {"image_id": np.array([5]), "images": np.zeros((1, 128, 128, 3), np.float32),
             # original 100 x 100 image at scale 1.28 on a 128 canvas
             "image_info": np.array([[[100, 100], [128, 128], [1.28, 1.28], [0, 0]]], np.float32),
             "gt_boxes": np.array([[[6.4, 38.4, 121.6, 89.6]]], np.float32), "gt_classes": np.array([[1]])}
    detections = {"num_detections": np.array([1]), "detection_boxes": np.array([[[5, 30, 95, 70]]], np.float32),
                  "detection_classes": np.array([[1]]), "detection_scores": np.array([[0.9]], np.float32)}
    plain = eval_loop.draw_predictions(batch, detections, {1: "person"}, 1)
    gt_kp = kp * np.array([1.28, 1.28, 0], np.float32) + np.array([0, 0, 2], np.float32)  # canvas pixels, v = 2
    drawn = eval_loop.draw_predictions({**batch, "gt_keypoints": gt_kp[None, None]},
                                       {**detections, "detection_keypoints": kp[None, None]}, {1: "person"}, 1)
    assert drawn.shape == plain.shape
    half = (drawn.shape[2] - eval_loop.GAP) // 2
    changed = np.any(drawn != plain, axis=-1)[0]
    assert changed[:, :half].sum() > 200 and changed[:, half + eval_loop.GAP:].sum() > 200  # both sides
