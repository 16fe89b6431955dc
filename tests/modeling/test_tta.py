"""Test-time augmentation (rethink_tf.modeling.tta): variants, box mapping, merge and mask averaging
against numpy references."""
import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.data import preprocess
from rethink_tf.modeling import tta
from rethink_tf.utils.validate import ConfigError

from . import tta_reference as ref


def _info(orig_hw, short_side, max_size):
    h, w = orig_hw
    sh, sw = (int(v) for v in preprocess.scaled_size(h, w, short_side, max_size))
    return np.array([[h, w], [sh, sw], [sh / h, sw / w], [0, 0]], np.float32)


# ---- settings ------------------------------------------------------------------------------------

def test_variants_are_detectrons_order_and_bad_settings_name_the_binding():
    aug = tta.TestTimeAugmentation()
    variants = aug.variants(800, 1333)
    assert len(variants) == 18
    assert variants[:3] == [tta.Variant(800, 1333, False), tta.Variant(800, 1333, True),
                            tta.Variant(400, 2000, False)]
    assert [v.short_side for v in variants[::2]] == [800, 400, 500, 600, 700, 900, 1000, 1100, 1200]
    assert tta.TestTimeAugmentation(scales=(), flip=False).variants(128, 128) == [tta.Variant(128, 128, False)]
    for kwargs, binding in [({"merge": "avg"}, "TestTimeAugmentation.merge"),
                            ({"scales": (400, -1)}, "TestTimeAugmentation.scales"),
                            ({"scales": (400, 400)}, "TestTimeAugmentation.scales"),
                            ({"vote_iou": 0.0}, "TestTimeAugmentation.vote_iou"),
                            ({"flip": 1}, "TestTimeAugmentation.flip")]:
        with pytest.raises(ConfigError, match=binding):
            tta.TestTimeAugmentation(**kwargs)
    with pytest.raises(ConfigError, match="repeats the run's eval size"):
        tta.TestTimeAugmentation(scales=(800,), max_size=1333).variants(800, 1333)


# ---- variant inputs and box mapping ------------------------------------------------------------------

def test_variant_input_is_the_eval_pipeline_resize_and_its_mirror():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(45, 70, 3)).astype(np.uint8)
    canvas = (64, 96)
    plain, info = tta.variant_input(image, tta.Variant(50, 90, False), canvas)
    expected, expected_info = preprocess.resize_and_pad(image, 50, 90, canvas)
    expected = preprocess.normalize_image(expected, image_info=expected_info)
    np.testing.assert_array_equal(plain.numpy(), expected.numpy())
    np.testing.assert_array_equal(info.numpy(), expected_info.numpy())
    flipped, flipped_info = tta.variant_input(image, tta.Variant(50, 90, True), canvas)
    np.testing.assert_array_equal(flipped_info.numpy(), info.numpy())
    sh, sw = (int(v) for v in info.numpy()[1])
    np.testing.assert_array_equal(flipped.numpy()[:sh, :sw], plain.numpy()[:sh, :sw][:, ::-1])
    assert not np.any(flipped.numpy()[:, sw:]) and not np.any(flipped.numpy()[sh:])


@pytest.mark.parametrize("flip", [False, True])
def test_box_mapping_between_variant_and_reference_canvases(flip):
    rng = np.random.default_rng(1)
    orig_hw = (480, 640)
    ref_info = _info(orig_hw, 800, 1333)
    var_info = _info(orig_hw, 500, 2000)
    y0 = rng.uniform(0, 300, (2, 5, 3))
    x0 = rng.uniform(0, 400, (2, 5, 3))
    original = np.stack([y0, x0, y0 + rng.uniform(1, 150, y0.shape), x0 + rng.uniform(1, 200, x0.shape)], -1)
    in_variant = np.stack([[[ref.variant_box(b, var_info[2], flip, var_info[1, 1]) for b in row] for row in img]
                           for img in original])
    in_reference = np.stack([[[ref.variant_box(b, ref_info[2], False, 0) for b in row] for row in img]
                             for img in original])
    batch = lambda x: tf.constant(np.stack([x, x]), tf.float32)
    mapped = tta.to_reference(tf.constant(in_variant, tf.float32), batch(var_info), flip, batch(ref_info))
    np.testing.assert_allclose(mapped.numpy(), in_reference, rtol=1e-5, atol=1e-3)
    back = tta.from_reference(mapped, batch(ref_info), batch(var_info), flip)
    np.testing.assert_allclose(back.numpy(), in_variant, rtol=1e-5, atol=1e-3)


