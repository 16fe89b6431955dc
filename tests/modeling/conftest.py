"""Shared tiny configurations and batches for the modeling tests (64-128 px, narrow widths)."""
import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.modeling.factory import build_model_from_bindings

# gin bindings of the tiny test detector (64-128 px images, narrow widths).
TINY = {
    "build_backbone.base_width": 8, "build_backbone.blocks_per_stage": (1, 1, 1, 1), "build_fpn.num_channels": 16,
    "conv_fc_box_head.num_convs": 2, "conv_fc_box_head.conv_dim": 8, "conv_fc_box_head.fc_dim": 32,
    "build_mask_branch.num_convs": 2, "build_mask_branch.conv_dim": 8,
    "build_keypoint_branch.num_convs": 2, "build_keypoint_branch.conv_dim": 8, "build_rpn.pre_nms_topk_train": 200,
    "build_rpn.post_nms_topk_train": 100, "build_rpn.pre_nms_topk_test": 100, "build_rpn.post_nms_topk_test": 50,
    "roi_sampling.batch_size_per_image": 64, "build_postprocessor.detections_per_image": 20,
}


def tiny_model(num_classes=3, bindings=None, **model_kwargs):
    """The tiny detector: TINY updated by `bindings` ({"build_fpn.num_channels": 32, ...}); `model_kwargs`
    are build_model's own (roi_heads, mask, sampling_seed, ...)."""
    return build_model_from_bindings(num_classes, {**TINY, **(bindings or {})}, **model_kwargs)


def synthetic_batch(batch_size=2, size=64, num_classes=3, seed=0, keypoints=False):
    """A batch as the input pipeline makes it (rethink_tf/modeling/README.md): 2 real instances per image, 2 padding rows, one crowd row.
    keypoints: also gt_keypoints [B, 4, 17, 3], labeled points inside each box (a third unlabeled)."""
    rng = np.random.default_rng(seed)
    boxes = np.array([[4, 4, 30, 40], [10, 20, 40, 60], [20, 5, 44, 30], [0, 0, 0, 0]], "float32")
    classes = np.array([1, num_classes, 2, -1], "int32")
    crowd = np.array([False, False, True, False])
    return {
        "images": rng.normal(size=(batch_size, size, size, 3)).astype("float32"),
        "image_info": np.tile(np.array([[96, 128], [48, 64], [0.5, 0.5], [0, 0]], "float32"),
                              (batch_size, 1, 1)),
        "image_id": np.arange(batch_size, dtype="int64"),
        "gt_boxes": np.tile(boxes, (batch_size, 1, 1)),
        "gt_classes": np.tile(classes, (batch_size, 1)),
        "gt_is_crowd": np.tile(crowd, (batch_size, 1)),
        "gt_masks": (rng.uniform(size=(batch_size, 4, 16, 16)) > 0.5).astype("uint8"),
        **({"gt_keypoints": _keypoints_in(boxes, batch_size, rng)} if keypoints else {}),
    }


def _keypoints_in(boxes, batch_size, rng):
    u = rng.uniform(size=(batch_size, len(boxes), 17, 2))
    x = boxes[None, :, None, 1] + u[..., 0] * (boxes[None, :, None, 3] - boxes[None, :, None, 1])
    y = boxes[None, :, None, 0] + u[..., 1] * (boxes[None, :, None, 2] - boxes[None, :, None, 0])
    v = np.where(rng.uniform(size=x.shape) < 0.33, 0.0, 2.0)
    return np.stack([np.where(v > 0, x, 0), np.where(v > 0, y, 0), v], -1).astype("float32")


def train_step_fn(model, batch, base_lr=0.02, jit_compile=False, seed=None):
    """The Trainer's own training step (`Trainer.on_fixed_batch`: coupled L2, Detectron's bias / norm
    rules, constant `base_lr`) for `model` built on `batch`; seed None keeps the model's own sampling seed."""
    import tempfile

    from rethink_tf.training.trainer import Trainer

    _, step = Trainer.on_fixed_batch(tempfile.mkdtemp(prefix="modeling_step_"), lambda: model, batch,
                                     base_lr=base_lr, jit_compile=jit_compile, seed=seed)
    return step


@pytest.fixture(scope="session")
def make_tiny_model():
    return tiny_model


@pytest.fixture(scope="session")
def make_batch():
    return synthetic_batch


@pytest.fixture(scope="session")
def make_train_step():
    return train_step_fn
