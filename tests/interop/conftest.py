"""Shared pieces of the weight-import tests: real COCO images and randomized reference weights."""
import pathlib
import sys

# torch's GPU compiler triton segfaults when it loads after TensorFlow; CPU tests never need it
# (rethink_tf.interop.torchvision.import_torch does the same for the CLI).
sys.modules.setdefault("triton", None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"
IMAGE_FILES = ("000000000009.jpg", "000000000025.jpg")


@pytest.fixture(scope="session")
def real_images():
    """Two coco128 images resized (bilinear) to 160x224: float32 RGB 0..255 [2, 160, 224, 3]."""
    images = []
    for name in IMAGE_FILES:
        raw = tf.io.decode_jpeg(tf.io.read_file(str(DATA / "coco128" / "train2017" / name)), channels=3)
        images.append(tf.image.resize(tf.cast(raw, tf.float32), (160, 224)).numpy())
    return np.stack(images)


def randomize_torch_batchnorm(model, seed=0):
    """Random BN affine and statistics, so a frozen BN is not the identity (eval-mode reference)."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                c = m.weight.shape[0]
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
    return model.eval()


def randomize_keras_batchnorm(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if hasattr(layer, "moving_variance"):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, c).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.2, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype("float32"))
        elif hasattr(layer, "bias") and getattr(layer, "use_bias", False) and layer.bias is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype("float32"))
    return model


def max_differences(ours, reference):
    """(max |ours - reference|, that divided by max |reference|)."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    diff = float(np.max(np.abs(ours - reference)))
    return diff, diff / float(np.max(np.abs(reference)))
