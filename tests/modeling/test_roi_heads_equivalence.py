"""The RoI-heads redesign (stages, branches, post-processor) left the model's numbers unchanged.

The figures below were computed by `_figures` on the code before the redesign (main at 320a161, where
the mask branch lived in MaskRCNN and post-processing was fused into it) and are recorded here: the
same tiny model, seed and batch must give the same losses and detections, in eager mode and under
XLA. Predictor kernels are scaled up so that detections are not init's near-uniform scores.
Faster R-CNN (no mask branch) gave the same figures without the mask entries.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

# Recorded from main at 320a161 (python, CPU): losses, then sums / position-weighted sums of outputs.
EAGER = {"rpn_objectness": 0.013536493293941021, "rpn_box": 0.0036763520911335945, "roi_class": 1.8467001914978027, "roi_box": 0.4155491888523102, "mask": 0.6916639804840088, "detection_masks.sum": 15624.264166623354, "detection_masks.wsum": 23442.558644504414, "detection_boxes.sum": 9393.773777961731, "detection_boxes.wsum": 14283.3978058857, "detection_scores.sum": 21.83586886525154, "detection_scores.wsum": 32.45208149613478, "detection_classes.sum": 78.0, "detection_classes.wsum": 114.74358974358975, "num_detections.sum": 40.0, "num_detections.wsum": 60.0}
XLA = {"rpn_objectness": 0.013536494225263596, "rpn_box": 0.0036763527896255255, "roi_class": 1.8467003107070923, "roi_box": 0.4155491888523102, "mask": 0.6916773319244385, "detection_masks.sum": 15624.264193177223, "detection_masks.wsum": 23442.558685803808, "detection_boxes.sum": 9393.773842811584, "detection_boxes.wsum": 14283.397915888134, "detection_scores.sum": 21.835872173309326, "detection_scores.wsum": 32.452084787381, "detection_classes.sum": 78.0, "detection_classes.wsum": 114.74358974358975, "num_detections.sum": 40.0, "num_detections.wsum": 60.0}


def _figures(make_tiny_model, make_batch, mask, xla):
    keras.utils.set_random_seed(7)
    model = make_tiny_model(mask=mask, sampling_seed=5)
    model.build_networks(image_size=64)
    for v in model.variables:
        if "predictor" in v.path and v.path.endswith("kernel"):
            v.assign(v * 40.0)
    batch = make_batch(batch_size=2, size=64)
    if not mask:
        del batch["gt_masks"]
    inputs = {"images": batch["images"], "image_info": batch["image_info"]}
    train = lambda b: model(b, training=True)
    infer = lambda b: model(b, training=False)
    if xla:
        train, infer = tf.function(train, jit_compile=True), tf.function(infer, jit_compile=True)
    out = {k: float(v) for k, v in train(batch).items()}
    for key, value in infer(inputs).items():
        value = np.asarray(value, "float64")
        out[key + ".sum"] = float(value.sum())
        out[key + ".wsum"] = float((value * np.linspace(1, 2, value.size).reshape(value.shape)).sum())
    return out


# The eager Mask R-CNN case (~25 s) runs by default; the others (XLA ~2 min each) with --run-slow.
@pytest.mark.parametrize("mask,xla", [
    (True, False), pytest.param(False, False, marks=pytest.mark.slow),
    pytest.param(True, True, marks=pytest.mark.slow), pytest.param(False, True, marks=pytest.mark.slow)],
    ids=["mask_rcnn-eager", "faster_rcnn-eager", "mask_rcnn-xla", "faster_rcnn-xla"])
def test_same_losses_and_detections_as_before_the_redesign(make_tiny_model, make_batch, mask, xla):
    want = dict(XLA if xla else EAGER)
    if not mask:
        want = {k: v for k, v in want.items() if not k.startswith(("mask", "detection_masks"))}
    got = _figures(make_tiny_model, make_batch, mask, xla)
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-7, err_msg=key)
