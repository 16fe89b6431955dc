"""`RegionProposalNetwork`: the RPN head with its anchors, training targets, losses and proposals.

Detectron's FPN RPN: one head shared over levels min_level..max_level (2..6; 4..4 for
VGG-16), anchors of one size per level (several on a single level for VGG-16) at aspect ratios
(0.5, 1, 2); anchors matched at IoU >= 0.7 (fg) / < 0.3 (bg), 256 sampled per image, half fg at
most; anchors reaching more than straddle_thresh pixels outside the scaled image ignored;
proposals: top pre_nms_topk per level, NMS at 0.7, top post_nms_topk per image (2000 / 1000 in
training, 1000 / 1000 at test). Everything runs in float32; no gradient flows through proposals.
torchvision's conventions (anchor centres and rounding, sigmoid-ranked proposals with a score
threshold, a minimum side) are switches with Detectron's behaviour as default (gin_configs/interop/
torchvision_maskrcnn_r50_fpn.gin sets them). Built by the gin configurable `build_rpn` (its bindings: `build_rpn.<argument>`).
"""
import gin
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from rethink_tf.modeling.heads.rpn_head import RPNHead
from rethink_tf.modeling.layers import deserialize, serialize
from rethink_tf.ops import losses, rpn_targets
from rethink_tf.ops.anchors import multilevel_anchors
from rethink_tf.ops.proposals import generate_proposals
from rethink_tf.utils import validate


