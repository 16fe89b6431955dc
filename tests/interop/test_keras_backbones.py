"""keras.applications ResNet50/101/152 and VGG16 -> rethink_tf body: equal C2-C5 (conv5_3) on real images.

The reference is the keras.applications model (weights=None, randomized BatchNorm statistics and conv
biases) fed keras's own caffe preprocessing (`preprocess_input`: RGB -> BGR, mean subtracted); ours gets
the same images normalized with the import's settings. ResNet50 runs in the default suite (in memory); the
slow ones go through keras weight files and the CLI's import_weights.
"""
import h5py
import keras
import numpy as np
import pytest

from rethink_tf import import_weights
from rethink_tf.data import preprocess
from rethink_tf.modeling import weights
from rethink_tf.interop import archs, convert, keras_apps
from tests.interop.conftest import max_differences, randomize_keras_batchnorm

RELATIVE_TOLERANCE = 1e-4
FEATURE_LAYERS = {
    "resnet50": {2: "conv2_block3_out", 3: "conv3_block4_out", 4: "conv4_block6_out", 5: "conv5_block3_out"},
    "resnet101": {2: "conv2_block3_out", 3: "conv3_block4_out", 4: "conv4_block23_out", 5: "conv5_block3_out"},
    "resnet152": {2: "conv2_block3_out", 3: "conv3_block8_out", 4: "conv4_block36_out", 5: "conv5_block3_out"},
    "vgg16": {4: "block5_conv3"},
}


def check_import(arch, images, tmp_path=None):
    """Converts in memory, or (tmp_path) through the CLI's files: weight file -> backbone file -> body."""
    keras.utils.set_random_seed(0)
    model = randomize_keras_batchnorm(keras_apps.build_application(arch))
    if tmp_path is None:
        body, report = convert.convert_backbone("keras", arch, keras_apps.model_tensors(model), "(in-memory)",
                                                keras_bn_epsilon=keras_apps.bn_epsilon(model) or 1.001e-5)
    else:
        model.save_weights(str(tmp_path / f"{arch}.weights.h5"))
        report = import_weights.import_weights("keras", arch, str(tmp_path / f"{arch}.weights.h5"),
                                               str(tmp_path / f"{arch}.h5"))
        body = archs.build_target(archs.get_spec("keras", arch))
        weights.load_backbone_weights(body, str(tmp_path / f"{arch}.h5"))
    layers = FEATURE_LAYERS[arch]
    extractor = keras.Model(model.input, {str(k): model.get_layer(n).output for k, n in layers.items()})
    module = keras.applications.vgg16 if arch == "vgg16" else keras.applications.resnet
    ref = {int(k): np.asarray(v) for k, v in extractor(module.preprocess_input(images.copy())).items()}
    spec = archs.get_spec("keras", arch)
    x = preprocess.normalize_image(images, spec.pixel_mean, spec.pixel_std, channel_order=spec.channel_order)
    ours = {k: np.asarray(v) for k, v in body(x, training=False).items()}
    diffs = {level: max_differences(ours[level], ref[level]) for level in ref}
    print(arch, {lvl: f"max abs {a:.2e}, rel {r:.2e}" for lvl, (a, r) in diffs.items()}, report.summary())
    for level, (_, rel) in diffs.items():
        assert rel < RELATIVE_TOLERANCE, (arch, level, diffs)
    return report


def test_resnet50_equals_keras_applications(real_images):
    report = check_import("resnet50", real_images)
    assert report.unused == [] and not report.reshaped and not report.derived
    assert len(report.matched) == 53 * 2 + 53 * 4  # kernel + bias per conv, 4 vectors per BN


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet101", "resnet152", "vgg16"])
def test_deeper_equal_keras_applications(arch, real_images, tmp_path):
    check_import(arch, real_images, tmp_path)  # through the weight file, the CLI's path


@pytest.mark.slow  # keras's VGG16 with its top (138M parameters) through a weight file
def test_vgg16_with_top_carries_fc6_fc7(tmp_path):
    """A keras VGG16 file with the top gives the backbone file fc6 / fc7 equal to keras's fc1 / fc2 (same
    (H, W, C) flattening as the detector's box head); a file without the top gives the body only."""
    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(weights=None, include_top=True)
    model.save_weights(str(tmp_path / "top.weights.h5"))
    report = import_weights.import_weights("keras", "vgg16", str(tmp_path / "top.weights.h5"),
                                           str(tmp_path / "top.h5"))
    assert [k for k in report.unused if k.startswith("fc")] == [] and "predictions/kernel" in report.unused
    with h5py.File(tmp_path / "top.h5") as f:
        for ours, theirs in (("fc6", "fc1"), ("fc7", "fc2")):
            for part in ("kernel", "bias"):
                np.testing.assert_array_equal(f[f"head/{ours}/{part}"][()],
                                              np.asarray(getattr(model.get_layer(theirs), part)))
    keras_apps.build_application("vgg16").save_weights(str(tmp_path / "notop.weights.h5"))
    import_weights.import_weights("keras", "vgg16", str(tmp_path / "notop.weights.h5"), str(tmp_path / "notop.h5"))
    with pytest.raises(ValueError, match="has no VGG-16 fc6/kernel"):
        weights.load_vgg16_fc(None, str(tmp_path / "notop.h5"))
