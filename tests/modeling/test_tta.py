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
