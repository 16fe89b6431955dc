"""RoI heads: poolers, box stages, branches (mask, keypoint) and their assembly (`StandardRoIHeads`)."""
from rethink_tf.modeling.roi_heads.box_stage import RoIBoxStage  # noqa: F401
from rethink_tf.modeling.roi_heads.keypoint_branch import KeypointBranch  # noqa: F401
from rethink_tf.modeling.roi_heads.mask_branch import MaskBranch  # noqa: F401
from rethink_tf.modeling.roi_heads.pooler import RoIPooler  # noqa: F401
from rethink_tf.modeling.roi_heads.roi_heads import StandardRoIHeads  # noqa: F401
from rethink_tf.modeling.roi_heads.registry import (  # noqa: F401
    build_roi_heads, make_box_stage, register_roi_heads, registered_roi_heads)
from rethink_tf.modeling.roi_heads import cascade  # noqa: F401,E402  (registers the "cascade" kind)
