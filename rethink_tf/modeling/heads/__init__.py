"""Head networks (RPN, box, mask, keypoint) and the registry that names them for gin."""
from rethink_tf.modeling.heads import box_head, keypoint_head, mask_head, rpn_head  # noqa: F401  (registers heads)
from rethink_tf.modeling.heads.registry import build_head, register_head, registered_heads  # noqa: F401
