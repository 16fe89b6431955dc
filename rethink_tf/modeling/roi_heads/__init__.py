"""RoI heads: poolers, box stages, branches (mask) and their assembly (`StandardRoIHeads`)."""
from rethink_tf.modeling.roi_heads.box_stage import RoIBoxStage  # noqa: F401
from rethink_tf.modeling.roi_heads.mask_branch import MaskBranch  # noqa: F401
from rethink_tf.modeling.roi_heads.pooler import RoIPooler  # noqa: F401
from rethink_tf.modeling.roi_heads.roi_heads import StandardRoIHeads  # noqa: F401
