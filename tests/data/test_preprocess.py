"""resize_and_pad / normalize_image (shared with serving) and the flip helpers, against numpy."""

import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.data import augment, preprocess
from rethink_tf.data.input_pipeline import samples_seen


@pytest.mark.parametrize("hw,short,max_size,expected", [
    ((480, 640), 800, 1333, (800, 1067)),   # shorter side drives the scale
    ((300, 1000), 800, 1333, (400, 1333)),  # longer side capped
    ((640, 480), 800, 1333, (1067, 800)),
    ((100, 100), 128, 128, (128, 128)),
])
def test_resize_and_pad_sizes_and_info(hw, short, max_size, expected):
    image = np.random.default_rng(0).integers(0, 255, hw + (3,), dtype=np.uint8)
    canvas_size = int(np.ceil(max_size / 32) * 32)
    canvas, info = preprocess.resize_and_pad(image, short, max_size, canvas_size)
    assert canvas.shape == (canvas_size, canvas_size, 3) and canvas.dtype == tf.float32
    np.testing.assert_allclose(info.numpy(), [hw, expected, np.array(expected) / np.array(hw), [0, 0]],
                               rtol=1e-6)
    h, w = expected
    assert np.all(canvas.numpy()[h:] == 0) and np.all(canvas.numpy()[:, w:] == 0)
    assert 0 <= canvas.numpy()[:h, :w].min() and canvas.numpy()[:h, :w].max() <= 255


def test_resize_and_pad_works_in_tf_function_with_tensor_short_side():
    fn = tf.function(lambda im, s: preprocess.resize_and_pad(im, s, 64, 64))
    canvas, info = fn(tf.zeros([20, 40, 3], tf.uint8), tf.constant(24))
    assert canvas.shape == (64, 64, 3)
    np.testing.assert_allclose(info.numpy()[1], [24, 48])


def test_canvas_too_small_is_a_clear_error():
    with pytest.raises(tf.errors.InvalidArgumentError, match="larger than canvas_size"):
        preprocess.resize_and_pad(tf.zeros([20, 40, 3], tf.uint8), 40, 80, 64)


def test_normalize_image():
    image = np.full((2, 4, 4, 3), 200.0, np.float32)
    info = np.zeros((2, 4, 2), np.float32)
    info[:, 1] = [[2, 3], [4, 1]]
    out = preprocess.normalize_image(image, image_info=info).numpy()
    expected = 200 - np.array(preprocess.PIXEL_MEAN)
    np.testing.assert_allclose(out[0, :2, :3], np.broadcast_to(expected, (2, 3, 3)), rtol=1e-6)
    assert np.all(out[0, 2:] == 0) and np.all(out[0, :, 3:] == 0) and np.all(out[1, :, 1:] == 0)
    with_std = preprocess.normalize_image(image[0], std=preprocess.PIXEL_STD).numpy()
    np.testing.assert_allclose(with_std[0, 0], expected / np.array(preprocess.PIXEL_STD), rtol=1e-6)


def test_flip_helpers_against_numpy():
    rng = np.random.default_rng(1)
    width = 50.0
    boxes = np.array([[1, 2, 10, 20], [0, 30, 5, 50]], np.float32)
    np.testing.assert_allclose(augment.flip_boxes(boxes, width).numpy(),
                               [[1, 30, 10, 48], [0, 0, 5, 20]])
    masks = rng.integers(0, 2, (2, 5, 5), dtype=np.uint8)
    np.testing.assert_array_equal(augment.flip_masks(masks).numpy(), masks[:, :, ::-1])
    kp = np.array([[[10, 5, 2], [0, 0, 0], [40, 7, 1]]], np.float32)
    out = augment.flip_keypoints(kp, width, [0, 2, 1]).numpy()
    np.testing.assert_allclose(out, [[[40, 5, 2], [10, 7, 1], [0, 0, 0]]])
    # sample_short_side only returns lo + k * step within [lo, hi]
    values = {int(augment.sample_short_side(tf.constant([i, 0]), (640, 800), 32)) for i in range(60)}
    assert values == {640, 672, 704, 736, 768, 800}


def test_samples_seen_ignores_padding_and_crowd():
    batch = {
        "image_id": tf.constant([5, -1], tf.int64),
        "gt_classes": tf.constant([[1, 2, 3, -1], [1, -1, -1, -1]], tf.int32),
        "gt_is_crowd": tf.constant([[False, True, False, False], [False] * 4]),
        "image_info": tf.constant([[[10, 10], [100, 150], [10, 15], [0, 0]],
                                   [[32, 32], [64, 64], [2, 2], [0, 0]]], tf.float32),
    }
    counts = {k: int(v) for k, v in samples_seen(batch).items()}
    assert counts == {"images": 1, "instances": 2, "pixels": 15000}


def test_decode_image_bytes_matches_pil():
    import io
    from PIL import Image
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)
    for fmt in ("JPEG", "PNG"):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt)
        expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        got = preprocess.decode_image_bytes(buffer.getvalue()).numpy()
        np.testing.assert_array_equal(got, expected)
