"""Overfitting 2 real COCO images: Cascade Mask R-CNN localizes better than the plain model (AP75).

Both models are the same tiny R50-structured GN Mask R-CNN (the cascade adds stages 2-3 and regresses
class-agnostically), start from the same seed, and train for the same steps on the same batch of two
coco128 images with few, large objects (ids 142 and 623: 8 instances), evaluated on those images with
pycocotools.
"""
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco128"
IMAGE_IDS = (142, 623)
STEPS = 150
SIZE = 128
MODEL = {"build_backbone.base_width": 16, "build_backbone.blocks_per_stage": (1, 1, 1, 1), "build_fpn.num_channels": 32,
         "conv_fc_box_head.num_convs": 2, "conv_fc_box_head.conv_dim": 16, "conv_fc_box_head.fc_dim": 64,
         "build_mask_branch.num_convs": 2, "build_mask_branch.conv_dim": 16, "build_rpn.pre_nms_topk_train": 200,
         "build_rpn.post_nms_topk_train": 100, "build_rpn.pre_nms_topk_test": 100,
         "build_rpn.post_nms_topk_test": 50, "roi_sampling.batch_size_per_image": 64,
         "build_postprocessor.detections_per_image": 20}


def train_and_evaluate(roi_heads, steps=STEPS, lr=0.02):
    """Trains a fresh model on the 2 images for `steps` (graph mode) -> (bbox metrics, seconds)."""
    from rethink_tf.data.input_pipeline import build_dataset
    from rethink_tf.data.sources import CocoSource
    from rethink_tf.evaluation import coco_evaluator, eval_loop
    from rethink_tf.modeling.factory import build_model_from_bindings

    source = CocoSource(DATA / "annotations" / "instances_train2017.json", DATA / "train2017")
    source.image_ids = list(IMAGE_IDS)
    dataset = build_dataset(source, training=False, global_batch_size=2, eval_short_side=SIZE, max_size=SIZE,
                            canvas_size=SIZE, max_instances=16, mask_crop_size=28)
    batch = {k: v for k, v in next(iter(dataset)).items() if k != "gt_keypoints"}
    keras.utils.set_random_seed(0)
    model = build_model_from_bindings(len(source.categories), MODEL, roi_heads=roi_heads)
    optimizer = keras.optimizers.SGD(lr, momentum=0.9)

    @tf.function
    def step(seed):
        with tf.GradientTape() as tape:
            total = tf.add_n(list(model({**batch, "sampling_seed": seed}, training=True).values()))
        optimizer.apply_gradients(zip(tape.gradient(total, model.trainable_variables), model.trainable_variables))
        return total

    start = time.time()
    for i in range(steps):
        step(tf.constant([0, i], tf.int32))
    evaluator = coco_evaluator.CocoEvaluator(source.coco_gt(), source.label_to_category_id_array, include_masks=False)
    metrics, _ = eval_loop.run_evaluation(model, dataset, evaluator)
    return metrics["bbox"], time.time() - start


@pytest.mark.slow
def test_cascade_beats_the_plain_model_at_ap75_on_two_overfit_images():
    if not DATA.exists():
        pytest.skip(f"{DATA} not present")
    plain, plain_s = train_and_evaluate("standard")
    cascade, cascade_s = train_and_evaluate("cascade")
    print(f"\n{STEPS} steps: plain bbox {plain} ({plain_s:.0f} s); cascade bbox {cascade} ({cascade_s:.0f} s)")
    assert cascade["AP75"] > plain["AP75"], (plain, cascade)


if __name__ == "__main__":  # one arm per process: python tests/modeling/test_cascade_overfit.py cascade [steps]
    print(sys.argv[1], train_and_evaluate(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else STEPS), flush=True)
