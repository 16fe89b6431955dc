"""Training on one real COCO image (coco128) decreases every loss term; XLA compiles both steps."""
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco128"


@pytest.fixture(scope="module")
def coco_batch():
    """One coco128 image through the DATA pipeline (eval mode: no augmentation), 128 px canvas."""
    from rethink_tf.data.input_pipeline import build_dataset
    from rethink_tf.data.sources import CocoSource
    if not DATA.exists():
        pytest.skip(f"{DATA} not present")
    source = CocoSource(DATA / "annotations" / "instances_train2017.json", DATA / "train2017",
                        subset_size=1, subset_seed=3)
    ds = build_dataset(source, training=False, global_batch_size=1, eval_short_side=128,
                       max_size=128, canvas_size=128, max_instances=16, mask_crop_size=28)
    batch = next(iter(ds))
    assert int(tf.reduce_sum(tf.cast(batch["gt_classes"] > 0, tf.int32))) >= 1
    return {k: v for k, v in batch.items() if k != "gt_keypoints"}, len(source.categories)


def test_every_loss_decreases_on_one_coco_image(coco_batch, make_tiny_model, make_train_step):
    batch, num_classes = coco_batch
    keras.utils.set_random_seed(0)
    # A fixed sampling seed and a small RoI sample (<= 4 fg of 16, saturated from the first step on
    # this image's large objects) keep the per-step losses comparable: with fresh random samples
    # the box loss of 4 RoIs swings by 10x from step to step.
    model = make_tiny_model(num_classes, {
        "build_backbone.base_width": 16, "build_fpn.num_channels": 32, "conv_fc_box_head.conv_dim": 16,
        "conv_fc_box_head.fc_dim": 64, "build_mask_branch.conv_dim": 16, "roi_sampling.batch_size_per_image": 16},
        sampling_seed=1)
    step = make_train_step(model, batch, base_lr=0.02)
    # The tiny mask head learns slowly, so the run is 90 steps at LR 0.02 and compares the first 5 steps
    # with the last 10. With Detectron's targets (straddle 0, binary masks, per-use seeds) the mask loss
    # fell by only 3-9% in 60 steps at LR 0.01, against the 5% margin; 90 steps at 0.02 give a ~25% drop.
    history = [{k: float(v) for k, v in step(batch).items()} for _ in range(90)]
    assert set(history[0]) == {"rpn_objectness", "rpn_box", "roi_class", "roi_box", "mask"}
    for key in history[0]:
        first = np.mean([h[key] for h in history[:5]])
        last = np.mean([h[key] for h in history[-10:]])
        assert np.isfinite(last) and last < 0.95 * first, (key, first, last)


@pytest.mark.slow  # XLA compile of the whole model, ~50 s idle without the keypoint branch; with it 202 s measured
# on the 2 cores at load ~6 (not comparable). The default suite is near its 15 minutes.
def test_train_and_predict_steps_compile_with_xla(make_tiny_model, make_batch, make_train_step):
    model = make_tiny_model(keypoints=True)  # mask and keypoint branches: one compile covers both
    batch = make_batch(batch_size=1, keypoints=True)
    step = make_train_step(model, batch, base_lr=0.01, jit_compile=True, seed=7)  # the Trainer adds sampling_seed
    losses = step(batch)
    assert {"mask", "keypoint"} <= set(losses)
    assert all(np.isfinite(float(v)) for v in losses.values())

    @tf.function(jit_compile=True)
    def predict(images, image_info):
        return model({"images": images, "image_info": image_info}, training=False)

    det = predict(batch["images"], batch["image_info"])
    assert tuple(det["detection_masks"].shape) == (1, 20, 28, 28)
    assert tuple(det["detection_keypoints"].shape) == (1, 20, 17, 3)
    eager = model({"images": batch["images"], "image_info": batch["image_info"]}, training=False)
    np.testing.assert_allclose(np.asarray(det["detection_scores"]),
                               np.asarray(eager["detection_scores"]), atol=1e-4)
    np.testing.assert_allclose(np.asarray(det["detection_keypoints"]),
                               np.asarray(eager["detection_keypoints"]), atol=1e-2)
