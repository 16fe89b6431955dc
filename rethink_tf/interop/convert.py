"""convert_backbone: source tensors -> a rethink_tf backbone body with the source's weights; vgg16_fc: a
VGG-16 source's fc6 / fc7 for the backbone file (`weights.save_backbone_weights(..., head=...)`)."""
import numpy as np

from rethink_tf.interop import archs
from rethink_tf.interop.detectron import DetectronNames
from rethink_tf.interop.keras_apps import KerasAppNames
from rethink_tf.interop.mapping import WeightImportError, WeightMapper
from rethink_tf.interop.resnet_maps import map_resnet, map_vgg16
from rethink_tf.interop.torchvision import TorchvisionNames


def source_names(source, spec, keras_bn_epsilon=1.001e-5):
    """The naming scheme of `source` for `spec`'s body."""
    if source == "keras":
        return KerasAppNames(keras_bn_epsilon)
    if source == "torchvision":
        return TorchvisionNames()
    return DetectronNames("_gn" if spec.backbone["norm"] == "gn" else "_bn")


def convert_backbone(source, arch, tensors, description, body=None, keras_bn_epsilon=1.001e-5):
    """Copies `tensors` {name: numpy array} of `source` / `arch` (archs.ARCHS) into a rethink_tf body.

    Args:
      body: the target body (built); None builds archs.build_target(spec).
      description: names the source in messages (e.g. the file).
    Returns:
      (body, mapping.ImportReport). Raises mapping.WeightImportError naming the first tensor that is
      missing or does not fit.
    """
    spec = archs.get_spec(source, arch)
    body = body if body is not None else archs.build_target(spec)
    mapper = WeightMapper(tensors, f"{source} {arch} {description}")
    names = source_names(source, spec, keras_bn_epsilon)
    if spec.backbone["kind"] == "resnet":
        map_resnet(mapper, body, names)
    else:
        map_vgg16(mapper, body, names)
    return body, mapper.finish(body)


# A source's VGG-16 fc6 and fc7 (weight, bias) keys. torchvision: Linear weights [out, in], fc6 reading
# pool5 flattened in (C, H, W) order; keras.applications (a weight file with the top): kernels [in, out],
# pool5 flattened in (H, W, C) order, as this package's box head flattens its 7 x 7 RoI features.
VGG16_FC_KEYS = {
    "torchvision": (("classifier.0.weight", "classifier.0.bias"), ("classifier.3.weight", "classifier.3.bias")),
    "keras": (("fc1/kernel", "fc1/bias"), ("fc2/kernel", "fc2/bias")),
}


def vgg16_fc(source, tensors, channels, description):
    """A VGG-16 source's fc6 / fc7 in this package's layout, or None when the source has none.

    Args:
      tensors: the source's {name: numpy array}; channels: conv5_3's width (512; less in narrow tests).
    Returns:
      ({"fc6/kernel": [7 * 7 * channels, fc], "fc6/bias", "fc7/kernel": [fc, fc], "fc7/bias"}, the source
      keys read), or (None, []) when `tensors` lacks them (e.g. a keras.applications file without the top).
    Raises WeightImportError naming the tensor when fc6 does not read a 7 x 7 x channels pool5.
    """
    keys = VGG16_FC_KEYS.get(source)
    if keys is None or not all(k in tensors for pair in keys for k in pair):
        return None, []
    out = {}
    for name, (weight_key, bias_key) in zip(("fc6", "fc7"), keys):
        weight = np.asarray(tensors[weight_key], np.float32)
        if source == "torchvision":
            weight = weight.T  # [in, out]
        if name == "fc6":
            if weight.shape[0] != 49 * channels:
                raise WeightImportError(f"{source} vgg16 {description}: {weight_key} reads {weight.shape[0]} "
                                        f"inputs, not pool5's 7 x 7 x {channels}")
            if source == "torchvision":  # rows (C, H, W) -> (H, W, C)
                weight = weight.reshape(channels, 7, 7, -1).transpose(1, 2, 0, 3).reshape(49 * channels, -1)
        out[f"{name}/kernel"], out[f"{name}/bias"] = weight, np.asarray(tensors[bias_key], np.float32)
    return out, [k for pair in keys for k in pair]
