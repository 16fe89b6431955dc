"""`StandardRoIHeads`: the box stage(s) and the branches (mask, keypoint) of a two-stage detector.

Modelled on detectron2's StandardROIHeads: training samples RoIs among the proposals (GT boxes
appended), runs the box stage on them and each branch on the stage's foreground RoIs; inference
scores and decodes every proposal (`predict_boxes`, pre-NMS), and after post-processing runs the
branches on the detections (`forward_with_given_boxes`). A subclass with several stages (Cascade
R-CNN) overrides `losses` and `predict_boxes`; branches always follow the last stage.

All boxes are float32 yxyx pixels of the model's canvas; K = foreground classes. Every output
crossing this boundary (pooled features, logits, deltas, scores, mask probabilities) is float32;
the head networks run in the compute dtype.
"""
import math

import keras
import tensorflow as tf
from keras import ops

from rethink_tf.modeling.layers import deserialize, serialize
from rethink_tf.ops.tracing import in_xla_context


@keras.saving.register_keras_serializable(package="rethink_tf")
class StandardRoIHeads(keras.layers.Layer):
    """A list of box stages (one here) and a dict of branches {name: branch}.

    Args:
      num_classes: K.
      box_stages: list of RoIBoxStage (StandardRoIHeads uses exactly one).
      branches: dict {name: branch} (e.g. {"mask": MaskBranch, "keypoint": KeypointBranch}); a branch has
        `build_networks(channels, batch_size, dtype)`, `losses(features, sampled, targets, training)`
        -> dict and `predict(features, boxes, classes, training)` -> dict.
    """

    def __init__(self, num_classes, box_stages, branches=None, **kwargs):
        kwargs.setdefault("name", "roi_heads")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.box_stages = [deserialize(stage) for stage in box_stages]
        if not self.box_stages:
            raise ValueError("StandardRoIHeads needs at least one box stage")
        self.branches = {}
        for name, branch in (branches or {}).items():
            self.add_branch(name, deserialize(branch))

    def add_branch(self, name, branch):
        """Adds a branch (run on the last stage's foreground RoIs / on given boxes)."""
        last = self.box_stages[-1]
        if getattr(branch, "max_fg", 0) is None:  # every foreground RoI of the sampler
            branch.max_fg = int(math.ceil(last.num_samples * last.fg_fraction))
        if getattr(branch, "loss_normalizer", 0) is None:  # fg RoIs per image the sampler aims at
            branch.loss_normalizer = float(last.num_samples * last.fg_fraction)
        self.branches[name] = branch

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "box_stages": [serialize(stage) for stage in self.box_stages],
                "branches": {name: serialize(branch) for name, branch in self.branches.items()}}

    @property
    def box_stage(self):
        """The last (for StandardRoIHeads the only) box stage."""
        return self.box_stages[-1]

    def build_networks(self, channels, batch_size=1, dtype="float32"):
        """Creates every variable (stages in order, then branches) by running the networks on zeros."""
        for stage in self.box_stages:
            stage.build_networks(channels, batch_size, dtype)
        for branch in self.branches.values():
            branch.build_networks(channels, batch_size, dtype)

    @staticmethod
    def gt_validity(targets):
        """(gt_valid, gt_is_crowd or None) bool [B, M] from the batch's gt_classes / gt_is_crowd.

        Crowd instances are never matched; the RoI sampler ignores proposals inside them."""
        gt_valid = ops.cast(targets["gt_classes"], "int32") > 0
        gt_is_crowd = None
        if "gt_is_crowd" in targets:
            gt_is_crowd = ops.logical_and(gt_valid, ops.cast(targets["gt_is_crowd"], "bool"))
            gt_valid = ops.logical_and(gt_valid, ops.logical_not(gt_is_crowd))
        return gt_valid, gt_is_crowd

    def losses(self, features, proposals, proposal_valid, targets, image_info, seed=None):
        """-> {"roi_class", "roi_box", <branch losses>} float32 scalars (unweighted).

        features {level: [B, H_l, W_l, C]}; proposals [B, P, 4]; proposal_valid bool [B, P];
        targets: the batch's gt_* tensors; image_info [B, 4, 2]; seed: int32 [2] stateless seed
        of the RoI sampler, or None (the stage's sampling_seed, else the global RNG).
        """
        del image_info  # single stage: RoIs are sampled among proposals already inside the image
        gt_boxes = ops.cast(targets["gt_boxes"], "float32")
        gt_classes = ops.cast(targets["gt_classes"], "int32")
        gt_valid, gt_is_crowd = self.gt_validity(targets)
        stage = self.box_stage
        sampled = stage.sample(proposals, proposal_valid, gt_boxes, gt_classes, gt_valid,
                               gt_is_crowd=gt_is_crowd, seed=seed)
        logits, deltas = stage(features, sampled["rois"], training=True)
        out = stage.losses(logits, deltas, sampled)
        for branch in self.branches.values():
            out.update(branch.losses(features, sampled, targets, training=True))
        return out

    def predict_boxes(self, features, proposals, proposal_valid, image_info):
        """-> (boxes float32 [B, P, K', 4] decoded, clipped to the scaled image (K' = K or 1),
        scores float32 [B, P, K] softmax without background, 0 for invalid proposals). Pre-NMS."""
        stage = self.box_stage
        logits, deltas = stage(features, proposals, training=False)
        # Padded proposal slots (fewer than post_nms_topk survived NMS) must not become detections.
        scores = stage.scores(logits, proposal_valid)
        boxes = stage.decode(deltas, proposals, ops.cast(image_info, "float32")[:, 1, :])
        return boxes, scores

    def forward_with_given_boxes(self, features, boxes, classes, training=False):
        """Runs every branch on given boxes [B, D, 4] with classes int32 [B, D] (1..K; 0 = empty
        slot) -> merged dict of the branches' outputs, e.g. {"mask_probs": float32 [B, D, M, M]}.

        Outputs of empty slots are 0. In graph mode the branches run only on slots [0, n), n = 1 + the
        last filled slot of any image (the post-processor fills slots from 0), and the outputs are
        zero-padded back to D: a model that keeps 5 detections runs the mask head on 5 boxes, not
        100. Under XLA (static shapes) they run on all D slots.
        """
        slots = boxes.shape[1]
        if not in_xla_context() and slots:
            positions = ops.arange(1, slots + 1, dtype="int32")[None, :]
            filled = ops.maximum(ops.max(ops.where(classes > 0, positions, 0)), 1)
            boxes, classes = boxes[:, :filled], classes[:, :filled]
        out = {}
        for branch in self.branches.values():
            out.update(branch.predict(features, ops.stop_gradient(boxes), classes, training=training))
        if not in_xla_context() and slots:
            out = {key: _pad_slots(value, slots) for key, value in out.items()}
        return out


def _pad_slots(values, slots):
    """values [B, n, ...] -> [B, slots, ...], zeros after n (graph mode: n is dynamic)."""
    pad = [[0, 0], [0, slots - tf.shape(values)[1]]] + [[0, 0]] * (values.shape.rank - 2)
    padded = tf.pad(values, pad)
    padded.set_shape([values.shape[0], slots] + values.shape[2:].as_list())
    return padded
