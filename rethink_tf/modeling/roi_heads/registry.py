"""Registry of RoI-heads kinds, so gin picks them by string (`build_model.roi_heads = "cascade"`).

A kind is a builder `fn(num_classes, stage_kwargs, branches) -> StandardRoIHeads (or subclass)`:
- stage_kwargs: the RoIBoxStage arguments shared by every kind, resolved by the model: head (the
  registered box head name; each stage builds its own head through the registry), head_kwargs (norm,
  default_fc_dim), the RoI sample (num_samples, fg_fraction, crowd_filter_thresh: `roi_sampling`),
  sampling_seed, plus "pooler_kwargs" (RoIPooler arguments); each stage builds its own pooler from
  them with `make_box_stage`.
- branches: {name: branch} to pass to the RoI heads; `build_model` passes {} and adds its branches
  afterwards (`StandardRoIHeads.add_branch`), so that stage layers are created first.
The kind's own settings (foreground IoU, box coder weights, class-agnostic regression; a cascade's
per-stage IoUs and weights) are its own gin parameters: the builders are gin configurables
(`standard_roi_heads.fg_iou`, `cascade_roi_heads.stage_ious`). A new kind registers itself with
`@register_roi_heads("name")` and, made a gin configurable, gets its own bindings the same way.
"""
import gin

from rethink_tf.modeling.roi_heads.box_stage import RoIBoxStage
from rethink_tf.modeling.roi_heads.pooler import RoIPooler
from rethink_tf.modeling.roi_heads.roi_heads import StandardRoIHeads
from rethink_tf.utils import validate

_KINDS = {}


def register_roi_heads(kind):
    """Decorator registering a builder under `kind`."""

    def wrap(fn):
        if kind in _KINDS and _KINDS[kind] is not fn:
            raise ValueError(f"RoI heads kind {kind!r} is already registered to {_KINDS[kind]}.")
        _KINDS[kind] = fn
        return fn

    return wrap


def registered_roi_heads():
    return sorted(_KINDS)


def build_roi_heads(kind, num_classes, stage_kwargs, branches):
    if kind not in _KINDS:
        raise ValueError(f"Unknown RoI heads kind {kind!r}; registered: {registered_roi_heads()}.")
    return _KINDS[kind](num_classes, dict(stage_kwargs), dict(branches))


def make_box_stage(num_classes, stage_kwargs, name="box_stage", head_name="box_head",
                   predictor_name="box_predictor", **overrides):
    """A RoIBoxStage from `stage_kwargs` (with `overrides`, e.g. fg_iou / coder_weights of a cascade
    stage), with its own 7x7 pooler. Distinct head / predictor names give distinct variable paths."""
    kwargs = {**stage_kwargs, **overrides}
    pooler = RoIPooler(7, name=f"{name}_pooler", **kwargs.pop("pooler_kwargs", {}))
    return RoIBoxStage(num_classes, pooler=pooler, name=name, head_name=head_name,
                       predictor_name=predictor_name, **kwargs)


def check_roi_sampling_arguments(args):
    v = validate
    v.integer("roi_sampling.batch_size_per_image", args["batch_size_per_image"], minimum=1)
    v.number("roi_sampling.positive_fraction", args["positive_fraction"], minimum=0, maximum=1,
             exclusive_minimum=True)
    v.number("roi_sampling.crowd_filter_thresh", args["crowd_filter_thresh"], minimum=0, maximum=1,
             allow_none=True)


def check_standard_arguments(args):
    validate.number("standard_roi_heads.fg_iou", args["fg_iou"], minimum=0, maximum=1)
    validate.reals("standard_roi_heads.box_coder_weights", args["box_coder_weights"], length=4, minimum=0,
                   exclusive_minimum=True)
    validate.boolean("standard_roi_heads.class_agnostic", args["class_agnostic"])


@gin.configurable
def roi_sampling(batch_size_per_image=512, positive_fraction=0.25, crowd_filter_thresh=0.7):
    """The RoI sample every box stage trains on, shared by all RoI-heads kinds -> stage_kwargs entries.

    Args:
      batch_size_per_image: RoIs sampled per image (512, Detectron's BATCH_SIZE_PER_IM).
      positive_fraction: maximum foreground share of the sample (0.25, FG_FRACTION).
      crowd_filter_thresh: proposals whose intersection over their own area with a crowd box is > this
        are ignored (0.7, Detectron's CROWD_FILTER_THRESH; None: off, as detectron2).
    """
    check_roi_sampling_arguments(locals())
    return dict(num_samples=batch_size_per_image, fg_fraction=positive_fraction,
                crowd_filter_thresh=crowd_filter_thresh)


@register_roi_heads("standard")
@gin.configurable(denylist=["num_classes", "stage_kwargs", "branches"])
def standard_roi_heads(num_classes, stage_kwargs, branches, fg_iou=0.5, box_coder_weights=(10.0, 10.0, 5.0, 5.0),
                       class_agnostic=False):
    """Mask R-CNN's: one box stage, the branches on its foreground RoIs / detections.

    Args (gin): fg_iou: IoU for a foreground RoI (0.5; background below it); box_coder_weights:
      (wy, wx, wh, ww) of the box coder (10, 10, 5, 5); class_agnostic: one box regressor for all classes.
    """
    check_standard_arguments(locals())
    stage = make_box_stage(num_classes, stage_kwargs, fg_iou=fg_iou, coder_weights=tuple(box_coder_weights),
                           class_agnostic=class_agnostic)
    return StandardRoIHeads(num_classes, [stage], branches)
