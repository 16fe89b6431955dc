"""gin factory of the detector: `build_model(num_classes, ...)` composes components built by their own
configurables (the recipe and the binding names: rethink_tf/modeling/README.md).

`build_model` only chooses the parts (backbone kind, RoI-heads kind, box head, mask branch on / off),
the norm they share, the loss weights and the sampling seed. Each part owns its parameters and checks
them, errors naming its binding:

  build_backbone.*        depth, widths, groups, blocks, freeze_at, ...   (backbones/builder.py)
  build_fpn.*             num_channels                                    (fpn.py)
  build_rpn.*             anchors, targets, proposals                     (rpn.py)
  conv_fc_box_head.*      the "4conv1fc" box head; fc_box_head.*: "2fc"   (heads/box_head.py)
  roi_sampling.*          the RoI sample of every box stage               (roi_heads/registry.py)
  standard_roi_heads.*    fg IoU, coder weights, class-agnostic           (roi_heads/registry.py)
  cascade_roi_heads.*     per-stage IoUs and coder weights                (roi_heads/cascade.py)
  build_mask_branch.*     mask head widths, pooler, target threshold      (roi_heads/mask_branch.py)
  roi_pooler.*            RoIAlign sampling ratio, FPN level mapping      (roi_heads/pooler.py)
  build_postprocessor.*   score threshold, NMS IoU, detections per image  (postprocess.py)

Defaults are the paper's R50-FPN GN Mask R-CNN with the 4conv1fc box head (Detectron values). The
old flat `build_model.<arg>` bindings are refused with the new name (`MOVED_BINDINGS`).
"""
import re

import gin

from rethink_tf.modeling.backbones.builder import BACKBONES, build_backbone
from rethink_tf.modeling.fpn import build_fpn
from rethink_tf.modeling.heads.registry import registered_heads
from rethink_tf.modeling.mask_rcnn import MaskRCNN
from rethink_tf.modeling.norm import NORM_KINDS
from rethink_tf.modeling.postprocess import build_postprocessor
from rethink_tf.modeling.roi_heads import build_roi_heads, registered_roi_heads
from rethink_tf.modeling.roi_heads.keypoint_branch import build_keypoint_branch
from rethink_tf.modeling.roi_heads.mask_branch import build_mask_branch
from rethink_tf.modeling.roi_heads.pooler import roi_pooler
from rethink_tf.modeling.roi_heads.registry import roi_sampling
from rethink_tf.modeling.rpn import build_rpn
from rethink_tf.utils import validate

# Old flat build_model argument -> the binding that now holds it (the README's table).
MOVED_BINDINGS = {
    **{name: f"build_backbone.{name}" for name in (
        "depth", "base_width", "groups", "width_per_group", "blocks_per_stage", "zero_init_last_norm",
        "freeze_at", "vgg_width_multiplier")},
    "fpn_channels": "build_fpn.num_channels",
    "rpn_min_level": "build_rpn.min_level", "rpn_max_level": "build_rpn.max_level",
    "anchor_sizes": "build_rpn.anchor_sizes", "aspect_ratios": "build_rpn.aspect_ratios",
    "rpn_fg_iou": "build_rpn.fg_iou", "rpn_bg_iou": "build_rpn.bg_iou",
    "rpn_batch_size_per_image": "build_rpn.batch_size_per_image",
    "rpn_positive_fraction": "build_rpn.positive_fraction", "rpn_straddle_thresh": "build_rpn.straddle_thresh",
    **{name: f"build_rpn.{name}" for name in (
        "pre_nms_topk_train", "post_nms_topk_train", "pre_nms_topk_test", "post_nms_topk_test")},
    "rpn_nms_iou": "build_rpn.nms_iou",
    "box_num_convs": "conv_fc_box_head.num_convs", "box_conv_dim": "conv_fc_box_head.conv_dim",
    "box_fc_dim": "conv_fc_box_head.fc_dim (box_head '4conv1fc') / fc_box_head.fc_dim (box_head '2fc')",
    "roi_num_samples": "roi_sampling.batch_size_per_image",
    "roi_fg_fraction": "roi_sampling.positive_fraction",
    "crowd_filter_thresh": "roi_sampling.crowd_filter_thresh",
    "roi_fg_iou": "standard_roi_heads.fg_iou (cascade: cascade_roi_heads.stage_ious)",
    "box_coder_weights": "standard_roi_heads.box_coder_weights (cascade: "
                         "cascade_roi_heads.stage_box_coder_weights)",
    "class_agnostic_box": "standard_roi_heads.class_agnostic",
    "mask_num_convs": "build_mask_branch.num_convs", "mask_conv_dim": "build_mask_branch.conv_dim",
    "mask_target_threshold": "build_mask_branch.target_threshold",
    **{name: f"build_postprocessor.{name}" for name in ("score_threshold", "nms_iou", "detections_per_image")},
}


