"""`KeypointBranch`: the keypoint branch of the RoI heads (Keypoint R-CNN: pooler, head, targets, loss).

Detectron's KRCNN on FPN: RoIAlign 14x14 (sampling ratio 2, levels 2..5, canonical 224 / 4) -> keypoint
head -> 56x56 heatmap logits per keypoint. Person only: the model's label of the person class is
`person_class` (gin `build_keypoint_branch.person_class`, default 1, COCO's contiguous person label in
both the 80-class and the person-only label maps).

Training runs it on the box stage's foreground RoIs whose class is `person_class` and whose matched gt
has at least one labeled keypoint inside the RoI (Detectron's `_within_box` filter), at most `max_fg`
per image. Detectron samples its keypoint RoIs anew among all proposals with IoU >= 0.5 (up to 128 per
image); here they are the box sample's foreground RoIs, as detectron2 does (static shapes). Targets and
loss: rethink_tf.ops.keypoints (`heatmap_targets`, `keypoint_loss`). Inference runs it on given boxes
and returns the logits; the post-processor decodes them in original pixels (`heatmaps_to_keypoints`).
"""
import gin
import keras
from keras import ops

from rethink_tf.ops import keypoints as keypoint_ops
from rethink_tf.ops.tracing import in_xla_context

from rethink_tf.modeling.heads.keypoint_head import KeypointHead
from rethink_tf.modeling.layers import deserialize, serialize
from rethink_tf.modeling.roi_heads.pooler import PooledBranch, RoIPooler
from rethink_tf.utils import validate


@keras.saving.register_keras_serializable(package="rethink_tf")
class KeypointBranch(PooledBranch):
    """Keypoint branch: boxes -> heatmap logits [B, R, S, S, K] (S = 4 x pooler size, K keypoints).

    Args:
      head: the keypoint head layer [B, R, P, P, C] -> float32 logits [B, R, 4P, 4P, K].
      pooler: its RoIPooler (default 14x14, sampling ratio 2, levels 2..5).
      person_class: the label (1..num_classes) whose RoIs get keypoint targets.
      normalize_by_visible: loss divided by the number of visible keypoints (True, Detectron's
        default) or by images x roi_batch_size x fg_fraction x K (False, Detectron's alternative and
        detectron2's default; `loss_normalizer` then holds roi_batch_size x fg_fraction, set by the RoI
        heads).
      max_fg: keypoint RoIs per image given to the head in training (None: set by the RoI heads to
        the box sampler's foreground maximum). XLA: always this many slots; graph mode: as many as
        the image with the most keypoint RoIs has.
    """

    output_key = "keypoint_logits"

    def __init__(self, head, pooler=None, person_class=1, normalize_by_visible=True, max_fg=None,
                 loss_normalizer=None, **kwargs):
        kwargs.setdefault("name", "keypoint_branch")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.head = deserialize(head)
        pooler = deserialize(pooler)
        self.pooler = pooler if pooler is not None else RoIPooler(14, name="keypoint_pooler")
        self.person_class = int(person_class)
        self.normalize_by_visible = bool(normalize_by_visible)
        self.max_fg = None if max_fg is None else int(max_fg)
        self.loss_normalizer = loss_normalizer

    @property
    def num_keypoints(self):
        return self.head.get_config()["num_keypoints"]

    def losses(self, features, sampled, targets, training=True):
        """{"keypoint": float32 scalar} for the box stage's sampled RoIs.

        sampled: the stage's `sample` dict (rois, classes, matched_gt_index [B, R]); targets: the batch's
        gt_* tensors, with gt_keypoints float32 [B, M, K, 3] (x, y, v) canvas pixels.
        """
        if "gt_keypoints" not in targets:
            raise ValueError("Keypoint branch is on but the batch has no 'gt_keypoints' (a source without "
                             "keypoints, e.g. instances_*.json): use person_keypoints_*.json or build the "
                             "model with keypoints=False.")
        gt_keypoints = ops.cast(targets["gt_keypoints"], "float32")
        if gt_keypoints.shape[2] != self.num_keypoints:
            raise ValueError(f"Batch gt_keypoints has {gt_keypoints.shape[2]} keypoints per instance but "
                             f"the keypoint head predicts {self.num_keypoints} "
                             "(build_keypoint_branch.num_keypoints).")
        matched = ops.take_along_axis(gt_keypoints, sampled["matched_gt_index"][:, :, None, None], axis=1)
        has_visible = ops.any(keypoint_ops.visible_in_box(matched, sampled["rois"]), axis=-1)
        is_kp = ops.cast((sampled["classes"] == self.person_class) & has_visible, "int32")
        _, kp_idx = ops.top_k(is_kp, k=self.max_fg, sorted=True)  # keypoint RoIs first
        if not in_xla_context():
            num_slots = ops.maximum(ops.max(ops.sum(is_kp, axis=1)), 1)
            kp_idx = kp_idx[:, :num_slots]
        rois = ops.take_along_axis(sampled["rois"], kp_idx[..., None], axis=1)
        slot_valid = ops.take_along_axis(is_kp, kp_idx, axis=1) > 0
        kp = ops.take_along_axis(matched, kp_idx[:, :, None, None], axis=1)
        logits = self.logits(features, rois, training=training)
        labels, weights = keypoint_ops.heatmap_targets(kp, rois, logits.shape[2])
        weights = weights * ops.cast(slot_valid, "float32")[..., None]
        normalizer = None
        if not self.normalize_by_visible:
            normalizer = float(self.loss_normalizer) * self.num_keypoints * gt_keypoints.shape[0]
        return {"keypoint": keypoint_ops.keypoint_loss(logits, labels, weights, normalizer)}

    def predict(self, features, boxes, classes, training=False):
        """{"keypoint_logits": float32 [B, D, S, S, K]} for boxes [B, D, 4] canvas pixels (classes unused:
        every detection gets keypoints; a person-only model has only person detections)."""
        del classes
        return {self.output_key: self.logits(features, boxes, training=training)}

    def get_config(self):
        return {**super().get_config(), "head": serialize(self.head), "pooler": serialize(self.pooler),
                "person_class": self.person_class, "normalize_by_visible": self.normalize_by_visible,
                "max_fg": self.max_fg, "loss_normalizer": self.loss_normalizer}


