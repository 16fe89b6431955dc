"""torchvision `maskrcnn_resnet50_fpn` / `fasterrcnn_resnet50_fpn` state dicts -> rethink_tf layers.

Maps the backbone body (`backbone.body.*`, torchvision ResNet names, FrozenBatchNorm2d eps 1e-5), the
FPN (`backbone.fpn.inner_blocks.{i}.0` 1x1 laterals and `backbone.fpn.layer_blocks.{i}.0` 3x3 outputs
for C2..C5, both with a bias and no norm; P6 = stride-2 max-pool of P5, as rethink_tf's FPN) and the RPN
head (`rpn.head.conv.0.0` 3x3 + ReLU, `rpn.head.cls_logits`, `rpn.head.bbox_pred`) onto rethink_tf layers.

torchvision orders the RPN's box channels (anchor, (dx, dy, dw, dh)); rethink_tf (anchor, (dy, dx, dh,
dw)) (ops/box_coder.py): the bbox_pred rows are permuted on import. Anchors are ordered by aspect ratio
with h = size * sqrt(ratio) in both.

RoI heads (`map_roi_heads`): the 2fc box head `roi_heads.box_head.fc6/fc7` (fc6 reads the pooled
features flattened (C, H, W); rethink_tf flattens (H, W, C): its rows are reordered), the predictor
`roi_heads.box_predictor.cls_score` (91 = background + 90 classes, background first in both) and
`bbox_pred` (class-specific (class, dx dy dw dh) rows; rethink_tf has no background regressor: class 0's
rows are dropped, the rest permuted), the mask head `roi_heads.mask_head.{0..3}.0` (3x3 convs with a
bias, no norm), `roi_heads.mask_predictor.conv5_mask` (ConvTranspose2d [in, out, 2, 2]) and
`mask_fcn_logits` (class 0 dropped: rethink_tf's mask logits have K channels).

torchvision's inference conventions are gin switches of rethink_tf's components (defaults: Detectron's);
`DETECTOR_BINDINGS` (= gin_configs/interop/torchvision_maskrcnn_r50_fpn.gin) sets them all, with frozen BN,
the 2fc box head and torchvision's normalization (`INPUT_BINDINGS`). The differences it covers:
- anchors: torchvision centres them on cell corners (i * stride, not (i + 0.5) * stride), rounds the
  zero-centred base anchors to whole pixels and takes each level's stride as canvas // grid size (P6 of
  an 800-px side: 61, not 64) (build_rpn.anchor_offset = 0.0, round_anchors = True,
  anchor_stride_from_grid = True);
- RPN: no straddle filter (straddle_thresh = -1); NMS and the final top-k rank sigmoid(logit), kept
  when >= 0.0, sides >= 1e-3 px (proposal_score, proposal_score_threshold, min_size); 2000 proposals
  per image in training (post_nms_topk_train). Per-level top-k and per-level NMS are the same in both;
- RoIAlign: MultiScaleRoIAlign adds its eps 1e-6 after the log2 of the level mapping (Detectron: 1e-8
  inside it), roi_pooler.level_mapping = "torchvision"; aligned=False, sampling ratio 2, levels 2..5
  and canonical 224 / 4 are the same;
- box decoding (clamp of dh / dw at log(1000 / 16), clip to the image) and score > 0.05, per-class NMS
  0.5, top 100 are the same; torchvision also drops boxes with a side < 1e-2 px
  (build_postprocessor.min_box_size = 0.01);
- RoI sampling: no crowd filter (roi_sampling.crowd_filter_thresh = None);
- masks: torchvision pastes them its own way (build_postprocessor.mask_paste = "torchvision",
  rethink_tf.ops.masks.paste_masks_torchvision): a 1-px zero border, the box grown by 30 / 28 and
  truncated to integers, a bilinear resize to the integer box; its pasted masks are probabilities.
tests/interop/test_torchvision_detector_e2e.py measures what remains (float round-off, NMS ties).
Class layout: torchvision's 91 slots (0 background, 1..90 = COCO category ids, 10 of them unused "N/A")
are kept whole (90 foreground classes, label = COCO id), so softmax scores equal torchvision's.
"""
import numpy as np

