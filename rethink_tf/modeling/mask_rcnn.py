"""Mask R-CNN / Faster R-CNN assembly: backbone -> FPN -> RPN -> RoI heads -> post-processor.

`model(batch, training=True)` -> dict of weighted scalar float32 losses;
`model(batch, training=False)` -> detections in original-image pixels (detection_boxes [B, D, 4],
detection_scores [B, D], detection_classes int32 [B, D], num_detections int32 [B] and, with a mask
branch, detection_masks float32 [B, D, 28, 28]; with a keypoint branch, detection_keypoints float32
[B, D, K, 3] (x, y, logit score) in original pixels). Every shape is static (fixed canvas), so train and
predict steps compile with jit_compile=True. `rethink_tf/modeling/README.md` describes the recipe.

Entry points for other code (evaluation, export, test-time augmentation): `features`, `propose`,
`roi_heads` (`losses`, `predict_boxes`, `forward_with_given_boxes`) and `postprocessor`
(`select`, `to_original`).

Random draws in training (RPN anchor sampling, RoI sampling) are stateless functions of a seed:
`batch["sampling_seed"]` (int32 [2], put there by the Trainer from (seed, global step, replica)) when
present, else the model's `sampling_seed` int; each use gets its own seed split from it
(`rethink_tf.ops.sampling.split_seed`, the same draws in eager, graph and XLA). With neither, they
draw from TF's global RNG.
"""
import keras
from keras import ops

from rethink_tf.ops import sampling

from rethink_tf.modeling.layers import deserialize, serialize
from rethink_tf.modeling.postprocess import KEYPOINT_LOGITS, DetectionPostProcessor
from rethink_tf.modeling.roi_heads import KeypointBranch, MaskBranch  # noqa: F401  (branches of roi_heads)
from rethink_tf.modeling.rpn import RegionProposalNetwork  # noqa: F401  (type of rpn)


