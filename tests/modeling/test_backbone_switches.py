"""The import switches of the one ResNet body and of the input normalization; defaults unchanged."""
import gin
import keras
import numpy as np
import pytest

from rethink_tf.data import preprocess
from rethink_tf.modeling.backbones.builder import build_backbone
from rethink_tf.modeling.weights import _variables_by_key
from rethink_tf.utils import validate
from rethink_tf.utils.visualize import denormalize_image

TINY = dict(base_width=8, blocks_per_stage=(1, 1, 1, 1), norm="frozen_bn")


def _built(**kwargs):
    body = build_backbone(**{**TINY, **kwargs})
    body(keras.ops.zeros((1, 64, 64, 3)))
    return body


def test_defaults_keep_the_stride_on_the_3x3_and_no_bias_before_a_norm():
    body = _built()
    block = body.stages[1][0]
    assert block.conv1.conv.strides == (1, 1) and block.conv2.conv.strides == (2, 2)
    assert not any(k.endswith("bias") for k in _variables_by_key(body))
    # The same variables as before the switches existed (a default backbone file still loads).
    assert sorted(_variables_by_key(body)) == sorted(_variables_by_key(_built(stride_in_1x1=False,
                                                                                conv_bias=False)))


def test_stride_in_1x1_and_conv_bias():
    body = _built(stride_in_1x1=True, conv_bias=True)
    for blocks in body.stages[1:]:
        block = blocks[0]
        assert block.conv1.conv.strides == (2, 2) and block.conv2.conv.strides == (1, 1)
        assert block.conv1.pad is None  # a 1x1 conv samples pixels 0, 2, 4, ... without padding
    biases = [k for k in _variables_by_key(body) if k.endswith("conv/bias")]
    assert len(biases) == 1 + 4 * 3 + 4  # stem, 3 convs per block, 4 projections
    out = body(np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32"))
    assert {k: tuple(v.shape) for k, v in out.items()} == {2: (1, 16, 16, 32), 3: (1, 8, 8, 64),
                                                           4: (1, 4, 4, 128), 5: (1, 2, 2, 256)}


def test_vgg_rejects_resnet_switches():
    with pytest.raises(validate.ConfigError, match="stride_in_1x1"):
        build_backbone(kind="vgg16", norm="none", stride_in_1x1=True)


def test_normalize_image_channel_order_against_numpy():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, size=(2, 8, 12, 3)).astype("float32")
    mean, std = (103.9, 116.8, 123.7), (57.0, 57.1, 58.4)
    got = np.asarray(preprocess.normalize_image(image, mean, std, channel_order="bgr"))
    want = (image[..., ::-1] - np.array(mean, "float32")) / np.array(std, "float32")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(denormalize_image(got[0], mean, std, "bgr"), np.round(image[0]), atol=1)


def test_input_normalization_gin_and_validation():
    gin.clear_config()
    try:
        assert preprocess.pixel_normalization(False) == (preprocess.PIXEL_MEAN, None, "rgb")
        assert preprocess.pixel_normalization(True).std == preprocess.PIXEL_STD
        gin.parse_config(["input_normalization.channel_order = 'bgr'",
                          "input_normalization.pixel_mean = (102.9801, 115.9465, 122.7717)"])
        assert preprocess.pixel_normalization(False) == ((102.9801, 115.9465, 122.7717), None, "bgr")
        gin.parse_config(["input_normalization.channel_order = 'brg'"])
        with pytest.raises(validate.ConfigError, match="input_normalization.channel_order"):
            preprocess.input_normalization()
        gin.parse_config(["input_normalization.channel_order = 'rgb'",
                          "input_normalization.pixel_std = (1.0, 0.0, 1.0)"])
        with pytest.raises(validate.ConfigError, match="input_normalization.pixel_std"):
            preprocess.input_normalization()
    finally:
        gin.clear_config()