def check_keypoint_branch_arguments(args):
    v = validate
    v.integer("build_keypoint_branch.num_keypoints", args["num_keypoints"], minimum=1)
    v.integer("build_keypoint_branch.num_convs", args["num_convs"], minimum=0)
    v.integer("build_keypoint_branch.conv_dim", args["conv_dim"], minimum=1)
    v.integer("build_keypoint_branch.pooler_resolution", args["pooler_resolution"], minimum=1)
    v.integer("build_keypoint_branch.person_class", args["person_class"], minimum=1)
    v.boolean("build_keypoint_branch.normalize_by_visible", args["normalize_by_visible"])
    if args["norm"] is not None:
        from rethink_tf.modeling.norm import NORM_KINDS
        v.one_of("build_keypoint_branch.norm", args["norm"], NORM_KINDS)


@gin.configurable(denylist=["num_classes", "head_norm", "pooler_kwargs"])
def build_keypoint_branch(num_classes, head_norm="gn", pooler_kwargs=None, num_keypoints=17, num_convs=8,
                          conv_dim=512, pooler_resolution=14, person_class=1, normalize_by_visible=True,
                          norm="none"):
    """The Keypoint R-CNN branch: its RoIPooler, KeypointHead and targets -> KeypointBranch.

    Args:
      num_classes: K of the detector (person_class must be <= K); head_norm: the model's head norm;
        pooler_kwargs: the model's RoI levels and sampling ratio.
      num_keypoints (gin): 17 (COCO person).
      num_convs, conv_dim (gin): the head's 3x3 convs (8 x 512, Detectron's KRCNN head).
      pooler_resolution (gin): RoIAlign output size (14 -> 56x56 heatmaps).
      person_class (gin): the person label (1: COCO, 80-class or person-only).
      normalize_by_visible (gin): see KeypointBranch.
      norm (gin): norm after each head conv: "none" (Detectron's KRCNN head has none, nor has the
        paper's GN recipe one there: SPEC section 2), a norm kind, or None for the model's head norm.
    """
    check_keypoint_branch_arguments(locals())
    if person_class > num_classes:
        raise validate.ConfigError(f"build_keypoint_branch.person_class = {person_class}: the model has "
                                   f"only {num_classes} classes")
    head = KeypointHead(num_keypoints, num_convs=num_convs, conv_dim=conv_dim,
                        norm=head_norm if norm is None else norm, name="keypoint_head")
    pooler = RoIPooler(pooler_resolution, name="keypoint_pooler", **(pooler_kwargs or {}))
    return KeypointBranch(head, pooler=pooler, person_class=person_class,
                          normalize_by_visible=normalize_by_visible)
