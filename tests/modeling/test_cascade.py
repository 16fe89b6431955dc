"""Cascade Mask R-CNN (rethink_tf.modeling.roi_heads.cascade): per-stage wiring against numpy references,
the 1/N gradient at each stage's input, XLA compilation, and the switch from a plain Mask R-CNN checkpoint."""
import json
import math
import sys
import types
from pathlib import Path

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.modeling.roi_heads import cascade
from rethink_tf.training import checkpointing, warm_start

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ops"))
import reference as ref  # noqa: E402

WEIGHTS = ((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0))


@pytest.fixture(scope="module")
def cascade_model(make_tiny_model):
    keras.utils.set_random_seed(3)
    model = make_tiny_model(roi_heads="cascade", sampling_seed=5)
    model.build_networks()
    return model


@pytest.fixture(scope="module")
def inputs(cascade_model, make_batch):
    batch = make_batch(batch_size=2)
    features = cascade_model.features(tf.constant(batch["images"]), training=False)
    rng = np.random.default_rng(0)
    proposals = np.stack([ref.random_boxes(rng, 12, 64, 4, 40) for _ in range(2)])
    valid = np.ones((2, 12), bool)
    valid[1, -3:] = False
    return batch, features, proposals, valid


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _decode_clip(deltas, rois, weights, hw):
    out = np.array([[ref.decode(d, r, weights) for d, r in zip(di, ri)] for di, ri in zip(deltas, rois)])
    out[..., 0::2] = np.clip(out[..., 0::2], 0, hw[:, None, 0:1])
    out[..., 1::2] = np.clip(out[..., 1::2], 0, hw[:, None, 1:2])
    return out


def test_built_stages_are_the_papers(cascade_model):
    heads = cascade_model.roi_heads
    assert isinstance(heads, cascade.CascadeRoIHeads) and heads.num_stages == 3
    assert [s.fg_iou for s in heads.box_stages] == [0.5, 0.6, 0.7]
    assert [s.coder_weights for s in heads.box_stages] == list(WEIGHTS)
    assert all(s.predictor.class_agnostic for s in heads.box_stages)
    paths = list(checkpointing.variables_by_path(cascade_model))
    assert not any("#" in p for p in paths)  # every stage's variables have their own paths
    assert {p.split("/")[0] for p in paths if "stage" in p} == {f"box_{part}_stage{k}" for part in ("head", "predictor")
                                                                for k in (2, 3)}


def test_predict_boxes_averages_scores_over_stages_and_takes_the_last_stages_boxes(cascade_model, inputs):
    batch, features, proposals, valid = inputs
    heads = cascade_model.roi_heads
    hw = batch["image_info"][:, 1, :]
    boxes, scores = heads.predict_boxes(features, tf.constant(proposals), tf.constant(valid),
                                        tf.constant(batch["image_info"]))
    # Reference: each stage's own networks on the previous stage's numpy-decoded, clipped boxes.
    rois, probs = proposals, []
    for stage, weights in zip(heads.box_stages, WEIGHTS):
        logits, deltas = stage(features, tf.constant(rois, tf.float32), training=False)
        probs.append(_softmax(logits.numpy().astype(np.float64)))
        rois = _decode_clip(deltas.numpy()[:, :, 0, :], rois, weights, hw).astype(np.float32)
    want_scores = np.mean(probs, axis=0)[:, :, 1:] * valid[..., None]
    np.testing.assert_allclose(scores.numpy(), want_scores, rtol=1e-4, atol=1e-6)
    assert boxes.shape == (2, 12, 1, 4)
    np.testing.assert_allclose(boxes.numpy()[:, :, 0, :], rois, rtol=1e-4, atol=1e-3)


def _reference_labels(rois, roi_valid, gt_boxes, gt_classes, gt_valid, fg_iou, weights):
    """detectron2's later-stage labelling on one image: (classes [R], box targets [R, 4])."""
    classes, targets = np.full(len(rois), -1), np.zeros((len(rois), 4))
    cols = [j for j in range(len(gt_boxes)) if gt_valid[j]]
    for i, box in enumerate(rois):
        if not roi_valid[i] or (box[2] - box[0]) * (box[3] - box[1]) <= 0:
            continue
        best = max(cols, key=lambda j: (ref.iou(box, gt_boxes[j]), -j))
        if ref.iou(box, gt_boxes[best]) >= fg_iou:
            classes[i], targets[i] = gt_classes[best], ref.encode(gt_boxes[best], box, weights)
        else:
            classes[i] = 0
    return classes, targets


