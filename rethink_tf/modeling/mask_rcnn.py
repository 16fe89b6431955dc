"""Mask R-CNN / Faster R-CNN assembly.

`model(batch, training=True)` -> dict of weighted scalar float32 losses;
`model(batch, training=False)` -> detections in original-image pixels. Every shape is static
(fixed canvas), so train and predict steps compile with jit_compile=True.

Random draws in training (RPN anchor sampling, RoI sampling) are stateless functions of a seed:
`batch["sampling_seed"]` (int32 [2], put there by the Trainer from (seed, global step, replica)) when
present, else the model's `sampling_seed` int; each use gets its own seed split from it
(`rethink_tf.ops.sampling.split_seed`, the same draws in eager, graph and XLA). With neither, they
draw from TF's global RNG.
"""
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from rethink_tf.ops import losses, masks, rpn_targets, sampling
from rethink_tf.ops.anchors import multilevel_anchors
from rethink_tf.ops.nms import multiclass_nms
from rethink_tf.ops.proposals import generate_proposals
from rethink_tf.ops.roi_align import multilevel_roi_align
from rethink_tf.ops.tracing import in_xla_context

from rethink_tf.modeling.roi_stage import RoIBoxStage  # noqa: F401  (type of box_stage)


class MaskRCNN(keras.Model):
    """Two-stage detector: backbone (+ FPN) -> RPN -> proposals -> RoI box stage (-> mask head).

    Args:
      num_classes: K foreground classes (labels 1..K).
      backbone: layer images [B, H, W, 3] -> {level: features}.
      fpn: layer {level: C_l} -> {level: P_l}, or None (VGG: backbone levels used directly).
      rpn_head: RPNHead over levels rpn_min_level..rpn_max_level.
      box_stage: RoIBoxStage.
      mask_head: MaskHead or None (Faster R-CNN).
      anchor_sizes: per RPN level, an int or a tuple of ints (several sizes on one level, VGG).
      aspect_ratios: anchor h / w ratios.
      rpn_min_level, rpn_max_level: RPN levels (2, 6; 4, 4 for VGG).
      rpn_*: RPN matching / sampling (see rethink_tf.ops.rpn_targets).
      rpn_straddle_thresh: anchors reaching more than this many pixels outside the scaled image are
        ignored (0: every anchor crossing its border, Detectron; -1: none, detectron2).
      pre_nms_topk_train/test: proposals kept per level before NMS (2000 / 1000).
      post_nms_topk_train/test: proposals kept per image after NMS (1000 / 1000).
      rpn_nms_iou: 0.7.
      mask_pooled_size: RoIAlign side for masks (14 -> 28x28 masks).
      mask_target_threshold: mask targets (the gt mask resampled into each RoI) are binarized at
        >= this (0.5, Detectron); None keeps the soft bilinear values.
      max_fg_masks: foreground RoIs per image given to the mask head in training
        (None: ceil(num_samples * fg_fraction), the sampler's maximum, so none is dropped).
        Under XLA the mask head always runs on this many slots per image; in graph mode only on
        as many as the image with the most fg RoIs has (as torchvision, which runs it on positives).
      score_threshold, nms_iou, detections_per_image: inference post-processing.
      loss_weights: dict of multipliers per loss key (default 1).
      sampling_seed: used when the batch has no "sampling_seed": None draws fresh anchor / RoI
        samples from the global RNG each step; an int makes them a fixed stateless function of the
        candidates (tests, debugging).
    """

    def __init__(self, num_classes, backbone, fpn, rpn_head, box_stage, mask_head=None,
                 anchor_sizes=(32, 64, 128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0),
                 rpn_min_level=2, rpn_max_level=6,
                 rpn_fg_iou=0.7, rpn_bg_iou=0.3, rpn_batch_size_per_image=256, rpn_positive_fraction=0.5,
                 rpn_straddle_thresh=0.0,
                 pre_nms_topk_train=2000, post_nms_topk_train=1000,
                 pre_nms_topk_test=1000, post_nms_topk_test=1000, rpn_nms_iou=0.7, rpn_min_size=0.0,
                 mask_pooled_size=14, mask_target_threshold=0.5, max_fg_masks=None,
                 score_threshold=0.05, nms_iou=0.5, detections_per_image=100,
                 loss_weights=None, sampling_seed=None, **kwargs):
        kwargs.setdefault("name", "mask_rcnn")
        # No autocast of the batch under mixed precision: boxes and image_info must stay float32
        # (bfloat16 keeps 3 significant digits). The networks cast their own inputs.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.backbone, self.fpn, self.rpn_head = backbone, fpn, rpn_head
        self.box_stage, self.mask_head = box_stage, mask_head
        if len(anchor_sizes) != rpn_max_level - rpn_min_level + 1:
            raise ValueError(f"anchor_sizes has {len(anchor_sizes)} entries for RPN levels "
                             f"{rpn_min_level}..{rpn_max_level}.")
        self.anchor_sizes = tuple(tuple(s) if isinstance(s, (tuple, list)) else (s,) for s in anchor_sizes)
        if len({len(s) for s in self.anchor_sizes}) != 1:
            raise ValueError(f"Every RPN level needs the same number of anchor sizes: {anchor_sizes}.")
        self.aspect_ratios = tuple(aspect_ratios)
        self.num_anchors = len(self.anchor_sizes[0]) * len(self.aspect_ratios)
        if rpn_head.num_anchors != self.num_anchors:
            raise ValueError(f"rpn_head predicts {rpn_head.num_anchors} anchors per location; anchor "
                             f"sizes x ratios give {self.num_anchors}.")
        self.rpn_levels = list(range(rpn_min_level, rpn_max_level + 1))
        self.rpn_fg_iou, self.rpn_bg_iou = rpn_fg_iou, rpn_bg_iou
        self.rpn_batch_size_per_image, self.rpn_positive_fraction = rpn_batch_size_per_image, rpn_positive_fraction
        self.rpn_straddle_thresh = float(rpn_straddle_thresh)
        self.pre_nms_topk = {True: pre_nms_topk_train, False: pre_nms_topk_test}
        self.post_nms_topk = {True: post_nms_topk_train, False: post_nms_topk_test}
        self.rpn_nms_iou, self.rpn_min_size = rpn_nms_iou, rpn_min_size
        self.mask_pooled_size = mask_pooled_size
        self.mask_target_threshold = mask_target_threshold
        if max_fg_masks is None:
            max_fg_masks = -(-box_stage.num_samples * box_stage.fg_fraction // 1)
        self.max_fg_masks = int(max_fg_masks)
        self.score_threshold, self.nms_iou = score_threshold, nms_iou
        self.detections_per_image = detections_per_image
        self.loss_weights = dict(loss_weights or {})
        self.sampling_seed = sampling_seed
        self._anchor_cache = {}

    # ------------------------------------------------------------------ pieces
    def anchors(self, image_size):
        """{level: float32 [H_l * W_l * A, 4]} for a static canvas (H, W), cached."""
        key = tuple(int(s) for s in image_size)
        if key not in self._anchor_cache:
            with tf.init_scope():  # computed eagerly once, embedded as constants in every trace
                self._anchor_cache[key] = self._compute_anchors(key)
        return {l: ops.convert_to_tensor(a) for l, a in self._anchor_cache[key].items()}

    def _compute_anchors(self, image_size):
        """Anchors as numpy, sizes interleaved per location: order (y, x, size, ratio)."""
        lo, hi = self.rpn_levels[0], self.rpn_levels[-1]
        per_size = [multilevel_anchors(image_size, min_level=lo, max_level=hi,
                                       sizes=[s[i] for s in self.anchor_sizes],
                                       aspect_ratios=self.aspect_ratios)
                    for i in range(len(self.anchor_sizes[0]))]
        anchors = {}
        for level in self.rpn_levels:
            parts = [ops.convert_to_numpy(a[level]).reshape(-1, 1, len(self.aspect_ratios), 4)
                     for a in per_size]
            anchors[level] = np.concatenate(parts, axis=1).reshape(-1, 4)
        return anchors

    def features(self, images, training=None):
        feats = self.backbone(images, training=training)
        if self.fpn is not None:
            feats = self.fpn(feats, training=training)
        return feats

    def rpn(self, feats):
        """-> (logits {level: float32 [B, A_l]}, deltas {level: float32 [B, A_l, 4]})."""
        logits, deltas = self.rpn_head({l: feats[l] for l in self.rpn_levels})
        return ({l: ops.cast(v, "float32") for l, v in logits.items()},
                {l: ops.cast(v, "float32") for l, v in deltas.items()})

    def proposals(self, logits, deltas, anchors, image_info, training):
        """-> (boxes [B, P, 4] canvas pixels, valid bool [B, P]); no gradient flows through them."""
        boxes, scores = generate_proposals(
            {l: ops.stop_gradient(v) for l, v in logits.items()},
            {l: ops.stop_gradient(v) for l, v in deltas.items()},
            anchors, image_info, pre_nms_topk_per_level=self.pre_nms_topk[bool(training)],
            post_nms_topk=self.post_nms_topk[bool(training)], nms_iou=self.rpn_nms_iou,
            min_size=self.rpn_min_size)
        return ops.stop_gradient(boxes), ops.isfinite(scores)

    def mask_logits(self, feats, boxes, training=None):
        """Mask logits float32 [B, R, 2S, 2S, K] for boxes [B, R, 4] canvas pixels."""
        pooled = multilevel_roi_align(
            {l: ops.cast(f, "float32") for l, f in feats.items()}, ops.stop_gradient(boxes), self.mask_pooled_size,
            sampling_ratio=self.box_stage.sampling_ratio,
            min_level=self.box_stage.min_level, max_level=self.box_stage.max_level,
            canonical_size=self.box_stage.canonical_size, canonical_level=self.box_stage.canonical_level)
        return self.mask_head(ops.cast(pooled, self.compute_dtype), training=training)

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
        self.rpn(feats)
        stage = self.box_stage
        channels = feats[stage.min_level].shape[-1]
        pooled = ops.zeros((batch_size, 1, stage.pooled_size, stage.pooled_size, channels),
                           self.compute_dtype)
        stage.predictor(stage.head(pooled, training=False))
        if self.mask_head is not None:
            pooled = ops.zeros((batch_size, 1, self.mask_pooled_size, self.mask_pooled_size, channels),
                               self.compute_dtype)
            self.mask_head(pooled, training=False)
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
        logits, deltas = self.rpn(feats)
        anchors = self.anchors((height, width))
        proposals = self.proposals(logits, deltas, anchors, image_info, training)
        if training:
            return self._train_losses(batch, feats, logits, deltas, anchors, proposals, image_info)
        return self._detect(feats, proposals, image_info)

    def _train_losses(self, batch, feats, logits, deltas, anchors, proposals, image_info):
        proposals, proposal_valid = proposals
        for key in ("gt_boxes", "gt_classes"):
            if key not in batch:
                raise ValueError(f"Training batch lacks {key!r} (see rethink_tf.data.input_pipeline).")
        gt_boxes = ops.cast(batch["gt_boxes"], "float32")
        gt_classes = ops.cast(batch["gt_classes"], "int32")
        gt_valid = gt_classes > 0
        gt_is_crowd = None
        if "gt_is_crowd" in batch:  # crowd instances are never matched; the RoI sampler ignores
            # proposals inside them (RoIBoxStage.crowd_filter_thresh); anchors on them are negatives.
            gt_is_crowd = ops.logical_and(gt_valid, ops.cast(batch["gt_is_crowd"], "bool"))
            gt_valid = ops.logical_and(gt_valid, ops.logical_not(gt_is_crowd))
        rpn_seed, roi_seed = self._sampling_seeds(batch)

        all_anchors = ops.concatenate([anchors[l] for l in self.rpn_levels], axis=0)
        all_logits = ops.concatenate([logits[l] for l in self.rpn_levels], axis=1)
        all_deltas = ops.concatenate([deltas[l] for l in self.rpn_levels], axis=1)
        rpn_labels, rpn_box_targets = rpn_targets.rpn_targets(
            all_anchors, gt_boxes, gt_valid, image_info,
            num_samples=self.rpn_batch_size_per_image, positive_fraction=self.rpn_positive_fraction,
            positive_iou=self.rpn_fg_iou, negative_iou=self.rpn_bg_iou,
            boundary_threshold=self.rpn_straddle_thresh, seed=rpn_seed)
        out = {}
        out["rpn_objectness"], out["rpn_box"] = losses.rpn_losses(
            all_logits, all_deltas, rpn_labels, rpn_box_targets,
            num_samples_per_image=self.rpn_batch_size_per_image)

        stage = self.box_stage
        targets = stage.sample(proposals, proposal_valid, gt_boxes, gt_classes, gt_valid,
                               gt_is_crowd=gt_is_crowd, seed=roi_seed)
        cls_logits, box_deltas = stage(feats, targets["rois"], training=True)
        out["roi_class"], out["roi_box"] = losses.fast_rcnn_losses(
            cls_logits, ops.reshape(box_deltas, (-1, box_deltas.shape[1], box_deltas.shape[2] * 4)),
            targets["classes"], targets["box_targets"])

        if self.mask_head is not None:
            if "gt_masks" not in batch:
                raise ValueError("Mask head is on but the batch has no 'gt_masks' (source without "
                                 "masks): build the model with mask=False.")
            # Foreground RoIs first (top_k keeps index order among ties), at most max_fg_masks.
            is_fg = ops.cast(targets["classes"] > 0, "int32")
            _, fg_idx = ops.top_k(is_fg, k=self.max_fg_masks, sorted=True)
            if not in_xla_context():
                # Graph mode: only as many slots as the image with the most fg RoIs needs (the
                # rest would be masked out of the loss anyway). Under XLA all max_fg_masks stay.
                num_slots = ops.maximum(ops.max(ops.sum(is_fg, axis=1)), 1)
                fg_idx = fg_idx[:, :num_slots]
            take = lambda t: ops.take_along_axis(t, fg_idx if t.ndim == 2 else fg_idx[..., None], axis=1)
            fg_rois = take(targets["rois"])
            fg_classes = ops.where(take(is_fg) > 0, take(targets["classes"]), 0)
            fg_gt_index = take(targets["matched_gt_index"])
            mask_logits = self.mask_logits(feats, fg_rois, training=True)
            mask_gt = masks.mask_targets(batch["gt_masks"], gt_boxes, fg_rois, fg_gt_index,
                                         output_size=mask_logits.shape[2],
                                         threshold=self.mask_target_threshold)
            out["mask"] = losses.mask_loss(mask_logits, mask_gt, fg_classes)
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

    def _detect(self, feats, proposals, image_info):
        proposals, proposal_valid = proposals
        stage = self.box_stage
        cls_logits, box_deltas = stage(feats, proposals, training=False)
        # Padded proposal slots (fewer than post_nms_topk survived NMS) must not become detections.
        scores = ops.softmax(cls_logits, axis=-1)[:, :, 1:] * ops.cast(proposal_valid, "float32")[..., None]
        boxes = stage.decode(box_deltas, proposals, image_info[:, 1, :])
        if boxes.shape[2] == 1:  # class-agnostic regression: one box shared by every class
            boxes = boxes[:, :, 0, :]
        det_boxes, det_scores, det_classes, num = multiclass_nms(
            boxes, scores, score_threshold=self.score_threshold, iou_threshold=self.nms_iou,
            max_detections=self.detections_per_image)
        det_classes = ops.cast(det_classes, "int32")
        valid = ops.arange(self.detections_per_image)[None, :] < ops.cast(num, "int32")[:, None]
        det_classes = ops.where(valid, det_classes, 0)
        det_scores = ops.where(valid, det_scores, 0.0)
        out = {}
        if self.mask_head is not None:
            mask_logits = self.mask_logits(feats, det_boxes, training=False)
            channel = ops.maximum(det_classes - 1, 0)
            picked = ops.take_along_axis(mask_logits, channel[:, :, None, None, None], axis=4)[..., 0]
            out["detection_masks"] = ops.where(valid[:, :, None, None], ops.sigmoid(picked), 0.0)
        # Canvas pixels -> original image pixels.
        scale = image_info[:, 2, :]
        orig_hw = image_info[:, 0, :]
        det_boxes = det_boxes / ops.concatenate([scale, scale], axis=-1)[:, None, :]
        limits = ops.concatenate([orig_hw, orig_hw], axis=-1)[:, None, :]
        det_boxes = ops.minimum(ops.maximum(det_boxes, 0.0), limits)
        out.update(detection_boxes=ops.where(valid[:, :, None], det_boxes, 0.0),
                   detection_scores=det_scores, detection_classes=det_classes,
                   num_detections=ops.cast(num, "int32"))
        return out