@keras.saving.register_keras_serializable(package="rethink_tf")
class RegionProposalNetwork(keras.layers.Layer):
    """Anchors, RPN head outputs, proposals and RPN losses.

    Args:
      head: RPNHead over levels min_level..max_level.
      anchor_sizes: per level, an int or a tuple of ints (several sizes on one level, VGG).
      aspect_ratios: anchor h / w ratios.
      min_level, max_level: RPN levels.
      fg_iou, bg_iou, batch_size_per_image, positive_fraction: anchor matching / sampling
        (rethink_tf.ops.rpn_targets).
      straddle_thresh: anchors reaching more than this many pixels outside the scaled image are
        ignored (0: every anchor crossing its border, Detectron; -1: none, detectron2).
      pre_nms_topk_train/test: proposals kept per level before NMS; post_nms_topk_train/test: per
        image after NMS. nms_iou, min_size: proposal NMS IoU and minimum side (pixels).
      anchor_offset, round_anchors: anchor centres at (cell + anchor_offset) * stride (0.5; torchvision
        0.0) and base anchors rounded to whole pixels (False; torchvision True) (ops/anchors.py).
      anchor_stride_from_grid: strides canvas // grid size instead of 2**level (torchvision).
      proposal_score, proposal_score_threshold: "logit" or "sigmoid" ranking of NMS and the final
        top-k, and a minimum score (None) (ops/proposals.py).
    """

    def __init__(self, head, anchor_sizes=(32, 64, 128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0),
                 min_level=2, max_level=6, fg_iou=0.7, bg_iou=0.3, batch_size_per_image=256,
                 positive_fraction=0.5, straddle_thresh=0.0, pre_nms_topk_train=2000,
                 post_nms_topk_train=1000, pre_nms_topk_test=1000, post_nms_topk_test=1000,
                 nms_iou=0.7, min_size=0.0, anchor_offset=0.5, round_anchors=False, anchor_stride_from_grid=False,
                 proposal_score="logit", proposal_score_threshold=None, **kwargs):
        kwargs.setdefault("name", "rpn")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.head = head = deserialize(head)
        if len(anchor_sizes) != max_level - min_level + 1:
            raise ValueError(f"anchor_sizes has {len(anchor_sizes)} entries for RPN levels "
                             f"{min_level}..{max_level}.")
        self.anchor_sizes = tuple(tuple(s) if isinstance(s, (tuple, list)) else (s,) for s in anchor_sizes)
        if len({len(s) for s in self.anchor_sizes}) != 1:
            raise ValueError(f"Every RPN level needs the same number of anchor sizes: {anchor_sizes}.")
        self.aspect_ratios = tuple(aspect_ratios)
        self.num_anchors = len(self.anchor_sizes[0]) * len(self.aspect_ratios)
        if head.num_anchors != self.num_anchors:
            raise ValueError(f"rpn_head predicts {head.num_anchors} anchors per location; anchor "
                             f"sizes x ratios give {self.num_anchors}.")
        self.levels = list(range(min_level, max_level + 1))
        self.fg_iou, self.bg_iou = fg_iou, bg_iou
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.straddle_thresh = float(straddle_thresh)
        self.pre_nms_topk = {True: pre_nms_topk_train, False: pre_nms_topk_test}
        self.post_nms_topk = {True: post_nms_topk_train, False: post_nms_topk_test}
        self.nms_iou, self.min_size = nms_iou, min_size
        self.anchor_offset, self.round_anchors = float(anchor_offset), bool(round_anchors)
        self.anchor_stride_from_grid = bool(anchor_stride_from_grid)
        self.proposal_score, self.proposal_score_threshold = proposal_score, proposal_score_threshold
        self._anchor_cache = {}

    def anchors(self, image_size):
        """{level: float32 [H_l * W_l * A, 4]} for a static canvas (H, W), cached."""
        key = tuple(int(s) for s in image_size)
        if key not in self._anchor_cache:
            with tf.init_scope():  # computed eagerly once, embedded as constants in every trace
                self._anchor_cache[key] = self._compute_anchors(key)
        return {l: ops.convert_to_tensor(a) for l, a in self._anchor_cache[key].items()}

    def _compute_anchors(self, image_size):
        """Anchors as numpy, sizes interleaved per location: order (y, x, size, ratio)."""
        per_size = [multilevel_anchors(image_size, min_level=self.levels[0], max_level=self.levels[-1],
                                       sizes=[s[i] for s in self.anchor_sizes],
                                       aspect_ratios=self.aspect_ratios, offset=self.anchor_offset,
                                       round_base=self.round_anchors,
                                       stride_from_grid=self.anchor_stride_from_grid)
                    for i in range(len(self.anchor_sizes[0]))]
        anchors = {}
        for level in self.levels:
            parts = [ops.convert_to_numpy(a[level]).reshape(-1, 1, len(self.aspect_ratios), 4)
                     for a in per_size]
            anchors[level] = np.concatenate(parts, axis=1).reshape(-1, 4)
        return anchors

    def outputs(self, features):
        """-> (logits {level: float32 [B, A_l]}, deltas {level: float32 [B, A_l, 4]})."""
        logits, deltas = self.head({l: features[l] for l in self.levels})
        return ({l: ops.cast(v, "float32") for l, v in logits.items()},
                {l: ops.cast(v, "float32") for l, v in deltas.items()})

    def proposals(self, logits, deltas, image_size, image_info, training, with_scores=False):
        """-> (boxes float32 [B, P, 4] canvas pixels, valid bool [B, P]) (and scores float32 [B, P] as
        `proposal_score`, -inf in padded slots, when with_scores); no gradient flows through."""
        boxes, scores = generate_proposals(
            {l: ops.stop_gradient(v) for l, v in logits.items()},
            {l: ops.stop_gradient(v) for l, v in deltas.items()},
            self.anchors(image_size), image_info, pre_nms_topk_per_level=self.pre_nms_topk[bool(training)],
            post_nms_topk=self.post_nms_topk[bool(training)], nms_iou=self.nms_iou,
            min_size=self.min_size, score=self.proposal_score, score_threshold=self.proposal_score_threshold)
        if with_scores:
            return ops.stop_gradient(boxes), ops.isfinite(scores), scores
        return ops.stop_gradient(boxes), ops.isfinite(scores)

    def losses(self, logits, deltas, image_size, gt_boxes, gt_valid, image_info, seed=None):
        """-> {"rpn_objectness", "rpn_box"} float32 scalars (Detectron's normalisation)."""
        anchors = self.anchors(image_size)
        all_anchors = ops.concatenate([anchors[l] for l in self.levels], axis=0)
        all_logits = ops.concatenate([logits[l] for l in self.levels], axis=1)
        all_deltas = ops.concatenate([deltas[l] for l in self.levels], axis=1)
        labels, box_targets = rpn_targets.rpn_targets(
            all_anchors, gt_boxes, gt_valid, image_info,
            num_samples=self.batch_size_per_image, positive_fraction=self.positive_fraction,
            positive_iou=self.fg_iou, negative_iou=self.bg_iou,
            boundary_threshold=self.straddle_thresh, seed=seed)
        objectness, box = losses.rpn_losses(all_logits, all_deltas, labels, box_targets,
                                            num_samples_per_image=self.batch_size_per_image)
        return {"rpn_objectness": objectness, "rpn_box": box}

    def get_config(self):
        return {**super().get_config(), "head": serialize(self.head), "anchor_sizes": self.anchor_sizes,
                "aspect_ratios": self.aspect_ratios, "min_level": self.levels[0],
                "max_level": self.levels[-1], "fg_iou": self.fg_iou, "bg_iou": self.bg_iou,
                "batch_size_per_image": self.batch_size_per_image,
                "positive_fraction": self.positive_fraction, "straddle_thresh": self.straddle_thresh,
                "pre_nms_topk_train": self.pre_nms_topk[True], "post_nms_topk_train": self.post_nms_topk[True],
                "pre_nms_topk_test": self.pre_nms_topk[False], "post_nms_topk_test": self.post_nms_topk[False],
                "nms_iou": self.nms_iou, "min_size": self.min_size, "anchor_offset": self.anchor_offset,
                "round_anchors": self.round_anchors, "anchor_stride_from_grid": self.anchor_stride_from_grid,
                "proposal_score": self.proposal_score,
                "proposal_score_threshold": self.proposal_score_threshold}