def test_stage_targets_are_the_previous_stages_boxes_relabelled(cascade_model, inputs):
    """Stage k > 1 trains on stage k-1's decoded boxes of the same slots, labelled at its IoU (numpy
    reference); each stage's losses are the plain stage losses on those targets."""
    batch, features, proposals, valid = inputs
    heads = cascade_model.roi_heads
    targets = {k: tf.constant(v) for k, v in batch.items() if k.startswith("gt_")}
    seed = tf.constant([4, 2], tf.int32)
    got = heads.losses(features, tf.constant(proposals), tf.constant(valid), targets,
                       tf.constant(batch["image_info"]), seed=seed)
    assert set(got) == {f"roi_{t}_stage{k}" for t in ("class", "box") for k in (1, 2, 3)} | {"mask"}
    gt_valid, gt_crowd = heads.gt_validity(targets)
    gt_valid, gt_crowd = gt_valid.numpy(), gt_crowd.numpy()
    sampled = heads.box_stages[0].sample(proposals, valid, batch["gt_boxes"], batch["gt_classes"], gt_valid,
                                         gt_is_crowd=gt_crowd, seed=seed)
    hw = batch["image_info"][:, 1, :]
    fg_counts = []
    for k, (stage, weights) in enumerate(zip(heads.box_stages, WEIGHTS), start=1):
        if k > 1:
            labels = [_reference_labels(refined[i], sampled_classes[i] >= 0, batch["gt_boxes"][i],
                                        batch["gt_classes"][i], gt_valid[i], stage.fg_iou, weights)
                      for i in range(2)]
            crowd = np.array([[any(gt_crowd[i, j] and ref.intersection_over_first(b, batch["gt_boxes"][i, j]) > 0.7
                                   for j in range(gt_crowd.shape[1])) for b in refined[i]] for i in range(2)])
            classes = np.where(crowd, -1, np.stack([c for c, _ in labels]))
            box_targets = np.where(classes[..., None] > 0, np.stack([t for _, t in labels]), 0.0)
            rois = np.where(classes[..., None] >= 0, refined, 0.0).astype(np.float32)
            sampled = {"rois": tf.constant(rois), "classes": tf.constant(classes, tf.int32),
                       "box_targets": tf.constant(box_targets, tf.float32)}
        fg_counts.append(int(np.sum(np.asarray(sampled["classes"]) > 0)))
        logits, deltas = stage(features, sampled["rois"], training=True)
        want = stage.losses(logits, deltas, sampled)
        for name, value in want.items():
            np.testing.assert_allclose(float(got[f"{name}_stage{k}"]), float(value), rtol=2e-4, atol=1e-6,
                                       err_msg=f"{name} stage {k}")
        sampled_classes = np.asarray(sampled["classes"])
        refined = _decode_clip(deltas.numpy()[:, :, 0, :], np.asarray(sampled["rois"]), weights, hw).astype(np.float32)
    assert min(fg_counts) > 0, fg_counts  # every stage had foreground to learn from


def test_each_stage_scales_the_feature_gradient_by_one_over_n(cascade_model, inputs, monkeypatch):
    batch, features, proposals, valid = inputs
    heads = cascade_model.roi_heads
    targets = {k: tf.constant(v) for k, v in batch.items() if k.startswith("gt_")}
    features = {level: tf.Variable(f) for level, f in features.items()}
    head_vars = heads.box_stages[1].trainable_variables

    def gradients():
        with tf.GradientTape() as tape:
            losses = heads.losses(features, tf.constant(proposals), tf.constant(valid), targets,
                                  tf.constant(batch["image_info"]), seed=tf.constant([1, 1], tf.int32))
            total = tf.add_n([v for k, v in losses.items() if "stage" in k])
        return tape.gradient(total, [features[2], *head_vars])

    scaled = gradients()
    monkeypatch.setattr(cascade, "scale_gradient", lambda x, scale: x)
    unscaled = gradients()
    np.testing.assert_allclose(scaled[0].numpy(), unscaled[0].numpy() / 3.0, rtol=1e-4, atol=1e-9)
    assert np.abs(scaled[0].numpy()).max() > 0
    for a, b in zip(scaled[1:], unscaled[1:]):  # the heads learn at the full rate
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-9)


