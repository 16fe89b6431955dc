"""Feature Pyramid Network (Lin et al.) as in Detectron: P2-P5 from C2-C5, P6 by subsampling P5."""
import gin
import keras

from rethink_tf.modeling import init
from rethink_tf.modeling.layers import ConvNorm
from rethink_tf.utils import validate


@keras.saving.register_keras_serializable(package="rethink_tf")
class FPN(keras.layers.Layer):
    """{2..5: C_l [B, H/2^l, W/2^l, *]} -> {2..6: P_l [B, H/2^l, W/2^l, num_channels]}.

    1x1 lateral + 3x3 output convs (Xavier init; bias only without norm; norm after each conv in
    GN/SyncBN models), nearest 2x top-down upsampling, P6 = stride-2 subsample of P5 (RPN only).

    Args:
      num_channels: pyramid width (256).
      norm: norm kind after each conv.
      min_level, max_level: input levels used (2, 5); P(max_level + 1) is added by subsampling.
    """

    def __init__(self, num_channels=256, norm="gn", min_level=2, max_level=5, **kwargs):
        kwargs.setdefault("name", "fpn")
        super().__init__(**kwargs)
        self.num_channels = num_channels
        self._config = dict(num_channels=num_channels, norm=norm, min_level=min_level,
                            max_level=max_level)
        self.min_level, self.max_level = min_level, max_level
        self.levels = list(range(min_level, max_level + 1))
        self.lateral = {l: ConvNorm(num_channels, 1, norm=norm, activation=False,
                                    kernel_initializer=init.xavier_fill(), name=f"lateral{l}")
                        for l in self.levels}
        self.output_convs = {l: ConvNorm(num_channels, 3, norm=norm, activation=False,
                                         kernel_initializer=init.xavier_fill(), name=f"output{l}")
                             for l in self.levels}
        self.upsample = keras.layers.UpSampling2D(2, interpolation="nearest", name="upsample")
        self.top_pool = keras.layers.MaxPooling2D(1, strides=2, name=f"p{max_level + 1}_pool")

    def call(self, features, training=None):
        top_down = None
        outputs = {}
        for l in reversed(self.levels):
            lateral = self.lateral[l](features[l], training=training)
            top_down = lateral if top_down is None else lateral + self.upsample(top_down)
            outputs[l] = self.output_convs[l](top_down, training=training)
        outputs[self.max_level + 1] = self.top_pool(outputs[self.max_level])
        return dict(sorted(outputs.items()))

    def get_config(self):
        return {**super().get_config(), **self._config}


def check_fpn_arguments(args):
    validate.integer("build_fpn.num_channels", args["num_channels"], minimum=1)


@gin.configurable(denylist=["norm"])
def build_fpn(norm="gn", num_channels=256):
    """The detector's FPN (P2..P5 from C2..C5, P6 for the RPN) -> FPN layer named "fpn".

    Args: norm: the model's FPN norm (`build_model.fpn_norm`, else `build_model.norm`; none after a
      frozen-BN backbone); num_channels (gin): width of every level, also the RPN conv's (256).
    """
    check_fpn_arguments(locals())
    return FPN(num_channels=num_channels, norm=norm, min_level=2, max_level=5, name="fpn")