def _check_anchor_sizes(value):
    """None, sizes per level (32, 64, ...) or several sizes per level ((128, 256, 512),), all > 0."""
    if value is None:
        return
    ok = isinstance(value, (list, tuple)) and len(value) > 0
    for level in value if ok else ():
        sizes = level if isinstance(level, (list, tuple)) else [level]
        ok = ok and len(sizes) > 0 and all(validate._is_real(v) and v > 0 for v in sizes)
    if not ok:
        validate.fail("build_rpn.anchor_sizes", value,
                      "None, one size > 0 per level, e.g. (32, 64, 128, 256, 512), or a tuple of sizes per "
                      "level, e.g. ((128, 256, 512),)")


def validate_rpn_arguments(args):
    """Checks build_rpn's own arguments (a dict); raises ConfigError naming the binding."""
    v = validate

    def b(name):
        return f"build_rpn.{name}"

    for name in ("batch_size_per_image", "pre_nms_topk_train", "post_nms_topk_train", "pre_nms_topk_test",
                 "post_nms_topk_test"):
        v.integer(b(name), args[name], minimum=1)
    lo = v.integer(b("min_level"), args["min_level"], minimum=2, maximum=6, allow_none=True)
    hi = v.integer(b("max_level"), args["max_level"], minimum=2, maximum=6, allow_none=True)
    if lo is not None and hi is not None and lo > hi:
        v.fail(b("min_level"), lo, f"<= build_rpn.max_level = {hi}")
    _check_anchor_sizes(args["anchor_sizes"])
    v.reals(b("aspect_ratios"), args["aspect_ratios"], minimum=0, exclusive_minimum=True)
    for name in ("fg_iou", "bg_iou"):
        v.number(b(name), args[name], minimum=0, maximum=1)
    if args["bg_iou"] > args["fg_iou"]:
        v.fail(b("bg_iou"), args["bg_iou"], f"<= build_rpn.fg_iou = {args['fg_iou']}")
    for name in ("positive_fraction", "nms_iou"):
        v.number(b(name), args[name], minimum=0, maximum=1, exclusive_minimum=True)
    v.number(b("straddle_thresh"), args["straddle_thresh"])
    v.number(b("min_size"), args["min_size"], minimum=0)
    v.number(b("anchor_offset"), args["anchor_offset"], minimum=0, maximum=1)
    v.boolean(b("round_anchors"), args["round_anchors"])
    v.boolean(b("anchor_stride_from_grid"), args["anchor_stride_from_grid"])
    if args["proposal_score"] not in ("logit", "sigmoid"):
        v.fail(b("proposal_score"), args["proposal_score"], "'logit' or 'sigmoid'")
    v.number(b("proposal_score_threshold"), args["proposal_score_threshold"], allow_none=True)


