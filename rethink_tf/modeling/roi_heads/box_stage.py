"""`RoIBoxStage`: one box stage of the RoI heads (sampler, pooler, box head, predictor, coder, losses).

A stage is the unit Cascade R-CNN stacks (each with its own IoU threshold and coder weights); plain
Mask R-CNN has one. Box deltas keep ONE layout from the predictor to the loss and the decoder:
float32 [B, R, K', 4] with K' = K (class-specific, detectron2: no background regressor, class c at
slot c - 1) or 1 (class-agnostic).
"""
import keras
from keras import ops

from rethink_tf.ops import box_coder, box_ops, losses, roi_sampling

from rethink_tf.modeling.heads.box_head import BoxPredictor
from rethink_tf.modeling.heads.registry import build_head
from rethink_tf.modeling.layers import deserialize, serialize
from rethink_tf.modeling.roi_heads.pooler import RoIPooler


@keras.saving.register_keras_serializable(package="rethink_tf")
class RoIBoxStage(keras.layers.Layer):
    """Samples RoIs for training, pools their features, predicts class logits and box deltas.

    Args:
      num_classes: K foreground classes.
      head: the box head layer, or a registered box head name ("2fc", "4conv1fc") built here with
        `head_kwargs` and name `head_name` (or a serialized layer, from `get_config`).
      head_kwargs: keyword arguments of a head given by name.
      coder_weights: (wy, wx, wh, ww) of the box coder (10, 10, 5, 5).
      fg_iou: IoU for a foreground RoI (0.5; cascade 0.6 / 0.7); background below it.
      num_samples: RoIs sampled per image (512).
      fg_fraction: maximum foreground share of the sample (0.25).
      class_agnostic: one regressor for all classes (cascade) instead of one per class.
      pooler: the stage's RoIPooler (default: 7x7, sampling ratio 2, levels 2..5, canonical 224 / 4).
      crowd_filter_thresh: proposals whose intersection over their own area with a crowd box is
        > this are ignored in sampling (0.7; None or 0: off).
      head_name, predictor_name: layer names of the head and predictor (their variable paths are
        mask_rcnn/<name>/...; a second stage needs other names).
      sampling_seed: None draws a fresh random sample each step (the paper); an int makes the
        sample a fixed function of the candidates (tests, debugging). A seed given to `sample`
        overrides it.
    """

    def __init__(self, num_classes, head="4conv1fc", head_kwargs=None, coder_weights=(10.0, 10.0, 5.0, 5.0),
                 fg_iou=0.5, num_samples=512, fg_fraction=0.25, class_agnostic=False, pooler=None,
                 crowd_filter_thresh=0.7, sampling_seed=None, head_name="box_head",
                 predictor_name="box_predictor", **kwargs):
        kwargs.setdefault("name", "box_stage")
        kwargs.setdefault("autocast", False)  # RoIs stay float32 under mixed precision
        super().__init__(**kwargs)
        pooler = deserialize(pooler)
        self.pooler = pooler if pooler is not None else RoIPooler(7, name="box_pooler")
        if isinstance(head, str):
            head = build_head("box", head, name=head_name, **(head_kwargs or {}))
        self.head = deserialize(head)
        self._config = dict(num_classes=num_classes,
                            coder_weights=tuple(coder_weights), fg_iou=fg_iou, num_samples=num_samples,
                            fg_fraction=fg_fraction, class_agnostic=class_agnostic,
                            pooler=serialize(self.pooler),
                            crowd_filter_thresh=crowd_filter_thresh, sampling_seed=sampling_seed,
                            head_name=head_name, predictor_name=predictor_name)
        self.num_classes = num_classes
        self.coder_weights = tuple(float(w) for w in coder_weights)
        self.fg_iou, self.num_samples, self.fg_fraction = fg_iou, num_samples, fg_fraction
        self.sampling_seed = sampling_seed
        self.crowd_filter_thresh = crowd_filter_thresh
        self.predictor = BoxPredictor(num_classes, class_agnostic=class_agnostic, name=predictor_name)

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

    def build_networks(self, channels, batch_size=1, dtype="float32"):
        """Creates the head's and predictor's variables by running them on zeros."""
        size = self.pooler.output_size
        self.predictor(self.head(ops.zeros((batch_size, 1, size, size, channels), dtype), training=False))

    def call(self, features, rois, training=None):
        """features {level: [B, H_l, W_l, C]}, rois [B, R, 4] canvas pixels ->
        (logits float32 [B, R, K + 1], deltas float32 [B, R, K', 4]).

        The networks run in the compute dtype; pooled features and outputs are float32."""
        pooled = ops.cast(self.pooler(features, rois), self.compute_dtype)
        logits, deltas = self.predictor(self.head(pooled, training=training))
        return ops.cast(logits, "float32"), ops.cast(deltas, "float32")

    def losses(self, logits, deltas, targets):
        """-> {"roi_class", "roi_box"} float32 scalars for the `sample` targets (Detectron's
        normalisation, rethink_tf.ops.losses.fast_rcnn_losses)."""
        cls_loss, box_loss = losses.fast_rcnn_losses(logits, deltas, targets["classes"],
                                                     targets["box_targets"])
        return {"roi_class": cls_loss, "roi_box": box_loss}

    def decode(self, deltas, rois, image_hw):
        """Boxes [B, R, K', 4] from deltas [B, R, K', 4] on rois [B, R, 4], clipped to
        image_hw [B, 2] (the scaled image inside the canvas)."""
        boxes = box_coder.decode_boxes(deltas, rois[:, :, None, :], weights=self.coder_weights)
        return box_ops.clip_boxes(boxes, image_hw[:, None, None, :])

    def scores(self, logits, valid):
        """Softmax over K + 1 without the background column, 0 on invalid rows: float32 [B, R, K]."""
        return ops.softmax(logits, axis=-1)[:, :, 1:] * ops.cast(valid, "float32")[..., None]

    def get_config(self):
        return {**super().get_config(), **self._config, "head": serialize(self.head)}
