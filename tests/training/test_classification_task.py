"""The classification pre-training task: its LR schedule, top-k metric, and the backbone file it hands to
a detector (variables and samples seen)."""

import json
import os
import types

import gin
import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.training import classification_task as ct
from rethink_tf.training import pretrained_backbone, schedule
from rethink_tf.utils import validate


def test_imagenet_schedule_lr_at_the_boundaries():
    """Batch 256 on ImageNet-1k: 5004.56 steps per epoch; LR 0.1 after a 5-epoch warmup from 0.01,
    x0.1 at epochs 30, 60, 90 (steps 150137, 300274, 450410), 100 epochs = 500456 steps."""
    spec = schedule.imagenet_schedule(global_batch_size=256)
    assert spec.total_steps == 500456 and spec.boundaries == (150137, 300274, 450410)
    assert spec.warmup_steps == 25023
    lr = schedule.WarmupStepDecay.from_spec(spec)  # what the optimizer calls
    expected = {0: 0.01, 25023 // 2: 0.01 + 0.09 * (25023 // 2) / 25023, 25023: 0.1, 150136: 0.1, 150137: 0.01,
                300273: 0.01, 300274: 0.001, 450409: 0.001, 450410: 0.0001, 500455: 0.0001}
    for step, want in expected.items():
        assert float(lr(step)) == pytest.approx(want, rel=1e-5), step
        assert spec.lr_at(step) == pytest.approx(want, rel=1e-9), step
    # The linear scaling rule: batch 1024 -> LR 0.4, a quarter of the steps.
    big = schedule.imagenet_schedule(global_batch_size=1024)
    assert big.base_lr == pytest.approx(0.4) and big.boundaries == (37534, 75068, 112603)


def test_imagenet_schedule_refuses_decays_outside_the_run():
    with pytest.raises(validate.ConfigError, match=r"imagenet_schedule\.decay_epochs"):
        schedule.imagenet_schedule(global_batch_size=256, epochs=20)
    with pytest.raises(validate.ConfigError, match=r"imagenet_schedule\.decay_epochs"):
        schedule.imagenet_schedule(global_batch_size=256, decay_epochs=(60, 30))


def test_top_k_accuracy_on_a_hand_worked_case():
    logits = np.array([
        [0.1, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0],   # label 1: rank 0 -> top-1, top-5
        [0.5, 0.1, 0.2, 0.3, 0.4, 0.6, 0.0],   # label 2: 4 logits above (0.3 0.4 0.5 0.6) -> top-5 only
        [0.5, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7],   # label 1: 6 logits above -> neither
        [0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1],   # label 1: tied with class 0 at the top -> top-1 (in_top_k)
        [9.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],   # padding (label -1): not counted
    ])
    labels = np.array([1, 2, 1, 1, -1])
    metric = ct.TopKAccuracy((1, 5))
    metric.update(labels[:2], logits[:2])
    metric.update(labels[2:], logits[2:])
    assert metric.count == 4
    assert metric.result() == {"top1": 50.0, "top5": 75.0}
    # Independent reference: tf.math.in_top_k (same tie rule).
    for k, want in ((1, 50.0), (5, 75.0)):
        hits = tf.math.in_top_k(tf.constant(labels[:4]), tf.constant(logits[:4], tf.float32), k)
        assert 100.0 * float(tf.reduce_mean(tf.cast(hits, tf.float32))) == want


TINY_BACKBONE = dict(kind="resnet", depth=50, blocks_per_stage=(1, 1, 1, 1), base_width=8, norm="gn")


@pytest.fixture
def tiny_gin():
    from rethink_tf.training import config

    config.import_configurables()
    gin.clear_config()
    for k, v in TINY_BACKBONE.items():
        gin.bind_parameter(f"build_backbone.{k}", v)
    gin.bind_parameter("build_backbone.zero_init_last_norm", True)
    # the detector shares the build_backbone bindings above
    for k, v in {"build_model.norm": "gn", "build_fpn.num_channels": 16, "conv_fc_box_head.num_convs": 1,
                 "conv_fc_box_head.conv_dim": 8, "conv_fc_box_head.fc_dim": 16, "build_model.mask": False}.items():
        gin.bind_parameter(k, v)
    gin.bind_parameter("build_norm.gn_groups", 4)
    yield
    gin.clear_config()


