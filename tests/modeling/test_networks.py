"""Networks without ops: norm factory, initializers, backbones, FPN, heads, registry, weight files."""
import h5py
import keras
import numpy as np
import pytest

from rethink_tf.modeling import init
from rethink_tf.modeling.backbones.resnet import ResNet
from rethink_tf.modeling.backbones.vgg import VGG16
from rethink_tf.modeling.fpn import FPN
from rethink_tf.modeling.heads import build_head, registered_heads
from rethink_tf.modeling.heads.box_head import BoxPredictor
from rethink_tf.modeling.heads.mask_head import MaskHead
from rethink_tf.modeling.heads.rpn_head import RPNHead
from rethink_tf.modeling.norm import NORM_LAYER_TYPES, FrozenBatchNorm, GroupNorm, build_norm
from rethink_tf.modeling.weights import load_backbone_weights, save_backbone_weights

RNG = np.random.default_rng(0)


def _count(layer):
    return sum(int(np.prod(v.shape)) for v in layer.weights)


@pytest.fixture(scope="module")
def tiny_resnet():
    net = ResNet(depth=50, norm="gn", base_width=8, name="backbone")
    net(np.zeros((1, 64, 64, 3), "float32"))
    return net


# ---------------------------------------------------------------- norm
def test_build_norm_kinds_and_decay_exclusion():
    assert isinstance(build_norm("gn"), GroupNorm)
    bn = build_norm("bn")
    sync = build_norm("syncbn")
    assert isinstance(bn, keras.layers.BatchNormalization) and not bn.synchronized
    assert sync.synchronized and sync.momentum == 0.9 and sync.epsilon == 1e-5
    assert isinstance(build_norm("frozen_bn"), FrozenBatchNorm)
    assert isinstance(build_norm("none"), keras.layers.Identity)
    for kind in ("gn", "bn", "syncbn", "frozen_bn"):
        assert isinstance(build_norm(kind), NORM_LAYER_TYPES)
    assert not isinstance(build_norm("none"), NORM_LAYER_TYPES)
    with pytest.raises(ValueError, match="Unknown norm kind 'batchnorm'"):
        build_norm("batchnorm")


def test_group_norm_matches_numpy_and_is_batch_independent():
    x = RNG.normal(size=(4, 5, 6, 64)).astype("float32") * 3 + 1
    gn = build_norm("gn")
    y = np.asarray(gn(x))
    assert gn.groups == 32
    g = x.reshape(4, 5, 6, 32, 2)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = g.var(axis=(1, 2, 4), keepdims=True)
    ref = ((g - mean) / np.sqrt(var + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(y, ref, atol=2e-5)
    # Each image alone gives the same output as inside the batch.
    np.testing.assert_allclose(np.asarray(gn(x[1:2])), y[1:2], atol=1e-6)
    narrow = build_norm("gn")
    narrow(x[..., :8])
    assert narrow.groups == 8  # gcd(32, 8): narrow test widths still build


def test_frozen_bn_is_fixed_affine():
    layer = build_norm("frozen_bn")
    x = RNG.normal(size=(2, 3, 3, 4)).astype("float32")
    layer(x)
    gamma, beta = np.array([1.0, 2, 3, 4]), np.array([0.5, 0, -1, 2])
    mean, var = np.array([0.1, -0.2, 0.3, 0]), np.array([1.0, 4, 0.25, 2])
    for v, val in zip((layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance),
                      (gamma, beta, mean, var)):
        v.assign(val.astype("float32"))
    ref = (x - mean) / np.sqrt(var + 1e-5) * gamma + beta
    np.testing.assert_allclose(np.asarray(layer(x, training=True)), ref, atol=1e-5)
    assert not layer.trainable_weights


def test_zero_gamma_option():
    layer = build_norm("gn", zero_init=True)
    layer(np.ones((1, 2, 2, 32), "float32"))
    assert np.all(np.asarray(layer.gamma) == 0)


def test_msra_fill_fan_out_std():
    kernel = np.asarray(init.msra_fill()((3, 3, 64, 128)))
    np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / (9 * 128)), rtol=0.03)
    xavier = np.asarray(init.xavier_fill()((1, 1, 512, 256)))
    assert np.abs(xavier).max() <= np.sqrt(3.0 / 512) + 1e-7


# ---------------------------------------------------------------- backbones / FPN
def test_resnet_shapes_and_structure(tiny_resnet):
    feats = tiny_resnet(np.zeros((2, 64, 96, 3), "float32"))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        2: (2, 16, 24, 32), 3: (2, 8, 12, 64), 4: (2, 4, 6, 128), 5: (2, 2, 3, 256)}
    assert [len(s) for s in tiny_resnet.stages] == [3, 4, 6, 3]
    names = [v.path for v in tiny_resnet.weights]
    assert not any(n.endswith("conv/bias") for n in names)  # no conv bias before a norm
    assert sum(n.endswith("shortcut/conv/kernel") for n in names) == 4
    # Stride lives on the 3x3 conv (conv2), not the 1x1.
    block = tiny_resnet.stages[1][0]
    assert block.conv1.strides == 1 and block.conv2.strides == 2


