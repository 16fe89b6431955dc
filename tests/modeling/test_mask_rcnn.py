"""MaskRCNN call contract (rethink_tf/modeling/README.md), mask switch, VGG Faster R-CNN, input errors."""
import keras
import numpy as np
import pytest

from rethink_tf.modeling.factory import build_model, build_model_from_bindings
from rethink_tf.modeling.norm import NORM_LAYER_TYPES
from rethink_tf.ops import rpn_targets

LOSS_KEYS = {"rpn_objectness", "rpn_box", "roi_class", "roi_box", "mask"}


@pytest.fixture(scope="module")
def run(make_tiny_model, make_batch):
    """One tiny GN Mask R-CNN, its training losses and its detections on a synthetic batch."""
    model = make_tiny_model()
    batch = make_batch()
    losses = model(batch, training=True)
    detections = model({"images": batch["images"], "image_info": batch["image_info"]}, training=False)
    return model, batch, losses, detections


def test_training_returns_weighted_scalar_losses(run):
    _, _, losses, _ = run
    assert set(losses) == LOSS_KEYS
    for key, value in losses.items():
        assert value.shape == () and keras.backend.standardize_dtype(value.dtype) == "float32", key
        assert np.isfinite(float(value)) and float(value) >= 0, key
    # At init: sigmoid/softmax outputs near uniform (std 0.01 predictors). The RPN loss is divided by
    # 256 per image however many anchors are sampled: on this 48x64 image few anchors lie inside.
    model, batch = run[0], run[1]
    anchors = np.concatenate([np.asarray(a) for a in model.anchors((64, 64)).values()])
    gt_valid = (batch["gt_classes"] > 0) & ~batch["gt_is_crowd"]
    labels, _ = rpn_targets.rpn_targets(anchors, batch["gt_boxes"], gt_valid, batch["image_info"], 256, 0.5,
                                        boundary_threshold=0.0, seed=0)
    sampled = float(np.sum(np.asarray(labels) >= 0)) / (256 * 2)
    assert 0 < sampled < 0.5
    np.testing.assert_allclose(float(losses["rpn_objectness"]), np.log(2) * sampled, rtol=0.05)
    np.testing.assert_allclose(float(losses["roi_class"]), np.log(4), rtol=0.05)
    np.testing.assert_allclose(float(losses["mask"]), np.log(2), rtol=0.02)


def test_detections_contract(run):
    _, batch, _, det = run
    b, d = 2, 20
    assert tuple(det["detection_boxes"].shape) == (b, d, 4)
    assert tuple(det["detection_scores"].shape) == (b, d)
    assert tuple(det["detection_classes"].shape) == (b, d)
    assert tuple(det["num_detections"].shape) == (b,)
    assert tuple(det["detection_masks"].shape) == (b, d, 28, 28)
    assert keras.backend.standardize_dtype(det["detection_classes"].dtype) == "int32"
    assert keras.backend.standardize_dtype(det["num_detections"].dtype) == "int32"
    boxes = np.asarray(det["detection_boxes"])
    classes = np.asarray(det["detection_classes"])
    num = np.asarray(det["num_detections"])
    masks = np.asarray(det["detection_masks"])
    orig_h, orig_w = batch["image_info"][0, 0]
    assert (boxes >= 0).all() and (boxes[..., [0, 2]] <= orig_h).all() and (boxes[..., [1, 3]] <= orig_w).all()
    # Boxes are in ORIGINAL pixels: the scaled image is 48x64 at scale 0.5, so boxes may exceed it.
    for i in range(b):
        assert ((classes[i, :num[i]] >= 1) & (classes[i, :num[i]] <= 3)).all()
        assert (classes[i, num[i]:] == 0).all() and (masks[i, num[i]:] == 0).all()
    assert (masks >= 0).all() and (masks <= 1).all()
    assert (np.asarray(det["detection_scores"])[classes > 0] > 0.05).all()