# ---- merge ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def postprocessor():
    from rethink_tf.modeling.postprocess import DetectionPostProcessor
    return DetectionPostProcessor(score_threshold=0.05, nms_iou=0.5, detections_per_image=10)


def _clustered_candidates(rng, num_variants=3, per_variant=12, num_classes=3, class_specific=True):
    """Candidates as several variants would give them: a few objects seen by every variant with small
    jitter (IoU >= 0.9 among many of them), plus scattered boxes; scores distinct."""
    objects = rng.uniform(10, 150, (4, 2))
    sizes = rng.uniform(20, 60, (4, 2))
    k = num_classes if class_specific else 1
    boxes = np.zeros((num_variants * per_variant, k, 4), np.float32)
    for i in range(len(boxes)):
        for c in range(k):
            if rng.uniform() < 0.7:
                o = rng.integers(0, 4)
                center = objects[o] + rng.normal(0, 0.6, 2)
                half = sizes[o] / 2 * (1 + rng.normal(0, 0.01, 2))
            else:
                center, half = rng.uniform(10, 180, 2), rng.uniform(3, 30, 2)
            boxes[i, c] = [center[0] - half[0], center[1] - half[1], center[0] + half[0], center[1] + half[1]]
    scores = rng.permutation(np.linspace(0.01, 0.99, len(boxes) * num_classes)).reshape(len(boxes), num_classes)
    scores[rng.uniform(size=scores.shape) < 0.2] = 0.0
    return boxes, scores.astype(np.float32)


@pytest.mark.parametrize("class_specific", [True, False])
@pytest.mark.parametrize("method", ["vote", "nms"])
def test_merge_matches_detectrons_nms_and_box_voting(class_specific, method, postprocessor):
    rng = np.random.default_rng(7 + class_specific)
    for _ in range(3):
        boxes, scores = _clustered_candidates(rng, class_specific=class_specific)
        out = tta.merge_detections(tf.constant(boxes[None]), tf.constant(scores[None]), postprocessor,
                                   method, vote_iou=0.9)
        expected = ref.merge(boxes, scores, postprocessor.score_threshold, postprocessor.nms_iou,
                             postprocessor.detections_per_image, 0.9 if method == "vote" else None)
        n = int(out["num_detections"][0])
        assert n == len(expected) > 0
        np.testing.assert_allclose(out["detection_scores"][0, :n], [d[0] for d in expected], rtol=1e-6)
        np.testing.assert_array_equal(out["detection_classes"][0, :n], [d[1] for d in expected])
        np.testing.assert_allclose(out["detection_boxes"][0, :n], [d[2] for d in expected], rtol=1e-5, atol=1e-3)
        assert not np.any(out["detection_classes"][0, n:])
    if method == "vote":  # voting moved boxes: the test data exercises it
        plain = tta.merge_detections(tf.constant(boxes[None]), tf.constant(scores[None]), postprocessor, "nms")
        assert np.abs(plain["detection_boxes"] - out["detection_boxes"]).max() > 0.1


def test_average_masks_mirrors_flip_variants_back():
    rng = np.random.default_rng(3)
    a, b, c = (rng.uniform(size=(1, 2, 4, 4)).astype(np.float32) for _ in range(3))
    out = tta.average_masks([tf.constant(a), tf.constant(b), tf.constant(c)], [False, True, False])
    np.testing.assert_allclose(out.numpy(), (a + b[..., ::-1] + c) / 3, rtol=1e-6)


# ---- with a model --------------------------------------------------------------------------------

from rethink_tf.evaluation import eval_loop  # noqa: E402
from rethink_tf.serving.model_dir import InferenceConfig  # noqa: E402

