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


def test_branches_run_on_filled_detection_slots_only(make_tiny_model, make_batch, monkeypatch):
    """Inference: outside XLA the mask head runs on the slots the post-processor filled, and the
    zero-padded result equals the static path's on all D slots."""
    from rethink_tf.modeling.roi_heads import roi_heads

    model = make_tiny_model(sampling_seed=3)
    batch = make_batch(batch_size=1)
    inputs = {"images": batch["images"], "image_info": batch["image_info"]}
    mask_rois = []

    def detect(static):
        for module in (roi_heads, mask_branch, roi_align):
            monkeypatch.setattr(module, "in_xla_context", lambda: static)
        logits = model.roi_heads.branches["mask"].logits

        def counting_logits(features, boxes, training=None):
            mask_rois.append(boxes.shape[1])
            return logits(features, boxes, training=training)

        monkeypatch.setattr(model.roi_heads.branches["mask"], "logits", counting_logits)
        return {k: np.asarray(v) for k, v in tf.function(lambda b: model(b, training=False))(inputs).items()}

    # An untrained model's scores are near-uniform: keep about its 6 best detections per image.
    scores = detect(True)["detection_scores"]
    monkeypatch.setattr(model.postprocessor, "score_threshold", float(np.sort(scores.ravel())[-6]))
    mask_rois.clear()
    dynamic, static = detect(False), detect(True)
    slots = static["detection_masks"].shape[1]
    assert mask_rois[0] is None and mask_rois[-1] == slots  # dynamic slice, then all D slots
    assert 0 < static["num_detections"].max() < slots  # a case where the slice saves work
    assert dynamic["detection_masks"].shape == static["detection_masks"].shape
    for key in static:
        np.testing.assert_allclose(dynamic[key], static[key], rtol=1e-5, atol=1e-6, err_msg=key)
