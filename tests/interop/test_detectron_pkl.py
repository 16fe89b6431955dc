"""Detectron ImageNet .pkl -> rethink_tf body, on files written with Detectron's own blob names.

`detectron_blob_shapes` lists the blobs the way Detectron's ResNet builder (modeling/ResNet.py:
add_ResNet_convX_body -> add_stage -> add_residual_block -> add_shortcut / bottleneck(_gn)_transformation,
with ConvAffine / ConvGN naming the norm `<conv>_bn` / `<conv>_gn` and the BN stem `res_conv1_bn`)
creates them, from the depth and widths alone: nothing here is derived from rethink_tf's variables.
R-50-GN (stride on the 3x3, GroupNorm) equals torchvision's ResNet-50 built with GroupNorm(32), so the
forward check feeds the same blobs to that model with Detectron's BGR mean-subtracted input.
"""
import pickle

import numpy as np
import pytest

from rethink_tf import import_weights
from rethink_tf.data import preprocess
from rethink_tf.interop import archs, convert, mapping
from rethink_tf.modeling import weights
from rethink_tf.utils.validate import InputError
from tests.interop.conftest import max_differences

BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def detectron_blob_shapes(depth, gn, groups=1, width_per_group=64):
    """{blob name: shape} of Detectron's ResNet body (classifier and momenta not included)."""
    suffix = "_gn" if gn else "_bn"
    shapes = {"conv1_w": (64, 3, 7, 7)}
    stem_norm = "conv1_gn" if gn else "res_conv1_bn"
    shapes.update({stem_norm + "_s": (64,), stem_norm + "_b": (64,)})

    def conv_norm(prefix, dim_in, dim_out, kernel, group=1):
        shapes[prefix + "_w"] = (dim_out, dim_in // group, kernel, kernel)
        shapes[prefix + suffix + "_s"] = (dim_out,)
        shapes[prefix + suffix + "_b"] = (dim_out,)

    dim_in, dim_inner = 64, groups * width_per_group
    for stage, (n, dim_out) in enumerate(zip(BLOCKS[depth], (256, 512, 1024, 2048)), start=2):
        for i in range(n):
            prefix = f"res{stage}_{i}"
            conv_norm(prefix + "_branch2a", dim_in, dim_inner, 1)
            conv_norm(prefix + "_branch2b", dim_inner, dim_inner, 3, groups)
            conv_norm(prefix + "_branch2c", dim_inner, dim_out, 1)
            if dim_in != dim_out:
                conv_norm(prefix + "_branch1", dim_in, dim_out, 1)
            dim_in = dim_out
        dim_inner *= 2
    return shapes


def write_pkl(path, shapes, seed=0, extra=True):
    rng = np.random.default_rng(seed)
    blobs = {}
    for name, shape in shapes.items():
        if name.endswith("_w"):
            fan_in = int(np.prod(shape[1:]))
            blobs[name] = rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype("float32")
        elif name.endswith("_s"):
            blobs[name] = rng.uniform(0.5, 1.5, shape).astype("float32")
        else:
            blobs[name] = rng.normal(0, 0.2, shape).astype("float32")
    if extra:  # Detectron's ImageNet files also hold the classifier and training momenta
        blobs.update(pred_w=np.zeros((1000, 2048), "float32"), pred_b=np.zeros(1000, "float32"),
                     conv1_w_momentum=np.zeros((64, 3, 7, 7), "float32"))
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    return blobs


@pytest.fixture(scope="module")
def r50_gn_body():
    return archs.build_target(archs.get_spec("detectron", "R-50-GN"))


def test_first_tensor_that_does_not_fit_is_named(r50_gn_body):
    shapes = detectron_blob_shapes(50, gn=True)
    shapes["res3_1_branch2b_w"] = (128, 128, 1, 1)
    rng = np.random.default_rng(0)
    tensors = {k: rng.normal(size=s).astype("float32") for k, s in shapes.items()}
    with pytest.raises(mapping.WeightImportError,
                       match=r"'res3_1_branch2b_w' of shape \(128, 128, 1, 1\).*res3_1/conv2/conv/kernel") as err:
        convert.convert_backbone("detectron", "R-50-GN", tensors, "bad.pkl", body=r50_gn_body)
    assert isinstance(err.value, InputError)  # the CLI prints it on one line and exits with status 2
    del tensors["res3_1_branch2b_w"]
    with pytest.raises(mapping.WeightImportError, match="no tensor 'res3_1_branch2b_w'"):
        convert.convert_backbone("detectron", "R-50-GN", tensors, "short.pkl", body=r50_gn_body)


@pytest.mark.slow  # ~17 s (+ a shared GN ResNet-50): the default suite is near its 15 minutes
def test_r50_gn_pkl_equals_torchvision_groupnorm_resnet(tmp_path, real_images, r50_gn_body):
    torch = pytest.importorskip("torch", reason="torch is in the `interop` extra")
    torchvision = pytest.importorskip("torchvision", reason="torchvision is in the `interop` extra")
    blobs = write_pkl(tmp_path / "R-50-GN.pkl", detectron_blob_shapes(50, gn=True))
    report = import_weights.import_weights("detectron", "R-50-GN", str(tmp_path / "R-50-GN.pkl"),
                                           str(tmp_path / "r50_gn.h5"))
    assert report.unused == ["conv1_w_momentum", "pred_b", "pred_w"]
    assert len(report.matched) == len(blobs) - 3 and not report.derived

    # Reference: torchvision's ResNet-50 with GroupNorm(32, eps 1e-5) holding the same blobs.
    model = torchvision.models.resnet50(weights=None, norm_layer=lambda c: torch.nn.GroupNorm(32, c)).eval()
    state = {}
    for name, value in blobs.items():
        torch_name = _torch_name(name)
        if torch_name:
            state[torch_name] = torch.from_numpy(value)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("fc.") for k in missing), (missing, unexpected)
    bgr = real_images[..., ::-1] - np.array(archs.DETECTRON_MEAN, "float32")  # Detectron's input
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(bgr)).permute(0, 3, 1, 2)
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        ref = {}
        for level, layer in zip((2, 3, 4, 5), (model.layer1, model.layer2, model.layer3, model.layer4)):
            x = layer(x)
            ref[level] = x.permute(0, 2, 3, 1).numpy()

    spec = archs.get_spec("detectron", "R-50-GN")
    body = r50_gn_body
    weights.load_backbone_weights(body, str(tmp_path / "r50_gn.h5"))
    x = preprocess.normalize_image(real_images, spec.pixel_mean, spec.pixel_std, channel_order="bgr")
    ours = body(x, training=False)
    diffs = {level: max_differences(np.asarray(ours[level]), ref[level]) for level in ref}
    print("R-50-GN", {lvl: f"max abs {a:.2e}, rel {r:.2e}" for lvl, (a, r) in diffs.items()})
    assert all(rel < 1e-4 for _, rel in diffs.values()), diffs