from rethink_tf.interop.mapping import assign_conv, assign_norm
from rethink_tf.interop.resnet_maps import map_resnet
from rethink_tf.interop.torchvision import TorchvisionNames

DETECTOR_BINDINGS = {
    "build_model.backbone": "resnet", "build_model.norm": "frozen_bn", "build_model.backbone_norm": "frozen_bn",
    "build_model.fpn_norm": "none", "build_model.head_norm": "none", "build_model.box_head": "2fc",
    "build_model.mask": True,
    "build_backbone.depth": 50, "build_backbone.stride_in_1x1": False, "build_backbone.conv_bias": False,
    "build_backbone.freeze_at": 2, "build_fpn.num_channels": 256, "fc_box_head.fc_dim": 1024,
    "build_rpn.anchor_offset": 0.0, "build_rpn.round_anchors": True, "build_rpn.anchor_stride_from_grid": True,
    "build_rpn.straddle_thresh": -1.0,
    "build_rpn.proposal_score": "sigmoid", "build_rpn.proposal_score_threshold": 0.0, "build_rpn.min_size": 0.001,
    "build_rpn.pre_nms_topk_train": 2000, "build_rpn.post_nms_topk_train": 2000,
    "build_rpn.pre_nms_topk_test": 1000, "build_rpn.post_nms_topk_test": 1000, "build_rpn.nms_iou": 0.7,
    "roi_pooler.level_mapping": "torchvision", "roi_pooler.sampling_ratio": 2,
    "roi_sampling.crowd_filter_thresh": None, "standard_roi_heads.box_coder_weights": (10.0, 10.0, 5.0, 5.0),
    "build_postprocessor.score_threshold": 0.05, "build_postprocessor.nms_iou": 0.5,
    "build_postprocessor.detections_per_image": 100, "build_postprocessor.min_box_size": 0.01,
    "build_postprocessor.mask_paste": "torchvision",
}
INPUT_BINDINGS = {
    "input_normalization.channel_order": "rgb", "input_normalization.pixel_mean": (123.675, 116.28, 103.53),
    "input_normalization.pixel_std": (58.395, 57.12, 57.375), "build_dataset.divide_by_std": True,
}
NUM_CLASSES = 90  # torchvision's 91 COCO slots without the background
# COCO's 80 category names by id; torchvision's slots 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 are "N/A".
COCO_NAMES = {i + 1: n for i, n in enumerate((
    "person,bicycle,car,motorcycle,airplane,bus,train,truck,boat,traffic light,fire hydrant,,stop sign,"
    "parking meter,bench,bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe,,backpack,umbrella,,,"
    "handbag,tie,suitcase,frisbee,skis,snowboard,sports ball,kite,baseball bat,baseball glove,skateboard,"
    "surfboard,tennis racket,bottle,,wine glass,cup,fork,knife,spoon,bowl,banana,apple,sandwich,orange,"
    "broccoli,carrot,hot dog,pizza,donut,cake,chair,couch,potted plant,bed,,dining table,,,toilet,,tv,"
    "laptop,mouse,remote,keyboard,cell phone,microwave,oven,toaster,sink,refrigerator,,book,clock,vase,"
    "scissors,teddy bear,hair drier,toothbrush").split(",")) if n}


def label_map():
    """Labels 1..90 of an imported torchvision COCO detector: label l = torchvision slot l = COCO category
    id l; the 10 ids COCO never used are named "N/A" (as torchvision names them)."""
    return [{"id": i, "name": COCO_NAMES.get(i, "N/A")} for i in range(1, NUM_CLASSES + 1)]