def test_resnext_groups_widths():
    net = ResNet(depth=101, norm="gn", base_width=8, groups=4, width_per_group=2,
                 blocks_per_stage=(1, 1, 2, 1))
    net(np.zeros((1, 32, 32, 3), "float32"))
    conv2 = net.stages[0][0].conv2.conv
    assert conv2.groups == 4 and conv2.kernel.shape == (3, 3, 2, 8)  # 4 groups x 2 = 8 wide
    assert net.stages[3][0].conv2.conv.kernel.shape == (3, 3, 16, 64)  # 4 groups x 16
    with pytest.raises(ValueError, match="depth must be one of"):
        ResNet(depth=34)


def test_freeze_at_freezes_stem_and_res2():
    net = ResNet(norm="frozen_bn", base_width=8, freeze_at=2, blocks_per_stage=(1, 1, 1, 1))
    net(np.zeros((1, 32, 32, 3), "float32"))
    trainable = {v.path for v in net.trainable_weights}
    assert not any("/stem/" in p or "/res2_" in p for p in trainable)
    assert any("/res3_" in p for p in trainable)


def test_vgg16_single_level_stride16():
    net = VGG16(width_multiplier=0.125)
    feats = net(np.zeros((1, 64, 64, 3), "float32"))
    assert list(feats) == [4] and tuple(feats[4].shape) == (1, 4, 4, 64)
    assert len(net.weights) == 2 * 13  # 13 convs with bias, no norm


def test_fpn_levels_and_p6(tiny_resnet):
    fpn = FPN(num_channels=16, norm="gn")
    feats = tiny_resnet(np.asarray(RNG.normal(size=(1, 64, 64, 3)), "float32"))
    p = fpn(feats)
    assert {k: tuple(v.shape) for k, v in p.items()} == {
        2: (1, 16, 16, 16), 3: (1, 8, 8, 16), 4: (1, 4, 4, 16), 5: (1, 2, 2, 16), 6: (1, 1, 1, 16)}
    np.testing.assert_allclose(np.asarray(p[6])[0, 0, 0], np.asarray(p[5])[0, 0, 0])
    no_norm = FPN(num_channels=16, norm="none")
    no_norm(feats)
    assert any(v.path.endswith("conv/bias") for v in no_norm.weights)


# ---------------------------------------------------------------- heads
def test_rpn_head_layout():
    head = RPNHead(num_anchors=3, num_channels=8)
    feats = {2: np.zeros((2, 8, 8, 8), "float32"), 3: np.zeros((2, 4, 4, 8), "float32")}
    logits, deltas = head(feats)
    assert tuple(logits[2].shape) == (2, 192) and tuple(deltas[3].shape) == (2, 48, 4)
    # Channel a*4 + k of location (y, x) is row (y*W + x)*A + a of the reshaped deltas.
    x = np.asarray(RNG.normal(size=(1, 4, 4, 8)), "float32")
    raw = np.asarray(head.deltas(head.conv(x)))
    np.testing.assert_allclose(np.asarray(head({3: x})[1][3])[0, (1 * 4 + 2) * 3 + 1],
                               raw[0, 1, 2, 4:8], atol=1e-6)


def test_box_heads_and_predictor_shapes():
    assert registered_heads("box") == ["2fc", "4conv1fc"]
    pooled = np.asarray(RNG.normal(size=(2, 5, 7, 7, 16)), "float32")
    fc = build_head("box", "2fc", fc_dim=32)
    conv = build_head("box", "4conv1fc", num_convs=2, conv_dim=8, fc_dim=32, norm="gn")
    assert tuple(fc(pooled).shape) == (2, 5, 32)
    assert tuple(conv(pooled).shape) == (2, 5, 32)
    pred = BoxPredictor(num_classes=3)
    logits, deltas = pred(conv(pooled))
    assert tuple(logits.shape) == (2, 5, 4) and tuple(deltas.shape) == (2, 5, 3, 4)
    assert tuple(BoxPredictor(3, class_agnostic=True)(fc(pooled))[1].shape) == (2, 5, 1, 4)
    np.testing.assert_allclose(np.asarray(pred.box.kernel).std(), 0.001, rtol=0.2)
    with pytest.raises(ValueError, match="Unknown box head 'fpn'"):
        build_head("box", "fpn")


def test_mask_head_shape_dtype():
    head = MaskHead(num_classes=3, num_convs=2, conv_dim=8)
    out = head(np.zeros((2, 4, 14, 14, 16), "float32"))
    assert tuple(out.shape) == (2, 4, 28, 28, 3) and keras.backend.standardize_dtype(out.dtype) == "float32"


# ---------------------------------------------------------------- weight files
def _small_resnet(**kwargs):
    net = ResNet(**{"norm": "gn", "base_width": 8, "blocks_per_stage": (1, 1, 1, 1), **kwargs})
    net(np.zeros((1, 32, 32, 3), "float32"))
    return net


