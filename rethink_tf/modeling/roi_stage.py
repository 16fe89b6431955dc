"""One RoI box stage: RoI sampler + RoIAlign + box head + predictor + coder weights.

A stage is the unit Cascade R-CNN stacks (each with its own IoU threshold and coder weights);
plain Mask R-CNN uses one.
"""
import keras
from keras import ops

from rethink_tf.ops import box_coder, box_ops, roi_align, roi_sampling

from rethink_tf.modeling.heads.box_head import BoxPredictor
from rethink_tf.modeling.heads.registry import build_head


@keras.saving.register_keras_serializable(package="rethink_tf")
class RoIBoxStage(keras.layers.Layer):
    """Samples RoIs for training, pools their features, predicts class logits and box deltas.

    Args:
      num_classes: K foreground classes.
      head: registered box head name ("2fc", "4conv1fc").
      head_kwargs: keyword arguments of the head (widths, norm).
      coder_weights: (wy, wx, wh, ww) of the box coder (10, 10, 5, 5).
      fg_iou: IoU for a foreground RoI (0.5; cascade 0.6 / 0.7).
      num_samples: RoIs sampled per image (512).
      fg_fraction: maximum foreground share of the sample (0.25).
      class_agnostic: one regressor for all classes (cascade) instead of one per class.
      pooled_size: RoIAlign output side (7).
      sampling_ratio: RoIAlign samples per bin and axis (2).
      min_level, max_level: pyramid levels RoIs are assigned to (2, 5; 4, 4 for VGG).
      canonical_size, canonical_level: FPN level of a box = floor(canonical_level +
        log2(sqrt(area) / canonical_size)) (224, 4); also used for the mask head's RoIAlign.
      crowd_filter_thresh: proposals whose intersection over their own area with a crowd box is
        > this are ignored in sampling (0.7; None or 0: off).
      sampling_seed: None draws a fresh random sample each step (the paper); an int makes the
        sample a fixed function of the candidates (tests, debugging). A seed given to `sample`
        overrides it.
    """

    def __init__(self, num_classes, head="4conv1fc", head_kwargs=None, coder_weights=(10.0, 10.0, 5.0, 5.0),
                 fg_iou=0.5, num_samples=512, fg_fraction=0.25, class_agnostic=False, pooled_size=7,
                 sampling_ratio=2, min_level=2, max_level=5, canonical_size=224.0, canonical_level=4,
                 crowd_filter_thresh=0.7, sampling_seed=None, **kwargs):
        kwargs.setdefault("name", "box_stage")
        kwargs.setdefault("autocast", False)  # RoIs stay float32 under mixed precision
        super().__init__(**kwargs)
        self._config = dict(num_classes=num_classes, head=head, head_kwargs=dict(head_kwargs or {}),
                            coder_weights=tuple(coder_weights), fg_iou=fg_iou, num_samples=num_samples,
                            fg_fraction=fg_fraction, class_agnostic=class_agnostic,
                            pooled_size=pooled_size, sampling_ratio=sampling_ratio,
                            min_level=min_level, max_level=max_level, canonical_size=canonical_size,
                            canonical_level=canonical_level, crowd_filter_thresh=crowd_filter_thresh,
                            sampling_seed=sampling_seed)
        self.sampling_seed = sampling_seed
        self.num_classes = num_classes
        self.coder_weights = tuple(float(w) for w in coder_weights)
        self.fg_iou, self.num_samples, self.fg_fraction = fg_iou, num_samples, fg_fraction
        self.pooled_size, self.sampling_ratio = pooled_size, sampling_ratio
        self.min_level, self.max_level = min_level, max_level
        self.canonical_size, self.canonical_level = float(canonical_size), int(canonical_level)
        self.crowd_filter_thresh = crowd_filter_thresh
        self.head = build_head("box", head, name="box_head", **(head_kwargs or {}))
        self.predictor = BoxPredictor(num_classes, class_agnostic=class_agnostic, name="box_predictor")

    def sample(self, proposals, proposal_valid, gt_boxes, gt_classes, gt_valid, gt_is_crowd=None, seed=None):
        """Training targets for proposals [B, P, 4] with validity [B, P] (GT boxes are appended).

        gt_is_crowd: optional bool [B, M] crowd rows of gt_boxes (see crowd_filter_thresh).
        seed: None (use sampling_seed), a python int or an int32 [2] stateless seed.

        Returns the dict of rethink_tf.ops.roi_sampling.sample_rois: rois [B, R, 4],
        classes [B, R] (0 bg, -1 unused), box_targets [B, R, 4] (coder weights of this stage),
        matched_gt_index [B, R].
        """
        return roi_sampling.sample_rois(
            ops.stop_gradient(proposals), gt_boxes, gt_classes, gt_valid,
            num_samples=self.num_samples, fg_fraction=self.fg_fraction, fg_iou=self.fg_iou,
            bg_iou_high=self.fg_iou, box_weights=self.coder_weights, proposal_valid=proposal_valid,
            seed=self.sampling_seed if seed is None else seed, gt_is_crowd=gt_is_crowd,
            crowd_filter_thresh=self.crowd_filter_thresh)

    def call(self, features, rois, training=None):
        """features {level: [B, H_l, W_l, C]}, rois [B, R, 4] canvas pixels ->
        (logits float32 [B, R, K + 1], deltas float32 [B, R, K or 1, 4])."""
        # RoIAlign runs in float32 (bilinear weights are float32) whatever the compute dtype.
        features = {l: ops.cast(f, "float32") for l, f in features.items()}
        pooled = roi_align.multilevel_roi_align(
            features, ops.stop_gradient(rois), self.pooled_size, sampling_ratio=self.sampling_ratio,
            min_level=self.min_level, max_level=self.max_level, canonical_size=self.canonical_size,
            canonical_level=self.canonical_level)
        pooled = ops.cast(pooled, self.compute_dtype)
        logits, deltas = self.predictor(self.head(pooled, training=training))
        return ops.cast(logits, "float32"), ops.cast(deltas, "float32")

    def decode(self, deltas, rois, image_hw):
        """Boxes [B, R, K or 1, 4] from deltas [B, R, K or 1, 4] on rois [B, R, 4], clipped to
        image_hw [B, 2] (the scaled image inside the canvas)."""
        boxes = box_coder.decode_boxes(deltas, rois[:, :, None, :], weights=self.coder_weights)
        return box_ops.clip_boxes(boxes, image_hw[:, None, None, :])

    def get_config(self):
        return {**super().get_config(), **self._config}
