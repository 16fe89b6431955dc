"""Prints parameter counts of R50-FPN Mask R-CNN (COCO, 80 classes) in two configurations.

    python benchmarks/param_count.py

One JSON line per configuration: {"config", "total", "trainable", "components": {...}}.
"total" counts every variable (including BatchNorm statistics and frozen affine vectors);
"trainable" only those the optimizer updates. Checked by tests/modeling/test_param_count.py.
"""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from rethink_tf.modeling.factory import build_model  # noqa: E402

CONFIGS = {
    # Detectron's fine-tuning baseline: FrozenBN backbone (nothing frozen here, FREEZE_AT is a
    # training choice), no norm in FPN/heads, 2fc box head.
    "R50-FPN_2fc_frozenbn": dict(norm="frozen_bn", box_head="2fc"),
    # The paper's from-scratch model: GN everywhere, 4conv1fc box head.
    "R50-FPN_4conv1fc_gn": dict(norm="gn", box_head="4conv1fc"),
}


def _size(variables):
    return int(sum(np.prod(v.shape) for v in variables))


def count(config, num_classes=80):
    model = build_model(num_classes, **config).build_networks(image_size=64)
    parts = {"backbone": model.backbone, "fpn": model.fpn, "rpn_head": model.rpn.head,
             "box_head": model.roi_heads.box_stage.head, "box_predictor": model.roi_heads.box_stage.predictor,
             "mask_head": model.roi_heads.branches["mask"].head if model.has_masks else None}
    return {"total": _size(model.weights), "trainable": _size(model.trainable_weights),
            "components": {k: _size(v.weights) for k, v in parts.items() if v is not None}}


def main():
    for name, config in CONFIGS.items():
        print(json.dumps({"config": name, **count(config)}), flush=True)


if __name__ == "__main__":
    main()
