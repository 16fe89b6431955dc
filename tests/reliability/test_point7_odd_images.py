"""Issue 8.7: images the detector cannot mean anything on, sent to the SavedModel.

Faults: a 1x5000 image (before: 20 confident 1-pixel-tall detections), a 1-channel and a 4-channel
image, a 4x4 image, a 2-channel array, an empty batch (before: shape errors for gray and the empty
batch). After: gray and RGBA are converted to RGB, degenerate images are refused with a message
that names the image and the limits, an empty batch returns empty outputs.
"""
import io
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image


@pytest.fixture(scope="module")
def served(exported_run):
    return tf.saved_model.load(exported_run)


def _image(height=48, width=64, seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8) + rng.integers(0, 60, (1, 1, 3), dtype=np.uint8)
    image[8:30, 10:40] = (220, 40, 40)  # a solid shape on a dark background, like the training data
    return image


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _numpy(outputs):
    return {k: v.numpy() for k, v in outputs.items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-4, err_msg=key)


def test_gray_and_rgba_are_converted(served):
    serve = served.signatures["serving_default"]
    rgb = _image()
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    gray_as_rgb = _numpy(serve(images=tf.constant(np.repeat(gray[None, :, :, None], 3, -1))))
    assert gray_as_rgb["num_detections"][0] > 0
    _assert_same(_numpy(serve(images=tf.constant(gray[None, :, :, None]))), gray_as_rgb)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], -1)
    as_rgb = _numpy(serve(images=tf.constant(rgb[None])))
    _assert_same(_numpy(serve(images=tf.constant(rgba[None]))), as_rgb)
    # The same through image_bytes: PNGs of mode L and RGBA.
    serve_bytes = served.signatures["image_bytes"]
    _assert_same(_numpy(serve_bytes(image_bytes=tf.constant([_png(gray)]))), gray_as_rgb)
    _assert_same(_numpy(serve_bytes(image_bytes=tf.constant([_png(rgba)]))), as_rgb)


@pytest.mark.parametrize("height,width,named", [
    (1, 5000, "images[0] is 1x5000 px"),
    (5000, 20, "images[0] is 5000x20 px"),
    (4, 4, "images[0] is 4x4 px"),
])
def test_degenerate_images_are_refused(served, height, width, named):
    image = np.full((1, height, width, 3), 128, np.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(named)) as error:
        served.signatures["serving_default"](images=tf.constant(image))
    assert "aspect ratio <= 2" in str(error.value)  # max_size 64 / 32 px
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(named.replace("images", "image_bytes"))):
        served.signatures["image_bytes"](image_bytes=tf.constant([_png(image[0])]))


def test_acceptable_extremes_still_pass(served):
    # 32 px after the resize (64 -> 32x64) and 8 px originals (upscaled to 64) are within the limits.
    for shape in ((50, 100, 3), (8, 8, 3)):
        outputs = served.signatures["serving_default"](images=tf.constant(np.full((1,) + shape, 90, np.uint8)))
        assert outputs["image_shape"].numpy().tolist() == [list(shape[:2])]


def test_two_channels_are_refused(served):
    with pytest.raises(tf.errors.InvalidArgumentError, match="have 2 channels; expected 3"):
        served.signatures["serving_default"](images=tf.zeros([1, 48, 64, 2], tf.uint8))


def test_empty_batch_gives_empty_outputs(served):
    one = _numpy(served.signatures["serving_default"](images=tf.constant(_image()[None])))
    for outputs in (served.signatures["serving_default"](images=tf.zeros([0, 48, 64, 3], tf.uint8)),
                    served.signatures["image_bytes"](image_bytes=tf.constant([], tf.string))):
        outputs = _numpy(outputs)
        assert outputs.keys() == one.keys()
        for key, value in outputs.items():
            assert value.dtype == one[key].dtype, key
            expected = (0,) + one[key].shape[1:]
            if key == "detection_masks":  # [B, D, H, W] with H, W the batch's largest image: 0
                expected = (0, one[key].shape[1], 0, 0)
            assert value.shape == expected, key