# The tiny model's eval resize: shorter side 64, longer <= 96, on 64x96 / 96x64 canvases.
INFERENCE = InferenceConfig(short_side=64, max_size=96, landscape_canvas=(64, 96), portrait_canvas=(96, 64),
                            pixel_mean=preprocess.PIXEL_MEAN, pixel_std=None)


@pytest.fixture(scope="module")
def tta_model(make_tiny_model):
    """One tiny Mask R-CNN (random weights) for the module, its predictors widened so that scores are
    well separated and masks have shapes (the small predictor init gives ~uniform outputs)."""
    model = make_tiny_model(num_classes=3)
    model.build_networks()
    rng = np.random.default_rng(0)
    widened = [v for v in model.variables if v.path.endswith("kernel") and any(
        name in v.path for name in ("cls_logits", "mask_head/predictor", "mask/predictor"))]
    assert len(widened) == 2, [v.path for v in widened]
    for v in widened:
        v.assign(rng.normal(0.0, 0.3, v.shape).astype(np.float32))
    return model




def _image(shape, seed=0):
    """A smooth random uint8 image (blobs), so the untrained model's scores vary across the image."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(shape[0] // 8 + 1, shape[1] // 8 + 1, 3)).astype(np.float32)
    big = tf.image.resize(small[None], (shape[0], shape[1]), method="bilinear")[0].numpy()
    return np.clip(big + rng.normal(0, 8, big.shape), 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_one_base_variant_is_plain_inference_exactly(tta_model):
    image = _image((48, 75))  # resized to 64 x 94 on the 64 x 96 canvas (scale and padding both non-trivial)
    detector = tta.TTADetector(tta_model, tta.TestTimeAugmentation(scales=(), flip=False, merge="nms"), INFERENCE)
    got = {k: v.numpy() for k, v in detector.detect(image).items()}
    canvas, info = preprocess.resize_and_pad(image, INFERENCE.short_side, INFERENCE.max_size, INFERENCE.landscape_canvas)
    canvas = preprocess.normalize_image(canvas, image_info=info)
    plain = eval_loop.make_predict_fn(tta_model)(canvas[None], info[None])
    assert int(plain["num_detections"][0]) > 5
    np.testing.assert_array_equal(got.pop("image_info"), info.numpy()[None])
    assert set(got) == set(plain)
    for key, value in plain.items():
        np.testing.assert_array_equal(got[key], value.numpy(), err_msg=key)


def _sorted(detections):
    n = int(detections["num_detections"][0])
    order = np.argsort(-detections["detection_scores"][0, :n], kind="stable")
    return {k: np.asarray(detections[k])[0, :n][order] for k in
            ("detection_boxes", "detection_scores", "detection_classes", "detection_masks")}


@pytest.mark.slow
def test_flipped_image_gives_the_mirrored_detections(tta_model):
    """Flip-only TTA is symmetric: TTA(mirror(image)) = mirror(TTA(image)), boxes, scores and masks.
    The image has the canvas's scaled size, so its resize is the identity and commutes with the flip."""
    image = _image((64, 96), seed=1)
    detector = tta.TTADetector(tta_model, tta.TestTimeAugmentation(scales=(), flip=True), INFERENCE)
    original = _sorted({k: v.numpy() for k, v in detector.detect(image).items()})
    mirrored = _sorted({k: v.numpy() for k, v in detector.detect(image[:, ::-1]).items()})
    assert len(original["detection_scores"]) > 5
    np.testing.assert_allclose(mirrored["detection_scores"], original["detection_scores"], rtol=1e-6)
    np.testing.assert_array_equal(mirrored["detection_classes"], original["detection_classes"])
    y0, x0, y1, x1 = original["detection_boxes"].T
    np.testing.assert_allclose(mirrored["detection_boxes"], np.stack([y0, 96 - x1, y1, 96 - x0], -1), atol=1e-3)
    np.testing.assert_allclose(mirrored["detection_masks"], original["detection_masks"][..., ::-1], atol=1e-4)