def moved_binding_message(error_text, sources=()):
    """The help for gin's "Configurable 'build_model' doesn't have a parameter named 'X'" when X is an
    old flat argument: every old `build_model.<arg>` binding in error_text and in the texts `sources`
    (the gin files and bindings parsed) with its new binding. None when the error is about something else.
    """
    named = re.search(r"Configurable 'build_model' doesn't have a parameter named '(\w+)'", error_text)
    if not named or named.group(1) not in MOVED_BINDINGS:
        return None
    found = [named.group(1)]
    for text in sources:
        found += [n for n in re.findall(r"build_model\.(\w+)\s*=", text) if n in MOVED_BINDINGS]
    table = "; ".join(f"build_model.{n} -> {MOVED_BINDINGS[n]}" for n in dict.fromkeys(found))
    return (f"build_model no longer takes the settings of its components; rename: {table} "
            "(all moved names: rethink_tf/modeling/README.md, section 'Bindings')")


# Where one old argument now feeds several parameters (run directories written before the move).
_FAN_OUT = {"box_fc_dim": ("conv_fc_box_head.fc_dim", "fc_box_head.fc_dim"),
            "roi_fg_iou": ("standard_roi_heads.fg_iou",),
            "box_coder_weights": ("standard_roi_heads.box_coder_weights",)}


def translate_flat_bindings(text):
    """A run's config.gin written before the move -> (the same configuration in the new names, renamed
    old names). Each `build_model.<moved arg> = value` becomes a macro `flat_build_model_<arg>` that the
    new parameter(s) reference, so multi-line values stay intact. The old cascade ignored roi_fg_iou and
    class_agnostic_box and used box_coder_weights x k, which equals stage_box_coder_weights for the only
    weights it was run with, (10, 10, 5, 5)."""
    renamed, tail = [], []

    def rename(match):
        scope, arg = match.group(1), match.group(2)
        if arg not in MOVED_BINDINGS:
            return match.group(0)
        renamed.append(arg)
        targets = _FAN_OUT.get(arg, (MOVED_BINDINGS[arg],))
        tail.extend(f"{scope}{target} = %flat_build_model_{arg}" for target in targets)
        return f"flat_build_model_{arg} ="

    text = re.sub(r"^((?:[\w.]+/)*)build_model\.(\w+)\s*=", rename, text, flags=re.MULTILINE)
    return text + ("\n" + "\n".join(tail) + "\n" if tail else ""), renamed


def _resolve_norms(norm, backbone_norm, fpn_norm, head_norm):
    """Per-part norm kinds. FrozenBN only makes sense where pre-trained statistics exist (the
    backbone); with norm="frozen_bn", FPN and heads default to no norm (Detectron's baseline)."""
    backbone_norm = backbone_norm or norm
    part_default = "none" if norm == "frozen_bn" else norm
    return backbone_norm, fpn_norm or part_default, head_norm or part_default


def _validate_arguments(args):
    """Checks build_model's arguments (a dict of them) up front; raises ConfigError naming the binding."""
    v = validate

    def b(name):
        return f"build_model.{name}"

    v.integer(b("num_classes"), args["num_classes"], minimum=1)
    v.one_of(b("backbone"), args["backbone"], BACKBONES)
    v.one_of(b("norm"), args["norm"], NORM_KINDS)
    for name in ("backbone_norm", "fpn_norm", "head_norm"):
        if args[name] is not None:
            v.one_of(b(name), args[name], NORM_KINDS)
    v.one_of(b("box_head"), args["box_head"], registered_heads("box"))
    v.one_of(b("roi_heads"), args["roi_heads"], registered_roi_heads())
    v.boolean(b("mask"), args["mask"])
    v.boolean(b("keypoints"), args["keypoints"])
    weights = args["loss_weights"]
    if weights is not None and (not isinstance(weights, dict) or not all(
            isinstance(k, str) and validate._is_real(w) and w >= 0 for k, w in weights.items())):
        v.fail(b("loss_weights"), weights, "None or a dict {loss name: finite number >= 0}")
    v.integer(b("sampling_seed"), args["sampling_seed"], allow_none=True)
    if args["backbone"] == "vgg16":
        backbone_norm = args["backbone_norm"] or args["norm"]
        if backbone_norm != "none":
            raise validate.ConfigError("build_model: the VGG-16 body has no normalization; set "
                                       f"build_model.norm = 'none' (got backbone_norm={backbone_norm!r}).")


