"""`MaskBranch`: the mask branch of the RoI heads (its pooler, head, targets, loss and inference).

Mask R-CNN's FPN mask branch as in Detectron: RoIAlign 14x14 (sampling ratio 2, levels 2..5,
canonical 224 / 4) -> mask head -> 28x28 logits per class. Training runs it on the box stage's
foreground RoIs only (at most `max_fg` per image, foreground first in sampling order), with targets
the matched gt mask resampled into each RoI and binarized at `target_threshold` (0.5), and a
per-pixel sigmoid BCE on the gt class's channel averaged over foreground RoIs. Inference runs it on
given boxes (the post-processed detections) and returns the given class's channel after a sigmoid.
"""
import gin
import keras
from keras import ops

from rethink_tf.ops import losses, masks
from rethink_tf.ops.tracing import in_xla_context

from rethink_tf.modeling.heads.mask_head import MaskHead
from rethink_tf.modeling.layers import deserialize, serialize
from rethink_tf.modeling.roi_heads.pooler import PooledBranch, RoIPooler
from rethink_tf.utils import validate


@keras.saving.register_keras_serializable(package="rethink_tf")
class MaskBranch(PooledBranch):
    """Mask branch: boxes -> per-class mask logits [B, R, M, M, K] (M = 2 x pooler size).

    Args:
      head: the mask head layer [B, R, S, S, C] -> float32 logits [B, R, 2S, 2S, K] (registered
        under "mask", e.g. "conv_upsample").
      pooler: its RoIPooler (default 14x14, sampling ratio 2, levels 2..5, canonical 224 / 4).
      target_threshold: mask targets binarized at >= this (0.5, Detectron); None keeps the soft
        bilinear values.
      max_fg: foreground RoIs per image given to the head in training (None: set by the RoI heads
        to the box sampler's maximum, ceil(num_samples * fg_fraction), so none is dropped). Under
        XLA the head always runs on this many slots per image; in graph mode only on as many as the
        image with the most fg RoIs has (as torchvision, which runs it on positives).
    """

    output_key = "mask_probs"

    def __init__(self, head, pooler=None, target_threshold=0.5, max_fg=None, **kwargs):
        kwargs.setdefault("name", "mask_branch")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.head = deserialize(head)
        pooler = deserialize(pooler)
        self.pooler = pooler if pooler is not None else RoIPooler(14, name="mask_pooler")
        self.target_threshold = target_threshold
        self.max_fg = None if max_fg is None else int(max_fg)

    def losses(self, features, sampled, targets, training=True):
        """{"mask": float32 scalar} for the box stage's sampled RoIs.

        sampled: the stage's `sample` dict (rois, classes, matched_gt_index [B, R]);
        targets: the batch's gt_* tensors (gt_boxes [B, M, 4] canvas pixels, gt_masks [B, M, S, S]).
        """
        if "gt_masks" not in targets:
            raise ValueError("Mask head is on but the batch has no 'gt_masks' (source without "
                             "masks): build the model with mask=False.")
        # Foreground RoIs first (top_k keeps index order among ties), at most max_fg.
        is_fg = ops.cast(sampled["classes"] > 0, "int32")
        _, fg_idx = ops.top_k(is_fg, k=self.max_fg, sorted=True)
        if not in_xla_context():
            # Graph mode: only as many slots as the image with the most fg RoIs needs (the rest
            # would be masked out of the loss anyway). Under XLA all max_fg slots stay.
            num_slots = ops.maximum(ops.max(ops.sum(is_fg, axis=1)), 1)
            fg_idx = fg_idx[:, :num_slots]
        take = lambda t: ops.take_along_axis(t, fg_idx if t.ndim == 2 else fg_idx[..., None], axis=1)
        fg_rois = take(sampled["rois"])
        fg_classes = ops.where(take(is_fg) > 0, take(sampled["classes"]), 0)
        fg_gt_index = take(sampled["matched_gt_index"])
        logits = self.logits(features, fg_rois, training=training)
        gt = masks.mask_targets(targets["gt_masks"], ops.cast(targets["gt_boxes"], "float32"), fg_rois,
                                fg_gt_index, output_size=logits.shape[2], threshold=self.target_threshold)
        return {"mask": losses.mask_loss(logits, gt, fg_classes)}

    def predict(self, features, boxes, classes, training=False):
        """{"mask_probs": float32 [B, D, M, M]}: sigmoid of each box's class channel; 0 where
        classes == 0 (empty slots). boxes [B, D, 4] canvas pixels, classes int32 [B, D] in 0..K."""
        logits = self.logits(features, boxes, training=training)
        channel = ops.maximum(classes - 1, 0)
        picked = ops.take_along_axis(logits, channel[:, :, None, None, None], axis=4)[..., 0]
        return {self.output_key: ops.where((classes > 0)[:, :, None, None], ops.sigmoid(picked), 0.0)}

    def get_config(self):
        return {**super().get_config(), "head": serialize(self.head), "pooler": serialize(self.pooler),
                "target_threshold": self.target_threshold, "max_fg": self.max_fg}


def check_mask_branch_arguments(args):
    v = validate
    v.integer("build_mask_branch.num_convs", args["num_convs"], minimum=0)
    v.integer("build_mask_branch.conv_dim", args["conv_dim"], minimum=1)
    v.integer("build_mask_branch.pooler_resolution", args["pooler_resolution"], minimum=1)
    v.number("build_mask_branch.target_threshold", args["target_threshold"], minimum=0, maximum=1,
             allow_none=True)


@gin.configurable(denylist=["num_classes", "norm", "pooler_kwargs"])
def build_mask_branch(num_classes, norm="gn", pooler_kwargs=None, num_convs=4, conv_dim=256,
                      pooler_resolution=14, target_threshold=0.5):
    """The Mask R-CNN mask branch: its RoIPooler, MaskHead and targets -> MaskBranch.

    Args:
      num_classes: K (one mask channel per class); norm: the model's head norm (`build_model.head_norm`,
        else `build_model.norm`); pooler_kwargs: the model's RoI levels and sampling ratio.
      num_convs, conv_dim (gin): the head's 3x3 convs (4 x 256); the 2x deconv doubles the pooled size.
      pooler_resolution (gin): RoIAlign output size (14 -> 28x28 masks).
      target_threshold (gin): mask targets binarized at >= this (0.5, Detectron); None: soft targets.
    """
    check_mask_branch_arguments(locals())
    head = MaskHead(num_classes, num_convs=num_convs, conv_dim=conv_dim, norm=norm, name="mask_head")
    pooler = RoIPooler(pooler_resolution, name="mask_pooler", **(pooler_kwargs or {}))
    return MaskBranch(head, pooler=pooler, target_threshold=target_threshold)
