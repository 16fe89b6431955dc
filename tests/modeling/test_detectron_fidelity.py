"""The built model's training targets and post-processing follow Detectron, with the recipe's values.

One tiny model runs one training and one inference forward on an image much smaller than its canvas
(40x56 scaled image, scale 0.5, on a 128 canvas) with a crowd region, while the ops it calls are
wrapped to record their arguments and results. The values the ops receive are checked against the
table below (rethink_tf/modeling/README.md), as are the attributes of the default (paper-size) model.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.modeling import postprocess, rpn
from rethink_tf.modeling.factory import build_model
from rethink_tf.ops import masks, nms, roi_align, roi_sampling, rpn_targets

CANVAS, SCALED, SCALE = 128, (40.0, 56.0), 0.5
CROWD = [0.0, 0.0, 40.0, 28.0]  # the left half of the image

# The values of the paper's R50-FPN GN Mask R-CNN (rethink_tf/modeling/README.md).
SPEC = dict(
    anchor_sizes=((32,), (64,), (128,), (256,), (512,)), aspect_ratios=(0.5, 1.0, 2.0), rpn_levels=[2, 3, 4, 5, 6],
    rpn_fg_iou=0.7, rpn_bg_iou=0.3, rpn_batch_size_per_image=256, rpn_positive_fraction=0.5,
    rpn_straddle_thresh=0.0, rpn_nms_iou=0.7, pre_nms_topk={True: 2000, False: 1000},
    post_nms_topk={True: 1000, False: 1000}, mask_pooled_size=14, mask_target_threshold=0.5,
    score_threshold=0.05, nms_iou=0.5, detections_per_image=100,
)
SPEC_BOX_STAGE = dict(
    coder_weights=(10.0, 10.0, 5.0, 5.0), fg_iou=0.5, num_samples=512, fg_fraction=0.25, crowd_filter_thresh=0.7,
)
SPEC_POOLERS = {"box": dict(output_size=7, sampling_ratio=2, min_level=2, max_level=5, canonical_size=224.0,
                            canonical_level=4),
                "mask": dict(output_size=14, sampling_ratio=2, min_level=2, max_level=5, canonical_size=224.0,
                             canonical_level=4)}
# Where each SPEC value lives in the built model.
SPEC_READERS = dict(
    anchor_sizes=lambda m: m.rpn.anchor_sizes, aspect_ratios=lambda m: m.rpn.aspect_ratios,
    rpn_levels=lambda m: m.rpn.levels, rpn_fg_iou=lambda m: m.rpn.fg_iou, rpn_bg_iou=lambda m: m.rpn.bg_iou,
    rpn_batch_size_per_image=lambda m: m.rpn.batch_size_per_image,
    rpn_positive_fraction=lambda m: m.rpn.positive_fraction, rpn_straddle_thresh=lambda m: m.rpn.straddle_thresh,
    rpn_nms_iou=lambda m: m.rpn.nms_iou, pre_nms_topk=lambda m: m.rpn.pre_nms_topk,
    post_nms_topk=lambda m: m.rpn.post_nms_topk,
    mask_pooled_size=lambda m: m.roi_heads.branches["mask"].pooler.output_size,
    mask_target_threshold=lambda m: m.roi_heads.branches["mask"].target_threshold,
    score_threshold=lambda m: m.postprocessor.score_threshold, nms_iou=lambda m: m.postprocessor.nms_iou,
    detections_per_image=lambda m: m.postprocessor.detections_per_image,
)


def small_image_batch(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(1, CANVAS, CANVAS, 3)).astype("float32")
    images[:, int(SCALED[0]):] = 0.0
    images[:, :, int(SCALED[1]):] = 0.0
    boxes = np.array([[[22, 30, 38, 54], [4, 34, 20, 52], CROWD, [0, 0, 0, 0]]], "float32")
    return {
        "images": images,
        "image_info": np.array([[[80, 112], SCALED, [SCALE, SCALE], [0, 0]]], "float32"),
        "gt_boxes": boxes,
        "gt_classes": np.array([[1, 2, 3, -1]], "int32"),
        "gt_is_crowd": np.array([[False, False, True, False]]),
        "gt_masks": (rng.uniform(size=(1, 4, 16, 16)) > 0.5).astype("uint8"),
    }


def _recording(calls, name, fn):
    def wrapper(*args, **kwargs):
        out = fn(*args, **kwargs)
        calls.setdefault(name, []).append((args, kwargs, out))
        return out
    return wrapper


@pytest.fixture(scope="module")
def recorded(make_tiny_model):
    """{op name: [(args, kwargs, result)]} of one training and one inference forward, and the model."""
    keras.utils.set_random_seed(0)  # the random weights decide the proposals the tests look at
    model = make_tiny_model(sampling_seed=0)
    batch = small_image_batch()
    calls = {}
    with pytest.MonkeyPatch.context() as patch:
        for module, name in [(rpn_targets, "rpn_targets"), (roi_sampling, "sample_rois"), (masks, "mask_targets"),
                             (roi_align, "multilevel_roi_align"), (rpn, "generate_proposals"),
                             (postprocess, "multiclass_nms")]:
            patch.setattr(module, name, _recording(calls, name, getattr(module, name)))
        model(batch, training=True)
        train_calls = {k: list(v) for k, v in calls.items()}
        calls.clear()
        detections = model({"images": batch["images"], "image_info": batch["image_info"]}, training=False)
    return model, batch, train_calls, dict(calls), detections


def _inside(boxes, height, width, tol=1e-4):
    boxes = np.asarray(boxes)
    return ((boxes[..., 0] >= -tol) & (boxes[..., 1] >= -tol)
            & (boxes[..., 2] <= height + tol) & (boxes[..., 3] <= width + tol))


def test_rpn_samples_no_anchor_crossing_the_scaled_image(recorded):
    """RPN_STRADDLE_THRESH = 0: no sampled anchor, and so no negative, lies in the canvas padding."""
    _, _, train, _, _ = recorded
    (args, _, (labels, _)), = train["rpn_targets"]
    anchors, labels = np.asarray(args[0]), np.asarray(labels)[0]
    sampled = labels >= 0
    assert (labels == 1).sum() > 0 and (labels == 0).sum() > 10
    assert _inside(anchors[sampled], *SCALED, tol=0).all()
    # Not vacuous: most of the canvas's anchors are outside the image.
    assert (~_inside(anchors, *SCALED, tol=0)).mean() > 0.9


def test_proposals_and_detections_are_clipped_to_the_scaled_image(recorded):
    _, _, train, infer, detections = recorded
    for calls in (train, infer):
        (_, _, (boxes, scores)), = calls["generate_proposals"]
        boxes = np.asarray(boxes)[0][np.isfinite(np.asarray(scores)[0])]
        assert len(boxes) > 10 and _inside(boxes, *SCALED).all()
        assert np.isclose(boxes[:, 2].max(), SCALED[0]) and np.isclose(boxes[:, 3].max(), SCALED[1])
    num = int(detections["num_detections"][0])
    boxes = np.asarray(detections["detection_boxes"])[0, :num]
    assert num > 0 and _inside(boxes, SCALED[0] / SCALE, SCALED[1] / SCALE).all()


def test_mask_targets_are_binary(recorded):
    _, _, train, _, _ = recorded
    (_, kwargs, targets), = train["mask_targets"]
    assert set(np.unique(np.asarray(targets))) == {0.0, 1.0}
    assert kwargs["threshold"] == SPEC["mask_target_threshold"]


def test_proposals_inside_a_crowd_region_are_ignored(recorded):
    _, batch, train, _, _ = recorded
    (args, kwargs, out), = train["sample_rois"]
    proposals = np.asarray(args[0])[0]
    overlap = np.asarray(roi_sampling.crowd_overlap(proposals[None], batch["gt_boxes"], batch["gt_is_crowd"]))[0]
    assert (overlap > 0.7).sum() > 10, "the test needs proposals inside the crowd region"
    rois, classes = np.asarray(out["rois"])[0], np.asarray(out["classes"])[0]
    gt = batch["gt_boxes"][0]
    for roi in rois[classes >= 0]:
        if any(np.array_equal(roi, g) for g in gt):
            continue  # an appended gt box
        inter_hw = np.maximum(np.minimum(roi[2:], CROWD[2:]) - np.maximum(roi[:2], CROWD[:2]), 0)
        area = (roi[2] - roi[0]) * (roi[3] - roi[1])
        assert inter_hw.prod() / area <= 0.7, roi
    # The crowd is never a gt to match: no RoI is labelled with its class 3.
    assert not (classes == 3).any()
    assert kwargs["crowd_filter_thresh"] == SPEC_BOX_STAGE["crowd_filter_thresh"]


def test_sampling_is_a_stateless_function_of_the_batch_seed(make_tiny_model):
    model = make_tiny_model()  # no sampling_seed: without the batch key the draws would be stateful
    batch = small_image_batch()
    # The image fills the canvas, so that more anchors than the 256 sampled are labelled.
    batch["image_info"] = np.array([[[CANVAS, CANVAS], [CANVAS, CANVAS], [1, 1], [0, 0]]], "float32")

    def losses(seed):
        return {k: float(v) for k, v in model({**batch, "sampling_seed": np.array(seed, "int32")},
                                              training=True).items()}

    first, again, other = losses([3, 11]), losses([3, 11]), losses([4, 11])
    assert first == again  # bit-identical
    assert first["rpn_objectness"] != other["rpn_objectness"] and first["roi_class"] != other["roi_class"]


# ----------------------------------------------------------------------------------------------------
# The values the detector is built with (rethink_tf/modeling/README.md).

def test_default_model_is_built_with_the_spec_values():
    model = build_model(80)  # the paper's model; not built (no variables), only its configuration
    for key, want in SPEC.items():
        assert SPEC_READERS[key](model) == want, key
    stage = model.roi_heads.box_stage
    for key, want in SPEC_BOX_STAGE.items():
        assert getattr(stage, key) == want, key
    # Each branch owns its pooler: the mask branch's settings are its own, not the box stage's.
    branch = model.roi_heads.branches["mask"]
    assert branch.pooler is not stage.pooler
    for name, pooler in (("box", stage.pooler), ("mask", branch.pooler)):
        for key, want in SPEC_POOLERS[name].items():
            assert getattr(pooler, key) == want, (name, key)
    assert not stage.predictor.class_agnostic and stage.predictor.num_classes == 80
    assert model.has_masks and model.sampling_seed is None
    # RoIs of the mask head: ceil(512 * 0.25) fg slots, none dropped.
    assert branch.max_fg == 128


def test_the_model_passes_its_values_to_the_ops(recorded):
    model, _, train, infer, _ = recorded
    stage = model.roi_heads.box_stage
    (_, kwargs, _), = train["rpn_targets"]
    assert kwargs["boundary_threshold"] == SPEC["rpn_straddle_thresh"]
    assert (kwargs["positive_iou"], kwargs["negative_iou"]) == (SPEC["rpn_fg_iou"], SPEC["rpn_bg_iou"])
    assert (kwargs["num_samples"], kwargs["positive_fraction"]) == (256, 0.5)
    (_, kwargs, _), = train["sample_rois"]
    assert kwargs["box_weights"] == SPEC_BOX_STAGE["coder_weights"]
    assert kwargs["fg_fraction"] == SPEC_BOX_STAGE["fg_fraction"]
    assert kwargs["fg_iou"] == kwargs["bg_iou_high"] == SPEC_BOX_STAGE["fg_iou"]
    # RoIAlign of the box stage (7x7) and of the mask head (14x14), in training and inference.
    aligns = [(args[2], kw) for calls in (train, infer) for name in ("multilevel_roi_align",)
              for args, kw, _ in calls[name]]
    assert sorted({size for size, _ in aligns}) == [7, 14] and len(aligns) == 4
    for _, kw in aligns:
        assert kw["sampling_ratio"] == SPEC_POOLERS["box"]["sampling_ratio"]
        assert (kw["canonical_size"], kw["canonical_level"]) == (224.0, 4)
        assert (kw["min_level"], kw["max_level"]) == (2, 5)
    for calls in (train, infer):
        (_, kw, _), = calls["generate_proposals"]
        assert kw["nms_iou"] == SPEC["rpn_nms_iou"]
    (_, kw, _), = infer["multiclass_nms"]
    assert (kw["score_threshold"], kw["iou_threshold"]) == (SPEC["score_threshold"], SPEC["nms_iou"])
    # The level assignment with the stage's values: a 224x224 box is on P4, just below it on P3.
    levels = roi_align.assign_levels(
        np.array([[0, 0, 224, 224], [0, 0, 223, 223], [0, 0, 448, 448], [0, 0, 112, 112], [0, 0, 111, 111]],
                 "float32"), stage.pooler.min_level, stage.pooler.max_level, stage.pooler.canonical_size,
        stage.pooler.canonical_level)
    np.testing.assert_array_equal(levels.numpy(), [4, 3, 5, 3, 2])


@pytest.mark.parametrize("iou", [SPEC["nms_iou"], SPEC["rpn_nms_iou"]])
def test_nms_keeps_a_box_at_exactly_the_threshold(iou):
    """torchvision / Detectron suppress only IoU > threshold. Box 1 has IoU exactly `iou` with box 0
    (10 x 10 and 10 x 10*iou, nested: intersection / union = 10*iou / 10 in float32); box 2 a bit more."""
    side = 10.0 * iou
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, side], [20, 20, 30, 30], [20, 20, 30, 30 - 10 + side + 0.01]]],
                     "float32")
    scores = np.array([[0.9, 0.8, 0.7, 0.6]], "float32")
    index, valid = nms.nms_padded(boxes, scores, 4, iou)
    assert np.asarray(index)[0][np.asarray(valid)[0]].tolist() == [0, 1, 2]
    index, valid = tf.function(lambda b, s: nms.nms_padded(b, s, 4, iou), jit_compile=True)(boxes, scores)
    assert np.asarray(index)[0][np.asarray(valid)[0]].tolist() == [0, 1, 2]
    _, _, _, num = nms.multiclass_nms(boxes[:, :, None, :], scores[..., None], 0.05, iou, 4)
    assert int(num[0]) == 3


def test_detections_are_in_original_pixels_when_the_scale_is_not_one(make_tiny_model):
    """Scaled image 96x144 of a 64x96 original (scale 1.5) on a 160 canvas: predictor set so that
    every proposal becomes a class-1 detection of itself (zero deltas)."""
    model = make_tiny_model(mask=False)
    model.build_networks(image_size=64)
    predictor = model.roi_heads.box_stage.predictor
    predictor.cls.kernel.assign(tf.zeros_like(predictor.cls.kernel))
    predictor.cls.bias.assign([0.0, 10.0, 0.0, 0.0])
    predictor.box.kernel.assign(tf.zeros_like(predictor.box.kernel))
    predictor.box.bias.assign(tf.zeros_like(predictor.box.bias))
    image_info = tf.constant([[[64, 96], [96, 144], [1.5, 1.5], [0, 0]]], tf.float32)
    # The last proposal crosses the scaled image's border into the padding.
    proposals = tf.constant([[[10, 20, 40, 60], [50, 70, 90, 100], [80, 120, 150, 158]]], tf.float32)
    feats = model.features(tf.zeros([1, 160, 160, 3]))
    det = model.detect(feats, image_info, proposals=(proposals, tf.ones([1, 3], tf.bool)))
    assert int(det["num_detections"][0]) == 3
    assert np.asarray(det["detection_classes"])[0, :3].tolist() == [1, 1, 1]
    want = np.array([[10, 20, 40, 60], [50, 70, 90, 100], [80, 120, 96, 144]], "float32") / 1.5
    got = np.asarray(det["detection_boxes"])[0, :3]
    np.testing.assert_allclose(got[np.lexsort(got.T[::-1])], want[np.lexsort(want.T[::-1])], atol=1e-4)
