"""Cascade R-CNN box stages (Cai & Vasconcelos) with the mask branch on the last stage.

Design (detectron2's `CascadeROIHeads`, in this package's terms):
- N box stages (default 3) with foreground IoU 0.5 / 0.6 / 0.7 and coder weights (10, 10, 5, 5),
  (20, 20, 10, 10), (30, 30, 15, 15); every stage regresses class-agnostically (one box per RoI), has
  its own box head and predictor, and pools the same 7x7 RoIAlign features.
- Stage k > 1 runs on the boxes stage k - 1 decoded (clipped to the scaled image, gradient stopped).
- Training: stage 1 samples RoIs from the proposals like the plain model (512 per image, <= 25 % fg,
  gt boxes appended); stage k > 1 re-labels stage k - 1's refined boxes of the same slots at its own
  IoU, without re-sampling (`rethink_tf.ops.cascade_targets.label_rois`). Each stage's losses are the
  plain model's (`RoIBoxStage.losses`), all with weight 1, named `<loss>_stage<k>` (k = 1..N); the
  gradient reaching the shared features from each stage is scaled by 1 / N (detectron2: equivalent to
  averaging the stage losses but with undiminished head gradients). The mask branch trains on stage 1's
  sampled foreground RoIs, as in detectron2, with an unscaled gradient.
- Inference: class probabilities (softmax with background) averaged over the N stages, boxes from the
  last stage; the post-processor's detections then get their masks from the mask branch
  (`forward_with_given_boxes`), so the mask head runs on the last stage's boxes.

Variable paths: stage 1 keeps the plain model's paths (box_head/..., box_predictor/...), so a run can
start from a plain Mask R-CNN checkpoint (`rethink_tf.training.warm_start`) and only stages 2..N (and
stage 1's regressor, class-specific in the plain model) start fresh; stage k > 1 has its own head and
predictor names, box_head_stage<k>/... and box_predictor_stage<k>/....

Built by `build_model.roi_heads = "cascade"` (registry kind "cascade", gin configurable
`cascade_roi_heads`): every stage samples as `roi_sampling` says; stage k has IoU
`cascade_roi_heads.stage_ious[k-1]` and coder weights `cascade_roi_heads.stage_box_coder_weights[k-1]`
(defaults (0.5, 0.6, 0.7) and (10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15)).
"""
import gin
import keras
from keras import ops

from rethink_tf.modeling.roi_heads.registry import make_box_stage, register_roi_heads
from rethink_tf.modeling.roi_heads.roi_heads import StandardRoIHeads
from rethink_tf.ops import cascade_targets
from rethink_tf.ops.gradients import scale_gradient
from rethink_tf.utils import validate

CASCADE_IOUS = (0.5, 0.6, 0.7)
CASCADE_CODER_WEIGHTS = ((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0))


def stage_losses(stages, features, first_targets, gt_boxes, gt_classes, gt_valid, gt_is_crowd, image_hw):
    """Training losses of every stage.

    Args:
      stages: the N RoIBoxStage layers (class-agnostic).
      features: {level: [B, H_l, W_l, C]}.
      first_targets: stage 1's `RoIBoxStage.sample` dict (rois [B, R, 4], classes, box_targets, ...).
      gt_boxes [B, M, 4], gt_classes int32 [B, M], gt_valid bool [B, M], gt_is_crowd bool [B, M] or None.
      image_hw: float32 [B, 2] scaled image size inside the canvas.
    Returns:
      {"<loss>_stage<k>": float32 scalar} for k = 1..N.
    """
    scale = 1.0 / len(stages)
    scaled = {level: scale_gradient(f, scale) for level, f in features.items()}
    targets, out = first_targets, {}
    for k, stage in enumerate(stages, start=1):
        if k > 1:
            targets = cascade_targets.label_rois(
                refined, targets["classes"] >= 0, gt_boxes, gt_classes, gt_valid, stage.fg_iou,
                stage.coder_weights, gt_is_crowd=gt_is_crowd, crowd_filter_thresh=stage.crowd_filter_thresh)
        logits, deltas = stage(scaled, targets["rois"], training=True)
        out.update({f"{name}_stage{k}": value for name, value in stage.losses(logits, deltas, targets).items()})
        if k < len(stages):
            refined = ops.stop_gradient(stage.decode(deltas, targets["rois"], image_hw)[:, :, 0, :])
    return out


def predict(stages, features, proposals, proposal_valid, image_hw):
    """Inference through every stage.

    Returns (boxes float32 [B, P, 1, 4] from the last stage, decoded and clipped; scores float32 [B, P, K]:
    the stages' softmax probabilities averaged, background column dropped, 0 on invalid proposals).
    """
    boxes, probabilities = proposals, 0.0
    for stage in stages:
        logits, deltas = stage(features, boxes, training=False)
        probabilities = probabilities + ops.softmax(logits, axis=-1)
        decoded = stage.decode(deltas, boxes, image_hw)
        boxes = ops.stop_gradient(decoded[:, :, 0, :])
    scores = probabilities[:, :, 1:] / len(stages) * ops.cast(proposal_valid, "float32")[..., None]
    return decoded, scores


