"""Each torchvision-convention switch against torchvision's own function (where torch is installed) or a
hand-computed value, and the gin file that sets them all. Cheap: no full model."""
import ast
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.interop import torchvision_detection
from rethink_tf.modeling.postprocess import DetectionPostProcessor
from rethink_tf.ops import anchors, proposals, roi_align
from rethink_tf.ops.masks import paste_masks_torchvision
from rethink_tf.utils.validate import ConfigError

GIN_FILE = pathlib.Path(__file__).resolve().parents[2] / "gin_configs" / "interop" / "torchvision_maskrcnn_r50_fpn.gin"


def _torch():
    return pytest.importorskip("torch", reason="torch is in the `interop` extra (pip install -e '.[interop]')")


def test_anchor_switches_by_hand():
    got = anchors.multilevel_anchors((160, 224), 2, 6, offset=0.0, round_base=True, stride_from_grid=True)
    # size 32, h / w = 0.5: h = 22.63 -> half 11.31 -> 11, w = 45.25 -> half 22.63 -> 23; centre (0, 0).
    np.testing.assert_array_equal(got[2].numpy()[:3], [[-11, -23, 11, 23], [-16, -16, 16, 16], [-23, -11, 23, 11]])
    # P6 of 160 x 224: a 3 x 4 grid, strides 160 // 3 = 53 and 224 // 4 = 56 (not 64).
    centres = (got[6].numpy()[1::3, :2] + got[6].numpy()[1::3, 2:]) / 2
    np.testing.assert_array_equal(np.unique(centres[:, 0]), [0, 53, 106])
    np.testing.assert_array_equal(np.unique(centres[:, 1]), [0, 56, 112, 168])


