"""The keypoint branch in the detector: losses (person RoIs only), detections, bindings and errors."""
import numpy as np
import pytest

from rethink_tf.utils.validate import ConfigError


@pytest.fixture(scope="module")
def run(make_tiny_model, make_batch):
    model = make_tiny_model(3, keypoints=True, mask=False, sampling_seed=1)
    batch = make_batch(keypoints=True)
    batch.pop("gt_masks")
    return model, batch


def test_keypoint_loss_is_trained_on_person_rois_only(run):
    model, batch = run
    losses = {k: float(v) for k, v in model(batch, training=True).items()}
    assert set(losses) == {"rpn_objectness", "rpn_box", "roi_class", "roi_box", "keypoint"}
    # a fresh head predicts a near-uniform heatmap: CE about log(56^2)
    assert abs(losses["keypoint"] - np.log(56 * 56)) < 1.0
    # no person (class 1) among the gt: no keypoint RoI, loss 0; nor without any labeled keypoint
    no_person = {**batch, "gt_classes": np.where(batch["gt_classes"] == 1, 2, batch["gt_classes"])}
    assert float(model(no_person, training=True)["keypoint"]) == 0.0
    unlabeled = {**batch, "gt_keypoints": batch["gt_keypoints"] * np.array([1, 1, 0], np.float32)}
    assert float(model(unlabeled, training=True)["keypoint"]) == 0.0


def test_person_class_binding_selects_the_rois(make_tiny_model, run):
    model, batch = run
    bound = make_tiny_model(3, {"build_keypoint_branch.person_class": 3}, keypoints=True, mask=False)
    assert bound.roi_heads.branches["keypoint"].person_class == 3
    branch = model.roi_heads.branches["keypoint"]
    branch.person_class = 3  # the fixture's model, built already (a second build costs seconds)
    try:
        assert float(model(batch, training=True)["keypoint"]) > 0
        only_class_1 = {**batch, "gt_classes": np.where(batch["gt_classes"] == 3, 1, batch["gt_classes"])}
        assert float(model(only_class_1, training=True)["keypoint"]) == 0.0
    finally:
        branch.person_class = 1


def test_detections_carry_keypoints_in_original_pixels(run):
    model, batch = run
    det = model({"images": batch["images"], "image_info": batch["image_info"]}, training=False)
    assert model.has_keypoints and not model.has_masks
    assert tuple(det["detection_keypoints"].shape) == (2, 20, 17, 3)
    assert "detection_keypoint_logits" not in det
    boxes, kp, num = det["detection_boxes"].numpy(), det["detection_keypoints"].numpy(), det["num_detections"].numpy()
    assert num.min() > 0
    for b in range(2):  # Detectron's decoding puts every point inside its (original-pixel) box
        n = num[b]
        x, y = kp[b, :n, :, 0], kp[b, :n, :, 1]
        assert np.all(x >= boxes[b, :n, None, 1] - 1e-3) and np.all(x <= boxes[b, :n, None, 3] + 1e-3)
        assert np.all(y >= boxes[b, :n, None, 0] - 1e-3) and np.all(y <= boxes[b, :n, None, 2] + 1e-3)
        assert np.all(kp[b, n:] == 0)


def test_keypoint_errors_name_the_binding(make_tiny_model, run):
    model, batch = run
    with pytest.raises(ValueError, match="gt_keypoints"):
        model({k: v for k, v in batch.items() if k != "gt_keypoints"}, training=True)
    with pytest.raises(ConfigError, match="build_keypoint_branch.person_class"):
        make_tiny_model(1, {"build_keypoint_branch.person_class": 2}, keypoints=True)
    with pytest.raises(ValueError, match="build_keypoint_branch.num_keypoints"):
        model({**batch, "gt_keypoints": batch["gt_keypoints"][:, :, :5]}, training=True)
