"""Detection ops for Mask R-CNN: static-shape, TF-traceable and XLA-compilable (jit_compile=True).

Modules: box_ops (IoU, clipping), box_coder (deltas), anchors, matching, sampling, rpn_targets,
proposals, roi_sampling, roi_align, nms, masks (targets, pasting), losses. Boxes are yxyx pixels, deltas
(dy, dx, dh, dw). Each op is tested against an independent numpy reference in tests/ops.
"""