@keras.saving.register_keras_serializable(package="rethink_tf")
class MaskRCNN(keras.Model):
    """Two-stage detector.

    Args:
      num_classes: K foreground classes (labels 1..K).
      backbone: layer images [B, H, W, 3] -> {level: features}.
      fpn: layer {level: C_l} -> {level: P_l}, or None (VGG: backbone levels used directly).
      rpn: RegionProposalNetwork (head, anchors, targets, proposals).
      roi_heads: StandardRoIHeads (box stages and branches).
      postprocessor: DetectionPostProcessor (default: score 0.05, NMS 0.5, 100 per image).
      loss_weights: dict of multipliers per loss key (default 1).
      sampling_seed: used when the batch has no "sampling_seed": None draws fresh anchor / RoI
        samples from the global RNG each step; an int makes them a fixed stateless function of the
        candidates (tests, debugging).
    """

    def __init__(self, num_classes, backbone, fpn, rpn, roi_heads, postprocessor=None,
                 loss_weights=None, sampling_seed=None, **kwargs):
        kwargs.setdefault("name", "mask_rcnn")
        # No autocast of the batch under mixed precision: boxes and image_info must stay float32
        # (bfloat16 keeps 3 significant digits). The networks cast their own inputs.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.backbone, self.fpn, self.rpn, self.roi_heads = (deserialize(x) for x in (backbone, fpn, rpn, roi_heads))
        self.postprocessor = deserialize(postprocessor) or DetectionPostProcessor()
        self.loss_weights = dict(loss_weights or {})
        self.sampling_seed = sampling_seed

    def get_config(self):
        """Every part as a Keras config, so `model.save("x.keras")` / `keras.models.load_model` round-trip
        without gin (the parts' own get_config)."""
        return {"name": self.name, "trainable": self.trainable, "num_classes": self.num_classes,
                **{part: serialize(getattr(self, part))
                   for part in ("backbone", "fpn", "rpn", "roi_heads", "postprocessor")},
                "loss_weights": self.loss_weights or None, "sampling_seed": self.sampling_seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @property
    def has_masks(self):
        return "mask" in self.roi_heads.branches

    @property
    def has_keypoints(self):
        return "keypoint" in self.roi_heads.branches

    def anchors(self, image_size):
        """{level: float32 [H_l * W_l * A, 4]} for a static canvas (H, W) (RegionProposalNetwork)."""
        return self.rpn.anchors(image_size)

    # ------------------------------------------------------------------ pieces
    def features(self, images, training=None):
        feats = self.backbone(images, training=training)
        if self.fpn is not None:
            feats = self.fpn(feats, training=training)
        return feats

    def propose(self, features, image_info, training=False, image_size=None):
        """-> (proposals float32 [B, P, 4] canvas pixels, valid bool [B, P]); no gradient flows
        through them. image_size: the canvas (H, W) the anchors cover; None reads it from the
        finest RPN level's feature map (exact for canvases that are multiples of its stride)."""
        logits, deltas = self.rpn.outputs(features)
        return self.rpn.proposals(logits, deltas, image_size or self._canvas(features),
                                  ops.cast(image_info, "float32"), training)

    def _canvas(self, features):
        level = self.rpn.levels[0]
        f = features[level]
        return (f.shape[1] * 2 ** level, f.shape[2] * 2 ** level)

    def _weighted(self, losses):
        return {k: ops.cast(v, "float32") * self.loss_weights.get(k, 1.0) for k, v in losses.items()}

    def build(self, input_shape=None):
        """Creates all variables (Keras calls this on the first call with the batch's shapes)."""
        size = 64
        if isinstance(input_shape, dict) and input_shape.get("images") is not None:
            size = input_shape["images"][1] or size
        self.build_networks(image_size=size)
        self.built = True

    def build_networks(self, image_size=64, batch_size=1):
        """Creates every variable by running each network once on zeros (no ops needed).

        Use before loading weights or counting parameters without a full forward pass.
        """
        images = ops.zeros((batch_size, image_size, image_size, 3), self.compute_dtype)
        feats = self.features(images, training=False)
        self.rpn.outputs(feats)
        channels = feats[self.roi_heads.box_stage.pooler.min_level].shape[-1]
        self.roi_heads.build_networks(channels, batch_size, self.compute_dtype)
        return self

    # ------------------------------------------------------------------ call
    def call(self, batch, training=False):
        if not isinstance(batch, dict) or "images" not in batch or "image_info" not in batch:
            raise ValueError("MaskRCNN expects a batch dict with 'images' and 'image_info' "
                             f"(rethink_tf.data.input_pipeline); got {type(batch).__name__} with keys "
                             f"{sorted(batch) if isinstance(batch, dict) else None}.")
        images = ops.cast(batch["images"], self.compute_dtype)
        height, width = images.shape[1], images.shape[2]
        if height is None or width is None:
            raise ValueError("MaskRCNN needs a static canvas size (images [B, H, W, 3] with known H, W).")
        image_info = ops.cast(batch["image_info"], "float32")
        feats = self.features(images, training=training)
        if training:
            return self._train_losses(batch, feats, (height, width), image_info)
        return self.detect(feats, image_info, image_size=(height, width))

    def _train_losses(self, batch, feats, canvas, image_info):
        for key in ("gt_boxes", "gt_classes"):
            if key not in batch:
                raise ValueError(f"Training batch lacks {key!r} (see rethink_tf.data.input_pipeline).")
        targets = {k: v for k, v in batch.items() if k.startswith("gt_")}
        rpn_seed, roi_seed = self._sampling_seeds(batch)
        logits, deltas = self.rpn.outputs(feats)
        proposals, proposal_valid = self.rpn.proposals(logits, deltas, canvas, image_info, training=True)
        gt_valid, _ = self.roi_heads.gt_validity(targets)  # crowd boxes: negatives for the RPN
        out = self.rpn.losses(logits, deltas, canvas, ops.cast(targets["gt_boxes"], "float32"), gt_valid,
                              image_info, seed=rpn_seed)
        out.update(self.roi_heads.losses(feats, proposals, proposal_valid, targets, image_info,
                                         seed=roi_seed))
        return self._weighted(out)

    def _sampling_seeds(self, batch):
        """(RPN seed, RoI seed): int32 [2] stateless seeds split from batch["sampling_seed"] or from
        the model's sampling_seed; (None, None) when neither is set (global RNG)."""
        seed = batch.get("sampling_seed")
        if seed is None:
            seed = self.sampling_seed
        seed = sampling.as_stateless_seed(seed)
        if seed is None:
            return None, None
        rpn_seed, roi_seed = sampling.split_seed(seed, 2)
        return rpn_seed, roi_seed

    def detect(self, features, image_info, proposals=None, image_size=None):
        """Detections in original-image pixels (the keys of the module docstring).

        proposals: optional (boxes [B, P, 4], valid [B, P]) instead of the RPN's; image_size: the
        canvas (H, W) (see `propose`)."""
        image_info = ops.cast(image_info, "float32")
        if proposals is None:
            proposals = self.propose(features, image_info, training=False, image_size=image_size)
        boxes, scores = self.roi_heads.predict_boxes(features, *proposals, image_info)
        detections = self.postprocessor.select(boxes, scores)
        extra = self.roi_heads.forward_with_given_boxes(
            features, detections["detection_boxes"], detections["detection_classes"])
        if MaskBranch.output_key in extra:
            detections["detection_masks"] = extra[MaskBranch.output_key]
        if KeypointBranch.output_key in extra:  # decoded into detection_keypoints by to_original
            detections[KEYPOINT_LOGITS] = extra[KeypointBranch.output_key]
        return self.postprocessor.to_original(detections, image_info)