def model_bindings(arch):
    """DETECTOR_BINDINGS for "maskrcnn_resnet50_fpn" or "fasterrcnn_resnet50_fpn" (no mask branch)."""
    if arch not in ("maskrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn"):
        raise ValueError(f"torchvision detector arch must be maskrcnn_resnet50_fpn or fasterrcnn_resnet50_fpn, "
                         f"got {arch!r}")
    return {**DETECTOR_BINDINGS, "build_model.mask": arch.startswith("maskrcnn")}


# The paper's GN Mask R-CNN as torchvision builds it from its components (resnet50 with GroupNorm(32),
# FPN with GroupNorm, RPNHead(conv_depth=1), FastRCNNConvFCHead 4conv1fc and MaskRCNNHeads with GroupNorm):
# rethink_tf's default GN model with torchvision's inference conventions.
GN_DETECTOR_BINDINGS = {
    **{k: v for k, v in DETECTOR_BINDINGS.items() if not k.startswith(("build_model.", "fc_box_head."))},
    "build_model.backbone": "resnet", "build_model.norm": "gn", "build_model.box_head": "4conv1fc",
    "build_model.mask": True, "conv_fc_box_head.num_convs": 4, "conv_fc_box_head.conv_dim": 256,
    "conv_fc_box_head.fc_dim": 1024,
}


def gin_text(bindings):
    """Gin lines `name = value` for a bindings dict."""
    return "".join(f"{k} = {v!r}\n" for k, v in bindings.items())


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


def _without_background(values, per_class):
    """Drops class 0's `per_class` leading rows."""
    return values[per_class:]


def _fc6_kernel(w, size=7):
    """fc6 weight [out, C*S*S] reading (C, H, W)-flattened RoI features (torchvision's S = 7) -> Keras
    kernel [S*S*C, out] reading (H, W, C)-flattened ones."""
    out, flat = w.shape
    channels = flat // (size * size)
    return w.reshape(out, channels, size, size).transpose(2, 3, 1, 0).reshape(flat, out)


def map_box_head(mapper, head, predictor, prefix="roi_heads."):
    """rethink_tf TwoFCHead + BoxPredictor <- torchvision TwoMLPHead + FastRCNNPredictor."""
    fc6, fc7 = head.fcs
    mapper.assign(fc6.kernel, f"{prefix}box_head.fc6.weight", _fc6_kernel)
    mapper.assign(fc6.bias, f"{prefix}box_head.fc6.bias")
    mapper.assign(fc7.kernel, f"{prefix}box_head.fc7.weight", np.transpose)
    mapper.assign(fc7.bias, f"{prefix}box_head.fc7.bias")
    _map_box_predictor(mapper, predictor, f"{prefix}box_predictor.")


def _map_box_predictor(mapper, predictor, p):
    """BoxPredictor <- FastRCNNPredictor `p` (class 0's box rows dropped, (dy, dx, dh, dw) order)."""
    mapper.assign(predictor.cls.kernel, p + "cls_score.weight", np.transpose)
    mapper.assign(predictor.cls.bias, p + "cls_score.bias")
    mapper.assign(predictor.box.kernel, p + "bbox_pred.weight",
                  lambda w: np.transpose(_rpn_box_rows(_without_background(w, 4))))
    mapper.assign(predictor.box.bias, p + "bbox_pred.bias", lambda b: _rpn_box_rows(_without_background(b, 4)))


def map_mask_head(mapper, head, prefix="roi_heads."):
    """rethink_tf MaskHead (no norm) <- torchvision MaskRCNNHeads + MaskRCNNPredictor."""
    for i, conv in enumerate(head.convs):
        assign_conv(mapper, conv.conv, f"{prefix}mask_head.{i}.0.weight", f"{prefix}mask_head.{i}.0.bias")
    _map_mask_predictor(mapper, head, f"{prefix}mask_predictor.")


