"""Constants shared by the serving tests (imported as a plain module, like tests/training's toys)."""
import json
import os
from pathlib import Path

import pytest

COCO128 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco128" / "train2017"

TINY_BINDINGS = [
    "build_backbone.base_width = 8",
    "build_backbone.blocks_per_stage = (1, 1, 1, 1)",
    "build_fpn.num_channels = 32",
    "conv_fc_box_head.num_convs = 1",
    "conv_fc_box_head.conv_dim = 32",
    "conv_fc_box_head.fc_dim = 64",
    "build_mask_branch.num_convs = 1",
    "build_mask_branch.conv_dim = 32",
    "build_rpn.pre_nms_topk_test = 200",
    "build_rpn.post_nms_topk_test = 100",
    "build_postprocessor.score_threshold = 0.0",
    "eval/build_dataset.eval_short_side = 96",
    "build_dataset.max_size = 128",
]
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 44, "name": "bottle"}]


def coco_image_paths(count):
    paths = sorted(COCO128.glob("*.jpg"))[:count]
    if len(paths) < count:
        pytest.skip(f"COCO images not found under {COCO128}")
    return [str(p) for p in paths]


def write_run(model_dir, checkpoint_model=None):
    """A training directory as rethink_tf.train leaves it; returns the checkpoint path."""
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "config.gin"), "w") as f:
        f.write("\n".join(TINY_BINDINGS) + "\n")
    with open(os.path.join(model_dir, "label_map.json"), "w") as f:
        json.dump({"source": "test", "categories": CATEGORIES,
                   "label_to_category_id": [c["id"] for c in CATEGORIES]}, f)
    if checkpoint_model is not None:
        from rethink_tf.training.checkpointing import ModelCheckpointer, model_trackable
        return ModelCheckpointer(
            model_dir, {"model_variables": model_trackable(checkpoint_model)}).save(7)
    return None


def export_run(run, path, **kwargs):
    """`rethink_tf.export.export(run, path, **kwargs)`; export re-parses the run's config.gin, so gin is
    left after it as the tiny fixtures expect it (TINY_BINDINGS, not finalized)."""
    import gin

    from rethink_tf import export
    from rethink_tf.training import config
    try:
        return export.export(run, path, **kwargs)
    finally:
        gin.clear_config()
        config.parse([], TINY_BINDINGS, finalize=False)