@gin.configurable
def build_model(num_classes, backbone="resnet", roi_heads="standard", box_head="4conv1fc", mask=True,
                keypoints=False, norm="gn", backbone_norm=None, fpn_norm=None, head_norm=None,
                loss_weights=None, sampling_seed=None):
    """Builds a MaskRCNN (Faster R-CNN when mask=False) from its components.

    Args:
      num_classes: K foreground classes.
      backbone: "resnet" (ResNet/ResNeXt + FPN, P2-P6) or "vgg16" (conv5_3 single level, no FPN);
        its shape: build_backbone.*.
      roi_heads: registered RoI-heads kind ("standard": one box stage; "cascade"; roi_heads/registry.py).
      box_head: registered box head ("4conv1fc", "2fc"; heads/box_head.py), one per box stage.
      mask: mask branch on (Mask R-CNN) or off (Faster R-CNN).
      keypoints: keypoint branch on (Keypoint R-CNN, person keypoints; build_keypoint_branch.*) or off.
      norm: norm kind of every part; backbone_norm / fpn_norm / head_norm override per part (with
        norm="frozen_bn", FPN and heads default to "none").
      loss_weights: {loss key: multiplier}.
      sampling_seed: when the batch carries no "sampling_seed" (the Trainer's per-step seed): None
        (random anchor/RoI samples every step from the global RNG) or an int that makes the samples
        deterministic functions of the candidates (tests, debugging).
    """
    _validate_arguments(locals())
    backbone_norm, fpn_norm, head_norm = _resolve_norms(norm, backbone_norm, fpn_norm, head_norm)
    # Creation order sets the initial weights drawn under a global seed: body, FPN, RPN head, box
    # stage(s), mask branch, keypoint branch (as before the components had their own configurables).
    if backbone == "resnet":
        body = build_backbone(kind="resnet", norm=backbone_norm, name="backbone")
        fpn = build_fpn(norm=fpn_norm)
        rpn = build_rpn(feature_channels=fpn.num_channels, default_levels=(2, 6),
                        default_anchor_sizes=(32, 64, 128, 256, 512))
        roi_levels, fc_dim = (2, 5), 1024
    else:
        body = build_backbone(kind="vgg16", norm="none", name="backbone")
        fpn = None
        rpn = build_rpn(feature_channels=body.out_channels[4], default_levels=(4, 4),
                        default_anchor_sizes=((128, 256, 512),))
        roi_levels, fc_dim = (4, 4), 4096  # VGG-16's fc6 / fc7
    pooler = dict(roi_pooler(), min_level=roi_levels[0], max_level=roi_levels[1])
    stage_kwargs = dict(head=box_head, head_kwargs=dict(norm=head_norm, default_fc_dim=fc_dim),
                        pooler_kwargs=pooler, sampling_seed=sampling_seed, **roi_sampling())
    roi_heads_layer = build_roi_heads(roi_heads, num_classes, stage_kwargs, {})
    if mask:
        roi_heads_layer.add_branch("mask", build_mask_branch(num_classes, norm=head_norm, pooler_kwargs=pooler))
    if keypoints:
        roi_heads_layer.add_branch("keypoint", build_keypoint_branch(num_classes, head_norm=head_norm,
                                                                     pooler_kwargs=pooler))
    return MaskRCNN(num_classes, body, fpn, rpn, roi_heads_layer, build_postprocessor(),
                    loss_weights=loss_weights, sampling_seed=sampling_seed)


# ---------------------------------------------------------------------------------------------------
# Checks of every component's bindings right after parsing (rethink_tf.training.config.check_bindings).

def component_checks():
    """[(gin name, configurable, validator of its arguments dict)]: what config.check_bindings runs on the
    parsed (unscoped) bindings before any data is read."""
    from rethink_tf.modeling import fpn, postprocess, rpn
    from rethink_tf.modeling.backbones import builder
    from rethink_tf.modeling.heads import box_head
    from rethink_tf.modeling.roi_heads import cascade, keypoint_branch, mask_branch, pooler, registry
    return [("build_model", build_model, lambda a: _validate_arguments({**a, "num_classes": 1})),
            ("build_backbone", build_backbone, builder._validate),
            ("build_fpn", build_fpn, fpn.check_fpn_arguments),
            ("build_rpn", build_rpn, rpn.validate_rpn_arguments),
            ("conv_fc_box_head", box_head.conv_fc_box_head, box_head.check_conv_fc_arguments),
            ("fc_box_head", box_head.fc_box_head, box_head.check_fc_arguments),
            ("roi_sampling", roi_sampling, registry.check_roi_sampling_arguments),
            ("standard_roi_heads", registry.standard_roi_heads, registry.check_standard_arguments),
            ("cascade_roi_heads", cascade.cascade_roi_heads, cascade.check_cascade_arguments),
            ("build_mask_branch", build_mask_branch, mask_branch.check_mask_branch_arguments),
            ("build_keypoint_branch", build_keypoint_branch, keypoint_branch.check_keypoint_branch_arguments),
            ("roi_pooler", roi_pooler, pooler.check_roi_pooler_arguments),
            ("build_postprocessor", build_postprocessor, postprocess.check_postprocessor_arguments)]


def build_model_from_bindings(num_classes, bindings=None, **model_kwargs):
    """A model from a dict of gin bindings {"build_rpn.pre_nms_topk_test": 100, ...} plus build_model
    arguments (tests, benchmarks, notebooks: tiny models in one call).

    The bindings apply to this call only (a fresh gin scope); the global configuration is untouched
    apart from the scoped entries.
    """
    global _SCOPE_COUNT
    _SCOPE_COUNT += 1
    scope = f"model_from_bindings_{_SCOPE_COUNT}"
    with gin.unlock_config():
        for key, value in (bindings or {}).items():
            gin.bind_parameter(f"{scope}/{key}", value)
    with gin.config_scope(scope):
        return build_model(num_classes, **model_kwargs)


_SCOPE_COUNT = 0