@keras.saving.register_keras_serializable(package="rethink_tf")
class CascadeRoIHeads(StandardRoIHeads):
    """StandardRoIHeads with N >= 2 class-agnostic box stages run in sequence (see the module docstring).

    Args:
      num_classes: K.
      box_stages: the N RoIBoxStage layers, stage 1 first; all class-agnostic, the same RoI sample size.
      branches: {name: branch} as StandardRoIHeads (they run on the last stage's boxes at inference).
    """

    def __init__(self, num_classes, box_stages, branches=None, **kwargs):
        super().__init__(num_classes, box_stages, branches, **kwargs)
        if len(self.box_stages) < 2:
            raise ValueError(f"CascadeRoIHeads needs at least 2 box stages, got {len(self.box_stages)}")
        for k, stage in enumerate(self.box_stages, start=1):
            if not stage.predictor.class_agnostic:
                raise ValueError(f"CascadeRoIHeads: box stage {k} ({stage.name}) regresses per class; every "
                                 "stage must be class-agnostic (one box per RoI feeds the next stage)")

    @property
    def num_stages(self):
        return len(self.box_stages)

    def losses(self, features, proposals, proposal_valid, targets, image_info, seed=None):
        """-> {"roi_class_stage<k>", "roi_box_stage<k>" for k = 1..N, <branch losses>} float32 scalars
        (unweighted). Arguments as StandardRoIHeads.losses; the branches train on stage 1's sample."""
        gt_boxes = ops.cast(targets["gt_boxes"], "float32")
        gt_classes = ops.cast(targets["gt_classes"], "int32")
        gt_valid, gt_is_crowd = self.gt_validity(targets)
        sampled = self.box_stages[0].sample(proposals, proposal_valid, gt_boxes, gt_classes, gt_valid,
                                            gt_is_crowd=gt_is_crowd, seed=seed)
        out = stage_losses(self.box_stages, features, sampled, gt_boxes, gt_classes, gt_valid, gt_is_crowd,
                           ops.cast(image_info, "float32")[:, 1, :])
        for branch in self.branches.values():
            out.update(branch.losses(features, sampled, targets, training=True))
        return out

    def predict_boxes(self, features, proposals, proposal_valid, image_info):
        """-> (boxes float32 [B, P, 1, 4] of the last stage, decoded and clipped; scores float32 [B, P, K]
        averaged over the stages, 0 for invalid proposals). Pre-NMS."""
        return predict(self.box_stages, features, proposals, proposal_valid,
                       ops.cast(image_info, "float32")[:, 1, :])


def check_cascade_arguments(args):
    v = validate
    ious, weights_per_stage = args["stage_ious"], args["stage_box_coder_weights"]
    v.reals("cascade_roi_heads.stage_ious", ious, minimum=0)
    if len(ious) < 2 or list(ious) != sorted(ious) or max(ious) > 1:
        v.fail("cascade_roi_heads.stage_ious", ious, "at least 2 increasing IoUs in [0, 1]")
    if not isinstance(weights_per_stage, (list, tuple)) or len(weights_per_stage) != len(ious):
        v.fail("cascade_roi_heads.stage_box_coder_weights", weights_per_stage,
               f"one (wy, wx, wh, ww) per stage ({len(ious)} stages, cascade_roi_heads.stage_ious)")
    for weights in weights_per_stage:
        v.reals("cascade_roi_heads.stage_box_coder_weights", weights, length=4, minimum=0,
                exclusive_minimum=True)


@register_roi_heads("cascade")
@gin.configurable(denylist=["num_classes", "stage_kwargs", "branches"])
def cascade_roi_heads(num_classes, stage_kwargs, branches, stage_ious=CASCADE_IOUS,
                      stage_box_coder_weights=CASCADE_CODER_WEIGHTS):
    """Registry builder: N = len(stage_ious) class-agnostic stages; stage k has foreground IoU
    stage_ious[k-1] and box coder weights stage_box_coder_weights[k-1]; the branches follow the last stage.

    Args (gin): stage_ious: increasing, >= 2 of them ((0.5, 0.6, 0.7)); stage_box_coder_weights: one
      (wy, wx, wh, ww) per stage (((10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15))).
    """
    check_cascade_arguments(locals())
    stages = []
    for k, (iou, weights) in enumerate(zip(stage_ious, stage_box_coder_weights), start=1):
        names = {} if k == 1 else dict(name=f"box_stage_{k}", head_name=f"box_head_stage{k}",
                                        predictor_name=f"box_predictor_stage{k}")
        stages.append(make_box_stage(num_classes, stage_kwargs, fg_iou=iou, class_agnostic=True,
                                     coder_weights=tuple(float(w) for w in weights), **names))
    return CascadeRoIHeads(num_classes, stages, branches)