def test_norm_layers_are_exposed_for_weight_decay(run):
    model = run[0]
    norm_vars = {id(v) for layer in model._flatten_layers() if isinstance(layer, NORM_LAYER_TYPES)
                 for v in layer.weights}
    assert norm_vars and len(norm_vars) < len(model.trainable_weights)
    assert not any(v.path.endswith("gamma") for v in model.trainable_weights if id(v) not in norm_vars)


def test_mask_head_off_and_vgg_faster_rcnn(make_batch):
    model = build_model_from_bindings(3, {
        "build_backbone.vgg_width_multiplier": 0.0625, "conv_fc_box_head.fc_dim": 32, "build_rpn.pre_nms_topk_train": 100,
        "build_rpn.post_nms_topk_train": 50, "build_rpn.pre_nms_topk_test": 50, "build_rpn.post_nms_topk_test": 20,
        "roi_sampling.batch_size_per_image": 32, "build_postprocessor.detections_per_image": 10},
        backbone="vgg16", norm="none", mask=False)
    assert model.rpn.num_anchors == 9 and model.rpn.levels == [4]
    batch = make_batch(batch_size=1)
    del batch["gt_masks"]
    losses = model(batch, training=True)
    assert set(losses) == LOSS_KEYS - {"mask"}
    det = model({"images": batch["images"], "image_info": batch["image_info"]}, training=False)
    assert "detection_masks" not in det and tuple(det["detection_boxes"].shape) == (1, 10, 4)
    anchors = model.anchors((64, 64))[4]
    assert tuple(anchors.shape) == (4 * 4 * 9, 4)
    sizes = np.sqrt((anchors[:9, 2] - anchors[:9, 0]) * (anchors[:9, 3] - anchors[:9, 1]))
    np.testing.assert_allclose(np.asarray(sizes), np.repeat([128, 256, 512], 3), rtol=1e-4)


def test_input_errors(run):
    model, batch, _, _ = run
    with pytest.raises(ValueError, match="'images' and 'image_info'"):
        model({"images": batch["images"]}, training=False)
    no_masks = {k: v for k, v in batch.items() if k != "gt_masks"}
    with pytest.raises(ValueError, match="no 'gt_masks'"):
        model(no_masks, training=True)
    with pytest.raises(ValueError, match="build_model.norm = 'group'"):
        build_model(3, norm="group")
    with pytest.raises(ValueError, match="build_model.box_head = '3fc': expected one of"):
        build_model(3, box_head="3fc")
    with pytest.raises(ValueError, match="VGG-16 body has no normalization"):
        build_model(3, backbone="vgg16")