@gin.configurable(denylist=["feature_channels", "default_levels", "default_anchor_sizes"])
def build_rpn(feature_channels=256, default_levels=(2, 6), default_anchor_sizes=(32, 64, 128, 256, 512),
              min_level=None, max_level=None, anchor_sizes=None, aspect_ratios=(0.5, 1.0, 2.0),
              fg_iou=0.7, bg_iou=0.3, batch_size_per_image=256, positive_fraction=0.5, straddle_thresh=0.0,
              pre_nms_topk_train=2000, post_nms_topk_train=1000, pre_nms_topk_test=1000,
              post_nms_topk_test=1000, nms_iou=0.7, min_size=0.0, anchor_offset=0.5, round_anchors=False,
              anchor_stride_from_grid=False, proposal_score="logit", proposal_score_threshold=None):
    """The RPN (its head, anchors, targets and proposals) -> RegionProposalNetwork named "rpn".

    Args:
      feature_channels: width of the features it runs on (the FPN's, or VGG-16's conv5_3).
      default_levels, default_anchor_sizes: what the backbone implies when min_level / max_level /
        anchor_sizes are None: levels 2..6 with 32..512 for ResNet-FPN; 4..4 with (128, 256, 512) on
        one level for VGG-16.
      min_level, max_level, anchor_sizes, aspect_ratios (gin): anchors; anchor_sizes has one entry per
        level (a size, or a tuple of sizes).
      fg_iou, bg_iou, batch_size_per_image, positive_fraction (gin): anchor labels and sample.
      straddle_thresh (gin): anchors reaching more than this many pixels outside the scaled image are
        ignored (0, Detectron's RPN_STRADDLE_THRESH; -1 keeps all, detectron2).
      pre_nms_topk_train/test (per level), post_nms_topk_train/test (per image), nms_iou (gin): proposals.
      min_size (gin): proposals with a side <= this many pixels are dropped (0.0: empty ones;
        torchvision keeps sides >= 1e-3).
      anchor_offset, round_anchors (gin): anchor centres at (cell + offset) * stride (0.5; torchvision
        0.0), base anchors rounded to whole pixels (False; torchvision True).
      anchor_stride_from_grid (gin): anchor strides canvas // grid size (torchvision: P6 of a canvas
        that is not a multiple of 64 gets a stride below 64) instead of 2**level (False).
      proposal_score (gin): "logit" (Detectron) or "sigmoid" (torchvision) ranks NMS and the final
        top-k; proposal_score_threshold (gin): None, or a minimum score (torchvision: 0.0 on sigmoid).
    """
    args = dict(locals())
    validate_rpn_arguments(args)
    lo, hi = min_level or default_levels[0], max_level or default_levels[1]
    anchor_sizes = anchor_sizes or default_anchor_sizes
    sizes_per_location = len(anchor_sizes[0]) if isinstance(anchor_sizes[0], (tuple, list)) else 1
    head = RPNHead(num_anchors=sizes_per_location * len(aspect_ratios), num_channels=feature_channels,
                   name="rpn_head")
    return RegionProposalNetwork(
        head, anchor_sizes=anchor_sizes, aspect_ratios=aspect_ratios, min_level=lo, max_level=hi,
        fg_iou=fg_iou, bg_iou=bg_iou, batch_size_per_image=batch_size_per_image,
        positive_fraction=positive_fraction, straddle_thresh=straddle_thresh,
        pre_nms_topk_train=pre_nms_topk_train, post_nms_topk_train=post_nms_topk_train,
        pre_nms_topk_test=pre_nms_topk_test, post_nms_topk_test=post_nms_topk_test, nms_iou=nms_iou,
        min_size=min_size, anchor_offset=anchor_offset, round_anchors=round_anchors,
        anchor_stride_from_grid=anchor_stride_from_grid, proposal_score=proposal_score,
        proposal_score_threshold=proposal_score_threshold)
