"""torchvision `maskrcnn_resnet50_fpn` / `fasterrcnn_resnet50_fpn` state dicts: the dense part.

Maps the backbone body (`backbone.body.*`, torchvision ResNet names, FrozenBatchNorm2d eps 1e-5), the
FPN (`backbone.fpn.inner_blocks.{i}.0` 1x1 laterals and `backbone.fpn.layer_blocks.{i}.0` 3x3 outputs
for C2..C5, both with a bias and no norm; P6 = stride-2 max-pool of P5, as rethink_tf's FPN) and the RPN
head (`rpn.head.conv.0.0` 3x3 + ReLU, `rpn.head.cls_logits`, `rpn.head.bbox_pred`) onto rethink_tf layers.

torchvision orders the RPN's box channels (anchor, (dx, dy, dw, dh)); rethink_tf (anchor, (dy, dx, dh,
dw)) (ops/box_coder.py): the bbox_pred rows are permuted on import. Anchors are ordered by aspect ratio
with h = size * sqrt(ratio) in both. The RoI heads and torchvision's inference conventions (anchor
rounding, per-level proposal NMS, small-box filter, RoIAlign aligned=False, ...) are not mapped here.
"""
import numpy as np

from rethink_tf.interop.mapping import assign_conv
from rethink_tf.interop.resnet_maps import map_resnet
from rethink_tf.interop.torchvision import TorchvisionNames

_XY_TO_YX = np.array([1, 0, 3, 2])  # (dx, dy, dw, dh) -> (dy, dx, dh, dw)


def map_fpn(mapper, fpn, prefix="backbone.fpn."):
    """rethink_tf FPN (no norm) <- torchvision FeaturePyramidNetwork; inner/layer block i = level i + 2."""
    for i, level in enumerate(fpn.levels):
        assign_conv(mapper, fpn.lateral[level].conv, f"{prefix}inner_blocks.{i}.0.weight",
                    f"{prefix}inner_blocks.{i}.0.bias")
        assign_conv(mapper, fpn.output_convs[level].conv, f"{prefix}layer_blocks.{i}.0.weight",
                    f"{prefix}layer_blocks.{i}.0.bias")


def _rpn_box_rows(values):
    """bbox_pred rows (4A, ...) in torchvision's (anchor, dx dy dw dh) order -> rethink_tf's order."""
    a = values.shape[0] // 4
    order = (np.arange(a)[:, None] * 4 + _XY_TO_YX[None, :]).reshape(-1)
    return values[order]


def map_rpn_head(mapper, head, prefix="rpn.head."):
    """rethink_tf RPNHead <- torchvision RPNHead (box rows permuted, see module docstring)."""
    assign_conv(mapper, head.conv, f"{prefix}conv.0.0.weight", f"{prefix}conv.0.0.bias")
    assign_conv(mapper, head.objectness, f"{prefix}cls_logits.weight", f"{prefix}cls_logits.bias")
    mapper.assign(head.deltas.kernel, f"{prefix}bbox_pred.weight",
                  lambda w: np.transpose(_rpn_box_rows(w), (2, 3, 1, 0)))
    mapper.assign(head.deltas.bias, f"{prefix}bbox_pred.bias", _rpn_box_rows)


def map_dense(mapper, backbone, fpn, rpn_head):
    """Backbone body, FPN and RPN head of a torchvision *rcnn_resnet50_fpn state dict."""
    map_resnet(mapper, backbone, TorchvisionNames(prefix="backbone.body."))
    map_fpn(mapper, fpn)
    map_rpn_head(mapper, rpn_head)