def test_backbone_weights_roundtrip_and_errors(tmp_path):
    path = str(tmp_path / "r50.h5")
    source = _small_resnet(name="backbone")
    save_backbone_weights(source, path)
    other = _small_resnet(name="other_backbone")
    report = load_backbone_weights(other, path)
    assert len(report.matched) == len(source.weights) and not report.unused_in_file
    for a, b in zip(source.weights, other.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    with pytest.raises(FileNotFoundError, match="not found"):
        load_backbone_weights(other, str(tmp_path / "absent.h5"))
    wide = _small_resnet(base_width=16)
    with pytest.raises(ValueError, match="shape mismatches"):
        load_backbone_weights(wide, path)
    bn = _small_resnet(norm="bn")
    with pytest.raises(ValueError, match="lacks .* variables"):
        load_backbone_weights(bn, path)  # BN moving statistics are not in a GN file
    report = load_backbone_weights(bn, path, allow_missing=True)
    assert report.missing_in_file and all("moving" in k for k in report.missing_in_file)
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        load_backbone_weights(other, str(tmp_path / "junk.h5"))
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="has format"):
        load_backbone_weights(other, str(tmp_path / "foreign.h5"))


def test_vgg16_fc6_fc7_travel_with_the_body_and_load_into_the_2fc_head(tmp_path):
    """A VGG-16 weight file carries fc6 / fc7 under head/; the body load ignores them, load_vgg16_fc puts
    them into a TwoFCHead, and a body-only file or a head of another width is refused naming the file."""
    from rethink_tf.modeling.weights import load_vgg16_fc, vgg16_fc_arrays

    body = VGG16(width_multiplier=0.125, name="backbone")
    body(np.zeros((1, 224, 224, 3), "float32"))
    fc6, fc7 = keras.layers.Dense(16, name="fc6"), keras.layers.Dense(16, name="fc7")
    fc7(fc6(np.zeros((1, 7 * 7 * 64), "float32")))  # pool5 of a 224 image: 7 x 7 x conv5_3's 64 channels
    for layer in (fc6, fc7):
        for v in layer.weights:
            v.assign(RNG.normal(size=v.shape).astype("float32"))
    path = str(tmp_path / "vgg.h5")
    save_backbone_weights(body, path, head=vgg16_fc_arrays(fc6, fc7))
    with h5py.File(path) as f:
        assert f["head/fc6/kernel"].shape == (7 * 7 * 64, 16) and f["head/fc7/bias"].shape == (16,)

    other = VGG16(width_multiplier=0.125, name="backbone")
    other(np.zeros((1, 64, 64, 3), "float32"))
    report = load_backbone_weights(other, path)
    assert len(report.matched) == 26 and not report.unused_in_file and not report.missing_in_file

    head = build_head("box", "2fc", fc_dim=16)
    head(np.zeros((1, 3, 7, 7, 64), "float32"))
    assert load_vgg16_fc(head, path) == ["fc6/kernel", "fc6/bias", "fc7/kernel", "fc7/bias"]
    for got, want in zip(head.weights, fc6.weights + fc7.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    body_only = str(tmp_path / "body_only.h5")
    save_backbone_weights(body, body_only)
    with pytest.raises(ValueError, match=r"body_only\.h5 has no VGG-16 fc6/kernel.*vgg16_fc_from_weights = False"):
        load_vgg16_fc(head, body_only)
    narrow = build_head("box", "2fc", fc_dim=8)
    narrow(np.zeros((1, 3, 7, 7, 64), "float32"))
    with pytest.raises(ValueError, match=r"vgg\.h5: head/fc6/kernel has shape \(3136, 16\), .* \(3136, 8\)"):
        load_vgg16_fc(narrow, path)
    conv_head = build_head("box", "4conv1fc", num_convs=1, conv_dim=8, fc_dim=16, norm="gn")
    with pytest.raises(ValueError, match="two fc layers"):
        load_vgg16_fc(conv_head, path)


def test_2fc_head_kernel_init_xavier_or_msra():
    """Detectron's 2fc head is Xavier (uniform, var 1 / fan_in); the VGG-16 configs ask for MSRA (normal,
    var 2 / fan_out), as the ImageNet VGG-16's fc6 / fc7."""
    x = np.zeros((1, 1, 7, 7, 64), "float32")
    xavier, msra = build_head("box", "2fc", fc_dim=512), build_head("box", "2fc", fc_dim=512, kernel_init="msra")
    xavier(x), msra(x)
    fan_in = 7 * 7 * 64
    np.testing.assert_allclose(np.asarray(xavier.fcs[0].kernel).std(), np.sqrt(1 / fan_in), rtol=0.05)
    np.testing.assert_allclose(np.asarray(msra.fcs[0].kernel).std(), np.sqrt(2 / 512), rtol=0.05)
    np.testing.assert_allclose(np.asarray(msra.fcs[1].kernel).std(), np.sqrt(2 / 512), rtol=0.05)
    assert msra.get_config()["kernel_init"] == "msra"
    with pytest.raises(Exception, match="fc_box_head.kernel_init"):
        build_head("box", "2fc", kernel_init="he")