def _torch_name(blob):
    """Detectron blob -> torchvision ResNet (GroupNorm) parameter name, for the reference model."""
    if blob == "conv1_w":
        return "conv1.weight"
    if blob.startswith("conv1_gn_"):
        return "bn1." + {"s": "weight", "b": "bias"}[blob[-1]]
    if not blob.startswith("res"):
        return None
    stage, rest = blob[3:].split("_", 1)
    block, branch = rest.split("_", 1)
    base = f"layer{int(stage) - 1}.{block}."
    conv = {"branch2a": ("conv1", "bn1"), "branch2b": ("conv2", "bn2"), "branch2c": ("conv3", "bn3"),
            "branch1": ("downsample.0", "downsample.1")}[branch.split("_")[0]]
    if branch.endswith("_w"):
        return base + conv[0] + ".weight"
    return base + conv[1] + "." + {"s": "weight", "b": "bias"}[branch[-1]]


@pytest.mark.slow
def test_r50_affine_pkl_fills_every_variable_from_its_blob(tmp_path):
    """MSRA R-50 (AffineChannel, stride in the 1x1): every blob lands where Detectron's names say."""
    blobs = write_pkl(tmp_path / "R-50.pkl", detectron_blob_shapes(50, gn=False), extra=False)
    report = import_weights.import_weights("detectron", "R-50", str(tmp_path / "R-50.pkl"),
                                           str(tmp_path / "r50.h5"))
    assert report.unused == [] and len(report.matched) == len(blobs)
    body = archs.build_target(archs.get_spec("detectron", "R-50"))
    weights.load_backbone_weights(body, str(tmp_path / "r50.h5"))
    block = body.stages[1][0]  # res3_0: stride in its first 1x1 conv
    assert block.conv1.conv.strides == (2, 2)
    np.testing.assert_array_equal(block.conv2.conv.kernel.numpy(),
                                  blobs["res3_0_branch2b_w"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(block.shortcut.norm.gamma.numpy(), blobs["res3_0_branch1_bn_s"])
    np.testing.assert_array_equal(body.stem_conv.norm.beta.numpy(), blobs["res_conv1_bn_b"])
    # AffineChannel: the frozen BN computes exactly x * s + b.
    norm = block.conv3.norm
    x = np.random.default_rng(0).normal(size=(2, 3, 3, norm.gamma.shape[0])).astype("float32")
    np.testing.assert_allclose(np.asarray(norm(x)), x * blobs["res3_0_branch2c_bn_s"] + blobs["res3_0_branch2c_bn_b"],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_x152_names_cover_the_resnext_body():
    """X-152-32x8d-IN5k: the names Detectron's builder gives a 32x8d ResNeXt-152 fill its body exactly."""
    shapes = detectron_blob_shapes(152, gn=False, groups=32, width_per_group=8)
    rng = np.random.default_rng(0)
    tensors = {k: rng.normal(size=s).astype("float32") for k, s in shapes.items()}
    body, report = convert.convert_backbone("detectron", "X-152-32x8d-IN5k", tensors, "(in memory)")
    assert report.unused == [] and len(report.matched) == len(shapes)
    assert body.stages[2][35].conv2.conv.kernel.shape == (3, 3, 32, 1024)