def test_anchor_switches_equal_torchvision_anchor_generator():
    torch = _torch()
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList
    generator = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
    canvas = (160, 224)
    features = [torch.zeros(1, 1, -(-canvas[0] // 2**l), -(-canvas[1] // 2**l)) for l in range(2, 7)]
    ref = generator(ImageList(torch.zeros(1, 3, *canvas), [canvas]), features)[0].numpy()[:, [1, 0, 3, 2]]
    got = anchors.multilevel_anchors(canvas, 2, 6, offset=0.0, round_base=True, stride_from_grid=True)
    np.testing.assert_array_equal(np.concatenate([got[l].numpy() for l in range(2, 7)]), ref)


def test_sigmoid_scored_proposals_with_a_threshold():
    anchor = {2: tf.constant([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])}
    logits = {2: tf.constant([[3.0, -1.0, -4.0]])}
    deltas = {2: tf.zeros((1, 3, 4))}
    info = tf.constant([[[64.0, 64], [64, 64], [1, 1], [0, 0]]])
    boxes, scores = proposals.generate_proposals(logits, deltas, anchor, info, 10, 4, 0.7, score="sigmoid",
                                                 score_threshold=0.2)
    np.testing.assert_allclose(scores.numpy()[0, :2], 1 / (1 + np.exp([-3.0, 1.0])), rtol=1e-6)
    assert np.isneginf(scores.numpy()[0, 2:]).all()  # sigmoid(-4) = 0.018 < 0.2, and a padded slot
    _, logit_scores = proposals.generate_proposals(logits, deltas, anchor, info, 10, 4, 0.7)
    np.testing.assert_array_equal(logit_scores.numpy()[0, :3], [3.0, -1.0, -4.0])


def test_level_mapping_equals_torchvision_level_mapper():
    torch = _torch()
    from torchvision.ops.poolers import initLevelMapper
    # Square boxes just below, at and above each level boundary (sqrt(area) = 224 * 2**k).
    sides = np.concatenate([224 * 2.0**k * (1 + np.array([-1e-5, -1e-6, -6e-7, -4e-7, -2e-7, 0, 1e-6, 1e-3]))
                            for k in (-2, -1, 0, 1)] + [[1.0, 50.0, 500.0, 900.0]]).astype(np.float32)
    boxes = np.stack([np.zeros_like(sides), np.zeros_like(sides), sides, sides], 1)
    ref = initLevelMapper(2, 5)([torch.from_numpy(boxes)]).numpy() + 2
    got = roi_align.assign_levels(boxes, 2, 5, level_mapping="torchvision").numpy()
    np.testing.assert_array_equal(got, ref)
    detectron = roi_align.assign_levels(boxes, 2, 5).numpy()
    assert (detectron != got).any()  # within ~7e-7 below a boundary torchvision goes a level up


def test_min_box_size_drops_thin_boxes_before_nms():
    boxes = tf.constant([[[[0.0, 0, 10, 10]], [[5, 5, 5.005, 20]]]])  # [B, N, K=1, 4]; box 2 is 0.005 px high
    scores = tf.constant([[[0.6], [0.9]]])
    kept = DetectionPostProcessor(min_box_size=0.01).select(boxes, scores)
    assert int(kept["num_detections"][0]) == 1 and float(kept["detection_scores"][0, 0]) == pytest.approx(0.6)
    default = DetectionPostProcessor().select(boxes, scores)
    assert int(default["num_detections"][0]) == 2


def test_paste_equals_torchvision_paste_masks_in_image():
    torch = _torch()
    from torchvision.models.detection.roi_heads import paste_masks_in_image
    rng = np.random.default_rng(0)
    masks = rng.random((40, 28, 28)).astype(np.float32)
    xy = rng.uniform(0, 200, (40, 2))
    xyxy = np.concatenate([xy, xy + rng.uniform(0.3, 60, (40, 2))], 1).astype(np.float32)
    ref = paste_masks_in_image(torch.from_numpy(masks)[:, None], torch.from_numpy(xyxy), (240, 320))[:, 0].numpy()
    got = paste_masks_torchvision(masks, xyxy[:, [1, 0, 3, 2]], (240, 320))
    np.testing.assert_allclose(got, ref, atol=2e-6)
    binary = paste_masks_torchvision(masks, xyxy[:, [1, 0, 3, 2]], (240, 320), threshold=0.5)
    np.testing.assert_array_equal(binary, (got >= 0.5).astype(np.uint8))


def test_bad_switch_values_name_the_binding():
    from rethink_tf.modeling.factory import build_model_from_bindings
    with pytest.raises(ConfigError, match="build_rpn.proposal_score"):
        build_model_from_bindings(2, {"build_rpn.proposal_score": "softmax"})
    with pytest.raises(ConfigError, match="roi_pooler.level_mapping"):
        build_model_from_bindings(2, {"roi_pooler.level_mapping": "fpn"})
    with pytest.raises(ConfigError, match="build_postprocessor.mask_paste"):
        build_model_from_bindings(2, {"build_postprocessor.mask_paste": "caffe"})


def test_gin_file_holds_the_detector_bindings():
    parsed = {}
    for line in GIN_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            parsed[key.strip()] = ast.literal_eval(value.strip())
    assert parsed == {**torchvision_detection.DETECTOR_BINDINGS, **torchvision_detection.INPUT_BINDINGS}


def test_tf_paste_equals_numpy_paste():
    from rethink_tf.ops.masks import paste_masks_torchvision_tf
    rng = np.random.default_rng(1)
    masks = rng.random((20, 28, 28)).astype(np.float32)
    yx = rng.uniform(-5, 100, (20, 2))
    boxes = np.concatenate([yx, yx + rng.uniform(0.3, 60, (20, 2))], 1).astype(np.float32)
    want = paste_masks_torchvision(masks, boxes, (120, 150))
    np.testing.assert_allclose(paste_masks_torchvision_tf(masks, boxes, (120, 150), threshold=None).numpy(), want,
                               atol=1e-6)
    np.testing.assert_array_equal(paste_masks_torchvision_tf(masks, boxes, (120, 150)).numpy(),
                                  (want >= 0.5).astype(np.uint8))
