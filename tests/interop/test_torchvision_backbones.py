"""torchvision ResNet / ResNeXt / VGG-16 -> rethink_tf body: equal C2-C5 (conv5_3) on real images.

The reference is torchvision's own model with random weights and randomized BatchNorm statistics, fed
the images normalized by torchvision's own transform; ours gets the same images normalized with the
import's settings (rethink_tf.interop.archs). ResNet-50 runs in the default suite, the others are slow.
"""
import numpy as np
import pytest

from rethink_tf import import_weights
from rethink_tf.data import preprocess
from rethink_tf.modeling import weights
from rethink_tf.interop import archs, convert
from tests.interop.conftest import max_differences, randomize_torch_batchnorm

torch = pytest.importorskip("torch", reason="torch is in the `interop` extra (pip install -e '.[interop]')")
torchvision = pytest.importorskip("torchvision", reason="torchvision is in the `interop` extra")

# Largest |ours - torchvision| / max |torchvision| accepted per level (float32, different conv kernels).
RELATIVE_TOLERANCE = 1e-4


def torchvision_features(model, images_rgb255):
    """torchvision's preprocessing and forward: {level: NHWC numpy} (ResNet C2-C5, VGG conv5_3 at 4)."""
    x = torch.from_numpy(images_rgb255).permute(0, 3, 1, 2) / 255.0
    x = torchvision.transforms.functional.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    out = {}
    with torch.no_grad():
        if hasattr(model, "layer1"):
            x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
            for level, layer in zip((2, 3, 4, 5), (model.layer1, model.layer2, model.layer3, model.layer4)):
                x = layer(x)
                out[level] = x
        else:
            out[4] = model.features[:30](x)  # through conv5_3's ReLU, before pool5
    return {k: v.permute(0, 2, 3, 1).numpy() for k, v in out.items()}


def ours_features(body, spec, images_rgb255):
    x = preprocess.normalize_image(images_rgb255, spec.pixel_mean, spec.pixel_std,
                                   channel_order=spec.channel_order)
    return {k: np.asarray(v) for k, v in body(x, training=False).items()}


def check_import(arch, constructor, images, tmp_path=None):
    """Converts in memory, or (tmp_path) through the CLI's files: .pth -> backbone file -> fresh body."""
    torch.manual_seed(0)
    model = randomize_torch_batchnorm(constructor(weights=None))
    spec = archs.get_spec("torchvision", arch)
    if tmp_path is None:
        tensors = {k: v.numpy() for k, v in model.state_dict().items()}
        body, report = convert.convert_backbone("torchvision", arch, tensors, "(in-memory state dict)")
    else:
        torch.save(model.state_dict(), tmp_path / f"{arch}.pth")
        report = import_weights.import_weights("torchvision", arch, str(tmp_path / f"{arch}.pth"),
                                               str(tmp_path / f"{arch}.h5"))
        body = archs.build_target(spec)
        weights.load_backbone_weights(body, str(tmp_path / f"{arch}.h5"))
    ref = torchvision_features(model, images)
    ours = ours_features(body, spec, images)
    diffs = {level: max_differences(ours[level], ref[level]) for level in ref}
    print(arch, {lvl: f"max abs {a:.2e}, rel {r:.2e}" for lvl, (a, r) in diffs.items()}, report.summary())
    for level, (_, rel) in diffs.items():
        assert rel < RELATIVE_TOLERANCE, (arch, level, diffs)
    assert not report.missing
    return report


def test_resnet50_equals_torchvision(real_images, tmp_path):
    report = check_import("resnet50", torchvision.models.resnet50, real_images, tmp_path)
    assert report.unused == ["bn1.num_batches_tracked", "fc.bias", "fc.weight"] + sorted(
        k for k in report.unused if k.startswith("layer"))  # BN counters of the blocks only
    assert all(k.endswith("num_batches_tracked") for k in report.unused if k.startswith("layer"))
    assert len(report.reshaped) == 53  # every conv kernel OIHW -> HWIO


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet101", "resnet152", "resnext101_32x8d", "vgg16"])
def test_deeper_equal_torchvision(arch, real_images):
    check_import(arch, getattr(torchvision.models, arch), real_images)


@pytest.mark.slow  # a full-width VGG-16 (138M parameters) through the CLI's files
def test_vgg16_fc6_fc7_import_equals_torchvision(real_images, tmp_path):
    """The import's fc6 / fc7, loaded into the detector's 2fc box head, give torchvision's fc7 output on
    pool5 of the same image: the (C, H, W) -> (H, W, C) reordering of fc6's inputs is right."""
    from rethink_tf.modeling.heads import build_head

    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval()
    torch.save(model.state_dict(), tmp_path / "vgg16.pth")
    report = import_weights.import_weights("torchvision", "vgg16", str(tmp_path / "vgg16.pth"),
                                           str(tmp_path / "vgg16.h5"))
    assert [k for k in report.unused if k.startswith("classifier")] == ["classifier.6.bias", "classifier.6.weight"]
    assert ("classifier.0.weight", "head/fc6/kernel") in [tuple(m) for m in report.matched]
    spec = archs.get_spec("torchvision", "vgg16")
    body = archs.build_target(spec)
    weights.load_backbone_weights(body, str(tmp_path / "vgg16.h5"))
    head = build_head("box", "2fc", fc_dim=4096)
    head(np.zeros((1, 1, 7, 7, 512), "float32"))
    weights.load_vgg16_fc(head, str(tmp_path / "vgg16.h5"))

    image = np.ascontiguousarray(real_images[:1, :, :, :])
    image = np.asarray(torch.nn.functional.interpolate(  # 224 x 224: pool5 is 7 x 7, as a RoI's features
        torch.from_numpy(image).permute(0, 3, 1, 2).float(), size=(224, 224), mode="bilinear",
        align_corners=False).permute(0, 2, 3, 1).numpy(), np.float32)
    x = torch.from_numpy(image).permute(0, 3, 1, 2) / 255.0
    x = torchvision.transforms.functional.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        ref = model.classifier[:5](torch.flatten(model.avgpool(model.features(x)), 1)).numpy()  # fc6, fc7 + ReLUs
    conv5_3 = ours_features(body, spec, image)[4]
    pool5 = conv5_3.reshape(1, 7, 2, 7, 2, 512).max(axis=(2, 4))
    ours = np.asarray(head(pool5[:, None]))[:, 0]
    abs_diff, rel = max_differences(ours, ref)
    print("vgg16 fc7", f"max abs {abs_diff:.2e}, rel {rel:.2e}")
    assert rel < RELATIVE_TOLERANCE and np.abs(ref).max() > 0
