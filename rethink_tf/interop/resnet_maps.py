"""Walks a rethink_tf ResNet / VGG-16 body by its layer attributes and names each layer's source tensors.

Each source library names its tensors differently; `map_resnet(mapper, body, names)` and
`map_vgg16(mapper, body, names)` take a `names` object that gives, for a conv / norm position, the
source names (see keras_apps, torchvision, detectron). Positions are (stage, block, conv) with
stage 0..3 = res2..res5, conv "a" / "b" / "c" for the bottleneck's 1x1 / 3x3 / 1x1 and "shortcut";
the stem is ("stem",).
"""
from rethink_tf.interop.mapping import assign_conv, assign_norm


def _map_conv_norm(mapper, conv_norm, names, position):
    conv = names.conv(position)
    assign_conv(mapper, conv_norm.conv, conv["weight"], conv.get("bias"), names.layout)
    if conv_norm.norm is not None:
        norm = names.norm(position)
        assign_norm(mapper, conv_norm.norm, norm["scale"], norm["shift"], norm.get("mean"),
                    norm.get("var"), names.epsilon)


def map_resnet(mapper, body, names):
    """Every variable of a backbones.resnet.ResNet `body` <- the source tensors `names` gives."""
    _map_conv_norm(mapper, body.stem_conv, names, ("stem",))
    for s, blocks in enumerate(body.stages):
        for j, block in enumerate(blocks):
            for key, layer in (("a", block.conv1), ("b", block.conv2), ("c", block.conv3),
                               ("shortcut", block.shortcut)):
                if layer is not None:
                    _map_conv_norm(mapper, layer, names, (s, j, key))


def map_vgg16(mapper, body, names):
    """Every conv of a backbones.vgg.VGG16 `body` <- names.vgg_conv(stage, index) {"weight", "bias"}."""
    for s, convs in enumerate(body.blocks):
        for c, conv in enumerate(convs):
            src = names.vgg_conv(s, c)
            assign_conv(mapper, conv, src["weight"], src["bias"], names.layout)
