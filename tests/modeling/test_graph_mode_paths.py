"""Graph mode's data-dependent fast paths give the same losses as the static paths XLA takes.

Outside XLA, RoIAlign partitions boxes by level (crop_and_resize) and the mask head runs on only
as many slots as the batch's most-fg image needs; under XLA both keep static shapes. Forcing the
XLA choice in graph mode (patching `in_xla_context`) must not change any loss.
"""
import numpy as np
import tensorflow as tf

from rethink_tf.modeling.roi_heads import mask_branch
from rethink_tf.ops import roi_align


def test_dynamic_and_static_paths_give_the_same_losses(make_tiny_model, make_batch, monkeypatch):
    model = make_tiny_model(sampling_seed=3)
    batch = make_batch(batch_size=2)
    traced_for = []

    def losses(static):
        monkeypatch.setattr(mask_branch, "in_xla_context", lambda: static)
        monkeypatch.setattr(roi_align, "in_xla_context", lambda: static)

        @tf.function
        def forward(b):
            out = model(b, training=True)
            traced_for.append([op.type for op in tf.compat.v1.get_default_graph().get_operations()])
            return out

        return {k: float(v) for k, v in forward(batch).items()}

    dynamic, static = losses(False), losses(True)
    # The patch took effect: only the dynamic traces partition boxes and crop with CropAndResize
    # (the first function may trace twice, once while Keras creates variables).
    assert "DynamicPartition" in traced_for[0] and "CropAndResize" in traced_for[0]
    assert "DynamicPartition" not in traced_for[-1] and "CropAndResize" not in traced_for[-1]
    assert dynamic["mask"] > 0
    for key in static:
        np.testing.assert_allclose(dynamic[key], static[key], rtol=1e-5, atol=1e-7, err_msg=key)