def test_backbone_weights_load_into_the_detector(run, make_tiny_model, tmp_path):
    from rethink_tf.modeling.weights import load_backbone_weights, save_backbone_weights
    model = run[0]
    path = str(tmp_path / "backbone.h5")
    save_backbone_weights(model.backbone, path)
    fresh = make_tiny_model().build_networks()
    report = load_backbone_weights(fresh.backbone, path)
    assert len(report.matched) == len(model.backbone.weights)
    for a, b in zip(model.backbone.weights, fresh.backbone.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_roi_heads_kind_is_chosen_through_the_registry():
    """A registered kind gets the shared stage settings (head, sample, pooler) and the branches and adds
    its own gin parameters; unknown kinds name the binding."""
    import gin
    from rethink_tf.modeling.roi_heads import registry
    seen = {}

    @registry.register_roi_heads("two_stage_test")
    @gin.configurable(denylist=["num_classes", "stage_kwargs", "branches"])
    def two_stage_test_roi_heads(num_classes, stage_kwargs, branches, first_iou=0.5):
        seen.update(stage_kwargs)
        stages = [registry.make_box_stage(num_classes, stage_kwargs, fg_iou=first_iou),
                  registry.make_box_stage(num_classes, stage_kwargs, name="box_stage2",
                                          head_name="box_head_stage2", predictor_name="box_predictor_stage2",
                                          fg_iou=0.6, class_agnostic=True)]
        return registry.StandardRoIHeads(num_classes, stages, branches)

    try:
        model = build_model_from_bindings(3, {"two_stage_test_roi_heads.first_iou": 0.4,
                                              "roi_sampling.batch_size_per_image": 64},
                                          roi_heads="two_stage_test")
        assert seen["num_samples"] == 64 and seen["pooler_kwargs"]["min_level"] == 2
        first, second = model.roi_heads.box_stages
        assert (first.fg_iou, second.fg_iou, second.predictor.class_agnostic) == (0.4, 0.6, True)
        assert first.head is not second.head and second.head.name == "box_head_stage2"
        assert first.pooler is not second.pooler and list(model.roi_heads.branches) == ["mask"]
        assert model.roi_heads.branches["mask"].max_fg == 16  # set from the last stage by add_branch
        assert model.roi_heads.branches["mask"].pooler.output_size == 14
    finally:
        registry._KINDS.pop("two_stage_test")
    with pytest.raises(ValueError, match="build_model.roi_heads = 'nope': expected one of"):
        build_model(3, roi_heads="nope")


def test_entry_points_compose_to_the_model_call(run):
    """features -> propose -> roi_heads.predict_boxes -> postprocessor.select ->
    roi_heads.forward_with_given_boxes -> postprocessor.to_original gives model(batch) exactly."""
    model, batch, _, det = run
    feats = model.features(batch["images"])
    proposals, valid = model.propose(feats, batch["image_info"])
    assert tuple(proposals.shape) == (2, 50, 4) and tuple(valid.shape) == (2, 50)
    boxes, scores = model.roi_heads.predict_boxes(feats, proposals, valid, batch["image_info"])
    assert tuple(boxes.shape) == (2, 50, 3, 4) and tuple(scores.shape) == (2, 50, 3)
    assert (np.asarray(scores)[~np.asarray(valid)] == 0).all()
    selected = model.postprocessor.select(boxes, scores)
    masks = model.roi_heads.forward_with_given_boxes(feats, selected["detection_boxes"],
                                                     selected["detection_classes"])["mask_probs"]
    got = model.postprocessor.to_original({**selected, "detection_masks": masks}, batch["image_info"])
    assert set(got) == set(det)
    for key in det:
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(det[key]), err_msg=key)


def test_keras_save_and_load_model_round_trip(run, tmp_path):  # 4.2 s on 2 cores at load ~3.7
    """Issue 16: `model.save("x.keras")` writes the whole detector (every part's get_config, no gin) and
    `keras.models.load_model` returns a built model with the same detections."""
    import gin
    model, batch, _, before = run
    path = str(tmp_path / "detector.keras")
    model.save(path)
    gin.clear_config()  # the file alone describes the model
    loaded = keras.models.load_model(path)
    assert loaded.built and [v.path for v in loaded.weights] == [v.path for v in model.weights]
    after = loaded({"images": batch["images"], "image_info": batch["image_info"]}, training=False)
    assert set(after) == set(before)
    for key in before:
        np.testing.assert_array_equal(np.asarray(after[key]), np.asarray(before[key]), err_msg=key)


def test_cascade_model_config_round_trip(make_tiny_model):
    """get_config / from_config rebuild the same structure without gin (the cascade's stages, names and
    settings; the mask branch with its pooler): the configuration half of model.save / load_model."""
    model = make_tiny_model(roi_heads="cascade")
    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    stages = clone.roi_heads.box_stages
    assert type(clone.roi_heads).__name__ == "CascadeRoIHeads"
    assert [s.fg_iou for s in stages] == [0.5, 0.6, 0.7] and [s.head.name for s in stages] == [
        "box_head", "box_head_stage2", "box_head_stage3"]
    assert [s.coder_weights for s in stages] == [s.coder_weights for s in model.roi_heads.box_stages]
    branch = clone.roi_heads.branches["mask"]
    assert branch.max_fg == model.roi_heads.branches["mask"].max_fg and branch.pooler.output_size == 14
