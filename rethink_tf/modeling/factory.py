"""gin factory of the detector: `build_model(num_classes, ...)` (the recipe: rethink_tf/modeling/README.md).

Defaults are the paper's R50-FPN GN Mask R-CNN with the 4conv1fc box head (Detectron values).
Narrow test models change only widths/depths here; there is one implementation.
"""
import gin

from rethink_tf.modeling.backbones.builder import BACKBONES, build_backbone
from rethink_tf.modeling.backbones.resnet import BLOCKS_PER_DEPTH
from rethink_tf.modeling.fpn import FPN
from rethink_tf.modeling.heads.mask_head import MaskHead
from rethink_tf.modeling.heads.registry import build_head, registered_heads
from rethink_tf.modeling.heads.rpn_head import RPNHead
from rethink_tf.modeling.mask_rcnn import MaskRCNN
from rethink_tf.modeling.norm import NORM_KINDS
from rethink_tf.modeling.postprocess import DetectionPostProcessor
from rethink_tf.modeling.roi_heads import MaskBranch, RoIBoxStage, RoIPooler, StandardRoIHeads
from rethink_tf.modeling.rpn import RegionProposalNetwork
from rethink_tf.utils import validate


def _resolve_norms(norm, backbone_norm, fpn_norm, head_norm):
    """Per-part norm kinds. FrozenBN only makes sense where pre-trained statistics exist (the
    backbone); with norm="frozen_bn", FPN and heads default to no norm (Detectron's baseline)."""
    backbone_norm = backbone_norm or norm
    part_default = "none" if norm == "frozen_bn" else norm
    fpn_norm = fpn_norm or part_default
    head_norm = head_norm or part_default
    for part, kind in (("norm", norm), ("backbone_norm", backbone_norm), ("fpn_norm", fpn_norm),
                       ("head_norm", head_norm)):
        if kind not in NORM_KINDS:
            raise validate.ConfigError(f"build_model.{part} = {kind!r}; expected one of {NORM_KINDS}.")
    return backbone_norm, fpn_norm, head_norm


def _check_anchor_sizes(value):
    """None, sizes per level (32, 64, ...) or several sizes per level ((128, 256, 512),), all > 0."""
    if value is None:
        return
    ok = isinstance(value, (list, tuple)) and len(value) > 0
    for level in value if ok else ():
        sizes = level if isinstance(level, (list, tuple)) else [level]
        ok = ok and len(sizes) > 0 and all(validate._is_real(v) and v > 0 for v in sizes)
    if not ok:
        validate.fail("build_model.anchor_sizes", value,
                      "None, one size > 0 per level, e.g. (32, 64, 128, 256, 512), or a tuple of sizes per "
                      "level, e.g. ((128, 256, 512),)")


def _validate_arguments(args):
    """Checks build_model's arguments (a dict of them) up front; raises ConfigError naming the binding.

    `depth` is checked even when `blocks_per_stage` overrides the block counts it implies.
    """
    v = validate

    def b(name):
        return f"build_model.{name}"

    v.integer(b("num_classes"), args["num_classes"], minimum=1)
    v.one_of(b("backbone"), args["backbone"], BACKBONES)
    v.one_of(b("depth"), args["depth"], tuple(sorted(BLOCKS_PER_DEPTH)))
    v.integers(b("blocks_per_stage"), args["blocks_per_stage"], length=4, minimum=1, allow_none=True)
    for name in ("base_width", "groups", "fpn_channels", "rpn_batch_size_per_image", "pre_nms_topk_train",
                 "post_nms_topk_train", "pre_nms_topk_test", "post_nms_topk_test", "box_conv_dim",
                 "roi_num_samples", "mask_conv_dim", "detections_per_image"):
        v.integer(b(name), args[name], minimum=1)
    for name in ("width_per_group", "box_fc_dim"):
        v.integer(b(name), args[name], minimum=1, allow_none=True)
    for name in ("box_num_convs", "mask_num_convs"):
        v.integer(b(name), args[name], minimum=0)
    v.integer(b("freeze_at"), args["freeze_at"], minimum=0, maximum=5)
    for name in ("zero_init_last_norm", "class_agnostic_box", "mask"):
        v.boolean(b(name), args[name])
    v.number(b("vgg_width_multiplier"), args["vgg_width_multiplier"], minimum=0, exclusive_minimum=True)
    v.one_of(b("norm"), args["norm"], NORM_KINDS)
    for name in ("backbone_norm", "fpn_norm", "head_norm"):
        if args[name] is not None:
            v.one_of(b(name), args[name], NORM_KINDS)
    lo = v.integer(b("rpn_min_level"), args["rpn_min_level"], minimum=2, maximum=6, allow_none=True)
    hi = v.integer(b("rpn_max_level"), args["rpn_max_level"], minimum=2, maximum=6, allow_none=True)
    if lo is not None and hi is not None and lo > hi:
        v.fail(b("rpn_min_level"), lo, f"<= build_model.rpn_max_level = {hi}")
    _check_anchor_sizes(args["anchor_sizes"])
    v.reals(b("aspect_ratios"), args["aspect_ratios"], minimum=0, exclusive_minimum=True)
    for name in ("rpn_fg_iou", "rpn_bg_iou", "roi_fg_iou", "score_threshold"):
        v.number(b(name), args[name], minimum=0, maximum=1)
    if args["rpn_bg_iou"] > args["rpn_fg_iou"]:
        v.fail(b("rpn_bg_iou"), args["rpn_bg_iou"], f"<= build_model.rpn_fg_iou = {args['rpn_fg_iou']}")
    for name in ("rpn_positive_fraction", "roi_fg_fraction", "rpn_nms_iou", "nms_iou"):
        v.number(b(name), args[name], minimum=0, maximum=1, exclusive_minimum=True)
    v.one_of(b("box_head"), args["box_head"], registered_heads("box"))
    v.reals(b("box_coder_weights"), args["box_coder_weights"], length=4, minimum=0, exclusive_minimum=True)
    weights = args["loss_weights"]
    if weights is not None and (not isinstance(weights, dict) or not all(
            isinstance(k, str) and validate._is_real(w) and w >= 0 for k, w in weights.items())):
        v.fail(b("loss_weights"), weights, "None or a dict {loss name: finite number >= 0}")
    v.integer(b("sampling_seed"), args["sampling_seed"], allow_none=True)


