"""The source architectures `rethink_tf.import_weights` reads, and the rethink_tf settings each needs.

An `ArchSpec` gives the `build_backbone` arguments of the equivalent rethink_tf body and the input
normalization the source was trained with. `gin_bindings(spec, weights_file)` writes them as gin
(the file the import puts next to its output), so training / evaluation / export use the same body
and pixels:
- keras.applications ResNets and VGG16 ("caffe" preprocessing): BGR, mean (103.939, 116.779, 123.68),
  no std; ResNets downsample in the first 1x1 conv and have a bias on every conv; BatchNorm eps 1.001e-5
  (folded into the variance on import).
- torchvision: RGB, mean (0.485, 0.456, 0.406) * 255, std (0.229, 0.224, 0.225) * 255; stride on the 3x3.
- Detectron (Caffe2) ImageNet models: BGR, mean (102.9801, 115.9465, 122.7717), no std. The MSRA
  ResNets (R-50, R-101) downsample in the 1x1 (Detectron's RESNETS.STRIDE_1X1 default); the GN and
  ResNeXt models set STRIDE_1X1 False in Detectron's configs.
BatchNorm / AffineChannel sources import as "frozen_bn" (Detectron's fine-tuning uses frozen affine
norms); GN sources as "gn".
"""
import dataclasses

TORCHVISION_MEAN = (123.675, 116.28, 103.53)   # RGB, 0..255
TORCHVISION_STD = (58.395, 57.12, 57.375)
KERAS_CAFFE_MEAN = (103.939, 116.779, 123.68)   # BGR
DETECTRON_MEAN = (102.9801, 115.9465, 122.7717)   # BGR


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    backbone: dict            # build_backbone arguments
    channel_order: str
    pixel_mean: tuple
    pixel_std: tuple | None   # None: no division (build_dataset.divide_by_std = False)


def _resnet(depth, norm="frozen_bn", groups=1, width_per_group=None, stride_in_1x1=False, conv_bias=False):
    return dict(kind="resnet", depth=depth, norm=norm, groups=groups, width_per_group=width_per_group,
                stride_in_1x1=stride_in_1x1, conv_bias=conv_bias)


_VGG = dict(kind="vgg16", norm="none")
_KERAS = dict(channel_order="bgr", pixel_mean=KERAS_CAFFE_MEAN, pixel_std=None)
_TORCH = dict(channel_order="rgb", pixel_mean=TORCHVISION_MEAN, pixel_std=TORCHVISION_STD)
_DETECTRON = dict(channel_order="bgr", pixel_mean=DETECTRON_MEAN, pixel_std=None)

ARCHS = {
    "keras": {
        **{f"resnet{d}": ArchSpec(_resnet(d, stride_in_1x1=True, conv_bias=True), **_KERAS)
           for d in (50, 101, 152)},
        "vgg16": ArchSpec(_VGG, **_KERAS),
    },
    "torchvision": {
        **{f"resnet{d}": ArchSpec(_resnet(d), **_TORCH) for d in (50, 101, 152)},
        "resnext101_32x8d": ArchSpec(_resnet(101, groups=32, width_per_group=8), **_TORCH),
        "vgg16": ArchSpec(_VGG, **_TORCH),
    },
    "detectron": {
        "R-50": ArchSpec(_resnet(50, stride_in_1x1=True), **_DETECTRON),
        "R-101": ArchSpec(_resnet(101, stride_in_1x1=True), **_DETECTRON),
        "R-50-GN": ArchSpec(_resnet(50, norm="gn"), **_DETECTRON),
        "R-101-GN": ArchSpec(_resnet(101, norm="gn"), **_DETECTRON),
        "X-101-32x8d": ArchSpec(_resnet(101, groups=32, width_per_group=8), **_DETECTRON),
        "X-101-64x4d": ArchSpec(_resnet(101, groups=64, width_per_group=4), **_DETECTRON),
        "X-152-32x8d-IN5k": ArchSpec(_resnet(152, groups=32, width_per_group=8), **_DETECTRON),
    },
}


def get_spec(source, arch):
    """The ArchSpec of `arch` from `source`; ValueError listing the choices otherwise."""
    if source not in ARCHS:
        raise ValueError(f"--source must be one of {sorted(ARCHS)}, got {source!r}")
    if arch not in ARCHS[source]:
        raise ValueError(f"--arch for --source={source} must be one of {sorted(ARCHS[source])}, got {arch!r}")
    return ARCHS[source][arch]


def build_target(spec, **overrides):
    """The rethink_tf backbone of `spec` (built on a 64x64 input so it has variables)."""
    import keras

    from rethink_tf.modeling.backbones.builder import build_backbone
    body = build_backbone(**{**spec.backbone, **overrides})
    body(keras.ops.zeros((1, 64, 64, 3)))
    return body


def gin_bindings(spec, weights_file=None):
    """Gin lines that make training / evaluation / export use `spec`'s body and input normalization."""
    b = spec.backbone
    lines = [f"# Written by rethink_tf.import_weights: the settings the imported weights were trained with."]
    if b["kind"] == "resnet":
        lines += [f"build_model.backbone = 'resnet'", f"build_backbone.depth = {b['depth']}",
                  f"build_backbone.groups = {b['groups']}",
                  f"build_backbone.width_per_group = {b['width_per_group']}",
                  f"build_model.backbone_norm = '{b['norm']}'",
                  f"build_backbone.stride_in_1x1 = {b['stride_in_1x1']}",
                  f"build_backbone.conv_bias = {b['conv_bias']}"]
    else:
        lines += ["build_model.backbone = 'vgg16'", "build_model.backbone_norm = 'none'"]
    lines += [f"input_normalization.channel_order = '{spec.channel_order}'",
              f"input_normalization.pixel_mean = {tuple(spec.pixel_mean)}"]
    if spec.pixel_std is not None:
        lines += [f"input_normalization.pixel_std = {tuple(spec.pixel_std)}",
                  "build_dataset.divide_by_std = True"]
    else:
        lines += ["build_dataset.divide_by_std = False"]
    if weights_file:
        lines += [f"experiment.backbone_weights = '{weights_file}'"]
    return "\n".join(lines) + "\n"