@pytest.mark.slow  # XLA compilation of the 3-stage graph: ~4.5 min on the loaded 2-core machine
def test_train_and_predict_steps_compile_with_xla(make_tiny_model, make_batch, make_train_step):
    keras.utils.set_random_seed(0)
    model = make_tiny_model(roi_heads="cascade")
    batch = make_batch(batch_size=1)
    step = make_train_step(model, batch, base_lr=0.01, jit_compile=True, seed=7)  # the Trainer's own step
    losses = step(batch)
    assert {k for k in losses if "stage" in k} == {f"roi_{t}_stage{k}" for t in ("class", "box") for k in (1, 2, 3)}
    assert all(np.isfinite(float(v)) for v in losses.values())

    @tf.function(jit_compile=True)
    def predict(images, image_info):
        return model({"images": images, "image_info": image_info}, training=False)

    det = predict(batch["images"], batch["image_info"])
    eager = model({"images": batch["images"], "image_info": batch["image_info"]}, training=False)
    assert tuple(det["detection_masks"].shape) == (1, 20, 28, 28)
    np.testing.assert_allclose(det["detection_scores"].numpy(), eager["detection_scores"].numpy(), atol=1e-4)


def test_switch_from_a_plain_checkpoint_loads_every_shared_variable(tmp_path):
    """A plain Mask R-CNN checkpoint (as the Trainer writes it) initializes a cascade run through the
    experiment's model builder: every plain variable is copied except stage 1's class-specific box
    regressor (skipped: the cascade's is class-agnostic), stages 2-3 start fresh, and the report says so."""
    from rethink_tf.training import experiment
    from .conftest import TINY, tiny_model

    keras.utils.set_random_seed(1)
    plain = tiny_model(3)
    plain.build_networks()
    for v in plain.weights:  # distinctive values, so a copy cannot match by chance
        v.assign(tf.random.normal(v.shape, seed=None) * 0.1 + 0.5)
    prefix = tf.train.Checkpoint(model_variables=checkpointing.model_trackable(plain)).write(
        str(tmp_path / "plain" / "ckpt-540"))
    plain_vars = checkpointing.variables_by_path(plain)

    skip = [r"^box_predictor/box_deltas/"]
    gin.clear_config()
    try:
        for key, value in {**TINY, "build_model.roi_heads": "cascade"}.items():
            gin.bind_parameter(key, value)
        source = types.SimpleNamespace(categories=[{"id": i} for i in (1, 2, 3)], has_masks=True)
        model = experiment.model_builder(source, report_dir=str(tmp_path / "run"), init_checkpoint=prefix,
                                         init_checkpoint_skip=skip)()
    finally:
        gin.clear_config()
    model_vars = checkpointing.variables_by_path(model)
    report = json.loads((tmp_path / "run" / warm_start.REPORT_FILE).read_text())
    skipped = {p for p, _, _ in report["skipped"]}
    assert skipped == {"box_predictor/box_deltas/kernel", "box_predictor/box_deltas/bias"}
    assert set(report["matched"]) == set(plain_vars) - skipped  # every shared variable
    assert report["unused"] == []
    assert set(report["fresh"]) == {p for p in model_vars if p.split("/")[0].endswith(("_stage2", "_stage3"))}
    assert report["checkpoint"] == prefix and report["summary"].startswith(f"matched {len(report['matched'])}")
    for path in report["matched"]:
        np.testing.assert_array_equal(model_vars[path].numpy(), plain_vars[path].numpy(), err_msg=path)
    for path in report["fresh"] + sorted(skipped):
        assert not np.allclose(model_vars[path].numpy(), 0.5), path  # left at their initialization
    # A shape mismatch not covered by a skip pattern is refused, naming the variable.
    with pytest.raises(ValueError, match="box_predictor/box_deltas"):
        warm_start.init_from_checkpoint(model, prefix)