@gin.configurable
def build_model(num_classes,
                backbone="resnet", depth=50, base_width=64, groups=1, width_per_group=None,
                blocks_per_stage=None, zero_init_last_norm=False, freeze_at=0,
                vgg_width_multiplier=1.0,
                norm="gn", backbone_norm=None, fpn_norm=None, head_norm=None,
                fpn_channels=256,
                rpn_min_level=None, rpn_max_level=None, anchor_sizes=None,
                aspect_ratios=(0.5, 1.0, 2.0),
                rpn_fg_iou=0.7, rpn_bg_iou=0.3, rpn_batch_size_per_image=256,
                rpn_positive_fraction=0.5, rpn_straddle_thresh=0.0,
                pre_nms_topk_train=2000, post_nms_topk_train=1000,
                pre_nms_topk_test=1000, post_nms_topk_test=1000, rpn_nms_iou=0.7,
                box_head="4conv1fc", box_num_convs=4, box_conv_dim=256, box_fc_dim=None,
                roi_num_samples=512, roi_fg_fraction=0.25, roi_fg_iou=0.5, crowd_filter_thresh=0.7,
                box_coder_weights=(10.0, 10.0, 5.0, 5.0), class_agnostic_box=False,
                mask=True, mask_num_convs=4, mask_conv_dim=256, mask_target_threshold=0.5,
                score_threshold=0.05, nms_iou=0.5, detections_per_image=100,
                loss_weights=None, sampling_seed=None):
    """Builds a MaskRCNN (Faster R-CNN when mask=False).

    Args (groups):
      num_classes: K foreground classes.
      backbone: "resnet" (ResNet/ResNeXt + FPN, P2-P6) or "vgg16" (conv5_3 single level, no FPN).
      depth, base_width, groups, width_per_group, blocks_per_stage, zero_init_last_norm, freeze_at:
        ResNet(X) shape (see backbones.resnet.ResNet). ResNeXt-101 32x8d: depth=101, groups=32,
        width_per_group=8.
      vgg_width_multiplier: VGG-16 widths scale (tests).
      norm: norm kind for all parts; backbone_norm / fpn_norm / head_norm override per part.
      fpn_channels: FPN width (also RPN conv width).
      rpn_min_level, rpn_max_level, anchor_sizes, aspect_ratios: anchors (None: 2..6 with
        32..512 for ResNet-FPN; 4..4 with (128, 256, 512) on one level for VGG-16).
      rpn_*, pre/post_nms_topk_*: RPN targets and proposals. rpn_straddle_thresh: anchors reaching
        more than this many pixels outside the scaled image are ignored (0, Detectron's
        RPN_STRADDLE_THRESH; -1 keeps all, detectron2).
      box_head: registered box head ("4conv1fc", "2fc"); box_num_convs / box_conv_dim / box_fc_dim
        its widths (box_fc_dim None: 1024, 4096 for VGG-16's fc6/fc7).
      roi_*: RoI sampling; crowd_filter_thresh: proposals whose intersection over their own area
        with a crowd box is > this are ignored (0.7, Detectron's CROWD_FILTER_THRESH; None: off).
      box_coder_weights, class_agnostic_box: box regression.
      mask: mask head on (Mask R-CNN) or off (Faster R-CNN); mask_num_convs / mask_conv_dim widths.
      mask_target_threshold: mask targets binarized at >= this (0.5, Detectron); None: soft.
      score_threshold, nms_iou, detections_per_image: inference.
      loss_weights: {loss key: multiplier}.
      sampling_seed: when the batch carries no "sampling_seed" (the Trainer's per-step seed): None
        (random anchor/RoI samples every step from the global RNG) or an int that makes the samples
        deterministic functions of the candidates (tests, debugging).
    """
    _validate_arguments(locals())
    backbone_norm, fpn_norm, head_norm = _resolve_norms(norm, backbone_norm, fpn_norm, head_norm)
    if backbone == "resnet":
        body = build_backbone(kind="resnet", depth=depth, norm=backbone_norm, base_width=base_width,
                              groups=groups, width_per_group=width_per_group,
                              zero_init_last_norm=zero_init_last_norm, freeze_at=freeze_at,
                              blocks_per_stage=blocks_per_stage, name="backbone")
        fpn = FPN(num_channels=fpn_channels, norm=fpn_norm, min_level=2, max_level=5, name="fpn")
        feature_channels = fpn_channels
        lo, hi = rpn_min_level or 2, rpn_max_level or 6
        anchor_sizes = anchor_sizes or (32, 64, 128, 256, 512)
        roi_levels = (2, 5)
        fc_dim = box_fc_dim or 1024
    else:
        if backbone_norm != "none":
            raise validate.ConfigError("build_model: the VGG-16 body has no normalization; set norm='none' "
                             f"(got backbone_norm={backbone_norm!r}).")
        body = build_backbone(kind="vgg16", norm="none", vgg_width_multiplier=vgg_width_multiplier,
                              freeze_at=freeze_at, name="backbone")
        fpn = None
        feature_channels = body.out_channels[4]
        lo, hi = rpn_min_level or 4, rpn_max_level or 4
        anchor_sizes = anchor_sizes or ((128, 256, 512),)
        roi_levels = (4, 4)
        fc_dim = box_fc_dim or 4096
    sizes_per_location = len(anchor_sizes[0]) if isinstance(anchor_sizes[0], (tuple, list)) else 1
    rpn_head = RPNHead(num_anchors=sizes_per_location * len(aspect_ratios),
                       num_channels=feature_channels, name="rpn_head")
    if box_head == "2fc":
        head_kwargs = dict(fc_dim=fc_dim)
    elif box_head == "4conv1fc":
        head_kwargs = dict(num_convs=box_num_convs, conv_dim=box_conv_dim, fc_dim=fc_dim, norm=head_norm)
    else:
        build_head("box", box_head)  # raises with the registered names
        head_kwargs = {}
    pooler = dict(sampling_ratio=2, min_level=roi_levels[0], max_level=roi_levels[1])
    box_stage = RoIBoxStage(
        num_classes, head=box_head, head_kwargs=head_kwargs, coder_weights=box_coder_weights,
        fg_iou=roi_fg_iou, num_samples=roi_num_samples, fg_fraction=roi_fg_fraction,
        class_agnostic=class_agnostic_box, pooler=RoIPooler(7, name="box_pooler", **pooler),
        crowd_filter_thresh=crowd_filter_thresh, sampling_seed=sampling_seed, name="box_stage")
    branches = {}
    if mask:
        branches["mask"] = MaskBranch(
            MaskHead(num_classes, num_convs=mask_num_convs, conv_dim=mask_conv_dim, norm=head_norm,
                     name="mask_head"),
            pooler=RoIPooler(14, name="mask_pooler", **pooler), target_threshold=mask_target_threshold)
    rpn = RegionProposalNetwork(
        rpn_head, anchor_sizes=anchor_sizes, aspect_ratios=aspect_ratios, min_level=lo, max_level=hi,
        fg_iou=rpn_fg_iou, bg_iou=rpn_bg_iou, batch_size_per_image=rpn_batch_size_per_image,
        positive_fraction=rpn_positive_fraction, straddle_thresh=rpn_straddle_thresh,
        pre_nms_topk_train=pre_nms_topk_train, post_nms_topk_train=post_nms_topk_train,
        pre_nms_topk_test=pre_nms_topk_test, post_nms_topk_test=post_nms_topk_test, nms_iou=rpn_nms_iou)
    return MaskRCNN(
        num_classes, body, fpn, rpn, StandardRoIHeads(num_classes, [box_stage], branches),
        DetectionPostProcessor(score_threshold=score_threshold, nms_iou=nms_iou,
                               detections_per_image=detections_per_image),
        loss_weights=loss_weights, sampling_seed=sampling_seed)