def _map_mask_predictor(mapper, head, p):
    """MaskHead's deconv and predictor <- MaskRCNNPredictor `p` (class 0 dropped)."""
    # ConvTranspose2d weight [in, out, kh, kw] -> Keras Conv2DTranspose kernel [kh, kw, out, in].
    mapper.assign(head.deconv.kernel, p + "conv5_mask.weight", lambda w: np.transpose(w, (2, 3, 1, 0)))
    mapper.assign(head.deconv.bias, p + "conv5_mask.bias")
    mapper.assign(head.predictor.kernel, p + "mask_fcn_logits.weight",
                  lambda w: np.transpose(_without_background(w, 1), (2, 3, 1, 0)))
    mapper.assign(head.predictor.bias, p + "mask_fcn_logits.bias", lambda b: _without_background(b, 1))


def map_detector(mapper, model):
    """Every variable of a rethink_tf MaskRCNN (frozen-BN ResNet-50, no-norm FPN, 2fc box head, no-norm
    mask head) <- a torchvision maskrcnn/fasterrcnn_resnet50_fpn state dict, walked by layer attributes."""
    map_dense(mapper, model.backbone, model.fpn, model.rpn.head)
    map_box_head(mapper, model.roi_heads.box_stage.head, model.roi_heads.box_stage.predictor)
    if "mask" in model.roi_heads.branches:
        map_mask_head(mapper, model.roi_heads.branches["mask"].head)


def map_dense(mapper, backbone, fpn, rpn_head):
    """Backbone body, FPN and RPN head of a torchvision *rcnn_resnet50_fpn state dict."""
    map_resnet(mapper, backbone, TorchvisionNames(prefix="backbone.body."))
    map_fpn(mapper, fpn)
    map_rpn_head(mapper, rpn_head)


class _GroupNormNames(TorchvisionNames):
    """torchvision ResNet names for a body built with GroupNorm (no running statistics)."""

    def norm(self, position):
        names = super().norm(position)
        return {"scale": names["scale"], "shift": names["shift"]}


def _conv_gn(mapper, conv_norm, prefix):
    """A ConvNorm with GroupNorm <- torchvision Conv2dNormActivation `prefix`.0 (conv, no bias) / .1 (GN)."""
    assign_conv(mapper, conv_norm.conv, f"{prefix}.0.weight")
    assign_norm(mapper, conv_norm.norm, f"{prefix}.1.weight", f"{prefix}.1.bias")


def map_gn_detector(mapper, model):
    """Every variable of rethink_tf's GN MaskRCNN (GN_DETECTOR_BINDINGS) <- a torchvision MaskRCNN built with
    GroupNorm components (see GN_DETECTOR_BINDINGS); FastRCNNConvFCHead's Linear is `box_head.5` (index 4
    is its Flatten)."""
    map_resnet(mapper, model.backbone, _GroupNormNames(prefix="backbone.body."))
    for i, level in enumerate(model.fpn.levels):
        _conv_gn(mapper, model.fpn.lateral[level], f"backbone.fpn.inner_blocks.{i}")
        _conv_gn(mapper, model.fpn.output_convs[level], f"backbone.fpn.layer_blocks.{i}")
    map_rpn_head(mapper, model.rpn.head)
    stage = model.roi_heads.box_stage
    for i, conv in enumerate(stage.head.convs):
        _conv_gn(mapper, conv, f"roi_heads.box_head.{i}")
    fc = stage.head.fcs[0]
    mapper.assign(fc.kernel, f"roi_heads.box_head.{len(stage.head.convs) + 1}.weight", _fc6_kernel)
    mapper.assign(fc.bias, f"roi_heads.box_head.{len(stage.head.convs) + 1}.bias")
    _map_box_predictor(mapper, stage.predictor, "roi_heads.box_predictor.")
    mask_head = model.roi_heads.branches["mask"].head
    for i, conv in enumerate(mask_head.convs):
        _conv_gn(mapper, conv, f"roi_heads.mask_head.{i}")
    _map_mask_predictor(mapper, mask_head, "roi_heads.mask_predictor.")
