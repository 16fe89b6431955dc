"""`build_backbone`: the one gin configurable that builds a backbone body, for every task.

Detection (the FPN detectors) and classification (ImageNet-style pre-training) build their body
here, so a backbone file written by one is read by the other with the same variable names.
"""
import gin

from rethink_tf.modeling.backbones.resnet import BLOCKS_PER_DEPTH, ResNet
from rethink_tf.modeling.backbones.vgg import VGG16
from rethink_tf.modeling.norm import NORM_KINDS
from rethink_tf.utils import validate

BACKBONES = ("resnet", "vgg16")


def _validate(args):
    v = validate

    def b(name):
        return f"build_backbone.{name}"

    v.one_of(b("kind"), args["kind"], BACKBONES)
    v.one_of(b("depth"), args["depth"], tuple(sorted(BLOCKS_PER_DEPTH)))
    v.integers(b("blocks_per_stage"), args["blocks_per_stage"], length=4, minimum=1, allow_none=True)
    for name in ("base_width", "groups"):
        v.integer(b(name), args[name], minimum=1)
    v.integer(b("width_per_group"), args["width_per_group"], minimum=1, allow_none=True)
    v.integer(b("freeze_at"), args["freeze_at"], minimum=0, maximum=5)
    for name in ("zero_init_last_norm", "stride_in_1x1", "conv_bias"):
        v.boolean(b(name), args[name])
    v.one_of(b("norm"), args["norm"], NORM_KINDS)
    v.number(b("vgg_width_multiplier"), args["vgg_width_multiplier"], minimum=0, exclusive_minimum=True)
    if args["kind"] == "vgg16" and args["norm"] != "none":
        raise validate.ConfigError("build_backbone: the VGG-16 body has no normalization; set norm='none' "
                                   f"(got norm={args['norm']!r}).")
    if args["kind"] == "vgg16" and (args["stride_in_1x1"] or args["conv_bias"]):
        raise validate.ConfigError("build_backbone.stride_in_1x1 / conv_bias are ResNet switches; the VGG-16 "
                                   "body has no 1x1 convs and always has conv biases.")


@gin.configurable
def build_backbone(kind="resnet", depth=50, base_width=64, groups=1, width_per_group=None,
                   blocks_per_stage=None, zero_init_last_norm=False, freeze_at=0, norm="gn",
                   vgg_width_multiplier=1.0, stride_in_1x1=False, conv_bias=False, name="backbone"):
    """Builds a backbone body: images [B, H, W, 3] -> {level: features}.

    Args:
      kind: "resnet" (ResNet / ResNeXt, levels 2..5 = C2..C5, strides 4..32) or "vgg16" (level 4 =
        conv5_3, stride 16, no norm).
      depth, base_width, groups, width_per_group, blocks_per_stage, zero_init_last_norm: ResNet(X)
        shape (backbones.resnet.ResNet). ResNeXt-101 32x8d: depth=101, groups=32, width_per_group=8.
      freeze_at: 0 trains everything; k >= 1 freezes the stem and the first k - 1 stages (ResNet,
        Detectron's FREEZE_AT) or the first k conv blocks (VGG-16).
      norm: norm kind of every conv ("gn", "sync_bn", "bn", "frozen_bn", "none"; see norm.py).
      vgg_width_multiplier: scales VGG-16's widths (tests).
      stride_in_1x1: ResNet only: downsample on each stage's first 1x1 conv (MSRA/Caffe ResNets,
        keras.applications) instead of the 3x3 (torchvision, detectron2); see backbones/resnet.py.
      conv_bias: ResNet only: a bias on every conv, also before a norm (keras.applications).
        VGG-16's convs always have a bias.
      name: layer name (its variables are saved under it).

    The returned layer has `out_channels` and `strides`, dicts keyed by level.
    """
    _validate(locals())
    if kind == "resnet":
        return ResNet(depth=depth, norm=norm, base_width=base_width, groups=groups,
                      width_per_group=width_per_group, zero_init_last_norm=zero_init_last_norm,
                      freeze_at=freeze_at, blocks_per_stage=blocks_per_stage,
                      stride_in_1x1=stride_in_1x1, conv_bias=conv_bias, name=name)
    return VGG16(width_multiplier=vgg_width_multiplier, freeze_at=freeze_at, name=name)