@pytest.mark.slow  # builds a detector (~20 s idle, over a minute on the shared machine)
def test_backbone_file_round_trip_into_a_detector(tmp_path, tiny_gin):
    """The classifier's backbone file loads into the detector with every variable matched and equal, and
    the detection task starts its samples-seen counts from the pre-training's."""
    from rethink_tf.modeling.classifier import build_classifier
    from rethink_tf.training import experiment

    classifier = build_classifier(num_classes=5)
    classifier(tf.zeros([2, 32, 32, 3]), training=False)
    # Make the values distinguishable from any fresh initialization.
    for i, v in enumerate(classifier.backbone.weights):
        v.assign(tf.fill(v.shape, 0.01 * (i + 1)) + tf.cast(v, v.dtype))
    trainer = types.SimpleNamespace(step=7, schedule=types.SimpleNamespace(total_steps=10), model=classifier,
                                    samples={"images": tf.Variable(448.0), "instances": tf.Variable(448.0),
                                             "pixels": tf.Variable(448.0 * 32 * 32)})
    source = types.SimpleNamespace(name="tiny", num_classes=5)
    path = ct.write_backbone(trainer, source, str(tmp_path / "pre" / ct.BACKBONE_FILE))
    with open(pretrained_backbone.samples_path(path)) as f:
        record = json.load(f)
    assert record["images"] == 448 and record["pixels"] == 448 * 32 * 32 and record["step"] == 7
    assert record["finished"] is False

    detection_source = types.SimpleNamespace(categories=[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
                                             has_masks=False)
    run_dir = str(tmp_path / "finetune")
    detector = experiment.model_builder(detection_source, path, run_dir)()
    want = {v.path.split("backbone/", 1)[1]: np.asarray(v) for v in classifier.backbone.weights}
    got = {v.path.split("backbone/", 1)[1]: np.asarray(v) for v in detector.backbone.weights}
    assert got.keys() == want.keys() and len(want) > 20
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    with open(os.path.join(run_dir, "backbone_weights.json")) as f:
        report = json.load(f)
    assert len(report["matched"]) == len(want) and not report["missing_in_file"] and not report["unused_in_file"]
    task = experiment.DetectionTask(run_dir, detection_source, global_batch_size=2, backbone_weights=path)
    assert task.initial_samples() == {"images": 448.0, "instances": 448.0, "pixels": 448.0 * 32 * 32}


def test_a_broken_samples_record_names_the_file(tmp_path):
    path = tmp_path / "b.h5"
    (tmp_path / "b.h5.samples.json").write_text('{"images": 3}')
    with pytest.raises(validate.InputError, match=r"b\.h5\.samples\.json"):
        pretrained_backbone.read_samples(str(path))
    assert pretrained_backbone.read_samples(str(tmp_path / "other.h5")) == {}


def test_fine_tuning_counts_add_the_pre_training_in_tensorboard_and_eval(tmp_path):
    """A task with initial samples: TensorBoard gets samples_seen_total/*, the evaluation pretrain_* and
    total_*, while samples_seen/* stay this run's own counts."""
    import toy_train_script as script
    import training_toys as toys
    from rethink_tf.training import distribute, summaries, task as task_lib, trainer as trainer_lib

    seen = []
    task = task_lib.ModelTask(lambda: toys.ToyDetector("gn"), lambda ctx: toys.toy_dataset(ctx, 4),
                              eval_fn=lambda step, samples: (seen.append(samples) or ({"bbox/AP": 1.0}, {})),
                              initial_samples={"images": 1000.0, "instances": 1000.0, "pixels": 5e6})
    spec = schedule.paper_schedule(global_batch_size=4, total_steps=2, warmup_steps_at_batch_16=1, base_lr=0.01)
    t = trainer_lib.Trainer(str(tmp_path), distribute.get_strategy("default"), task, spec, 4, eval_every=0,
                            summary_every=1, log_every=1)
    t.train()
    assert seen[-1]["images"] == 8 and seen[-1]["pretrain_images"] == 1000 and seen[-1]["total_images"] == 1008
    assert seen[-1]["total_pixels"] == 5e6 + 8 * toys.CANVAS ** 2
    scalars = summaries.read_scalars(os.path.join(tmp_path, "train"))
    assert scalars["samples_seen/images"][-1] == (2, 8.0)
    assert scalars["samples_seen_total/images"][-1] == (2, 1008.0)
    assert "samples_seen/pretrain_images" not in scalars
    del script


@pytest.fixture
def tiny_vgg_gin():
    from rethink_tf.training import config

    config.import_configurables()
    gin.clear_config()
    for k, v in {"build_backbone.kind": "vgg16", "build_backbone.norm": "none",
                 "build_backbone.vgg_width_multiplier": 0.125, "build_classifier.fc_dim": 16,
                 "build_model.backbone": "vgg16", "build_model.norm": "none", "build_model.box_head": "2fc",
                 "build_model.mask": False, "fc_box_head.fc_dim": 16, "fc_box_head.kernel_init": "msra"}.items():
        gin.bind_parameter(k, v)
    yield
    gin.clear_config()


@pytest.mark.slow  # a VGG-16 classifier and three detectors (~30 s idle)
def test_vgg16_pretraining_hands_fc6_fc7_to_the_detector(tmp_path, tiny_vgg_gin):
    """The pre-training arm of the VGG-16 rows: the classifier's fc6 / fc7 travel in the backbone file and
    start the detector's box head, as the original Faster R-CNN fine-tunes them; a body-only file is
    refused naming the binding that accepts it, and with that binding fc6 / fc7 start from MSRA init."""
    from rethink_tf.modeling.classifier import build_classifier
    from rethink_tf.training import experiment
    from rethink_tf.utils.validate import ConfigError

    classifier = build_classifier(num_classes=5)
    classifier(tf.zeros([1, 224, 224, 3]), training=False)  # pool5 7 x 7, as the detector's RoIs
    trainer = types.SimpleNamespace(step=3, schedule=types.SimpleNamespace(total_steps=3), model=classifier,
                                    samples={k: tf.Variable(1.0) for k in ("images", "instances", "pixels")})
    path = ct.write_backbone(trainer, types.SimpleNamespace(name="tiny", num_classes=5),
                             str(tmp_path / "pre" / ct.BACKBONE_FILE))
    source = types.SimpleNamespace(categories=[{"id": 1, "name": "a"}], has_masks=False)
    run_dir = str(tmp_path / "finetune")
    detector = experiment.model_builder(source, path, run_dir)()
    head = detector.roi_heads.box_stages[0].head
    for got, want in zip(head.weights, classifier.fc6.weights + classifier.fc7.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    with open(os.path.join(run_dir, "backbone_weights.json")) as f:
        report = json.load(f)
    assert report["head"] == [f"{detector.roi_heads.box_stages[0].name}/{k}"
                              for k in ("fc6/kernel", "fc6/bias", "fc7/kernel", "fc7/bias")]
    assert len(report["matched"]) == 26 and not report["unused_in_file"]

    from rethink_tf.modeling.weights import save_backbone_weights
    body_only = str(tmp_path / "body_only.h5")
    save_backbone_weights(classifier.backbone, body_only)
    with pytest.raises(ConfigError, match=r"experiment.backbone_weights: .*body_only\.h5 has no VGG-16 fc6"):
        experiment.model_builder(source, body_only, str(tmp_path / "refused"))()
    fresh = experiment.model_builder(source, body_only, str(tmp_path / "fresh"), vgg16_fc=False)()
    kernel = np.asarray(fresh.roi_heads.box_stages[0].head.fcs[1].kernel)
    assert not np.array_equal(kernel, np.asarray(classifier.fc7.kernel))
    np.testing.assert_allclose(kernel.std(), np.sqrt(2 / 16), rtol=0.2)  # MSRA, fan_out 16
