"""convert_backbone: source tensors -> a rethink_tf backbone body with the source's weights."""
from rethink_tf.interop import archs
from rethink_tf.interop.detectron import DetectronNames
from rethink_tf.interop.keras_apps import KerasAppNames
from rethink_tf.interop.mapping import WeightMapper
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
