"""Registry of RoI-heads kinds, so gin picks them by string (`build_model.roi_heads = "cascade"`).

A kind is a builder `fn(num_classes, stage_kwargs, branches) -> StandardRoIHeads (or subclass)`:
- stage_kwargs: the RoIBoxStage arguments the model's configuration resolved (head, head_kwargs,
  coder_weights, fg_iou, num_samples, fg_fraction, class_agnostic, crowd_filter_thresh,
  sampling_seed) plus "pooler_kwargs" (RoIPooler arguments); each stage builds its own pooler from
  them with `make_box_stage`.
- branches: {name: branch} built by the model (e.g. {"mask": MaskBranch}).
A new kind registers itself with `@register_roi_heads("name")`; making the builder a gin
configurable gives its own parameters bindings (e.g. per-stage IoUs of a cascade).
"""
from rethink_tf.modeling.roi_heads.box_stage import RoIBoxStage
from rethink_tf.modeling.roi_heads.pooler import RoIPooler
from rethink_tf.modeling.roi_heads.roi_heads import StandardRoIHeads

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


@register_roi_heads("standard")
def standard_roi_heads(num_classes, stage_kwargs, branches):
    """Mask R-CNN's: one box stage, the branches on its foreground RoIs / detections."""
    return StandardRoIHeads(num_classes, [make_box_stage(num_classes, stage_kwargs)], branches)
