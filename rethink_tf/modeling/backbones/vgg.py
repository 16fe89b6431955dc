"""VGG-16 conv body for the paper's Faster R-CNN experiment: conv1_1 ... conv5_3 (stride 16).

No normalization, MSRA init, ReLU after every conv, 2x2 max-pool after conv1-conv4 blocks only
(pool5 is dropped so conv5_3 keeps stride 16, as in the original Faster R-CNN).
"""
import keras

from rethink_tf.modeling import init

VGG16_STAGES = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


@keras.saving.register_keras_serializable(package="rethink_tf")
class VGG16(keras.layers.Layer):
    """images [B, H, W, 3] -> {4: conv5_3 [B, H/16, W/16, 512 * width_multiplier]}.

    Args:
      width_multiplier: scales every conv width (1.0 = VGG-16; smaller for tests).
      freeze_at: 0 trains everything; k >= 1 freezes conv1..conv(k) blocks.
    """

    def __init__(self, width_multiplier=1.0, freeze_at=0, **kwargs):
        kwargs.setdefault("name", "vgg16")
        super().__init__(**kwargs)
        self._config = dict(width_multiplier=width_multiplier, freeze_at=freeze_at)
        self.blocks = []
        for s, (num_convs, width) in enumerate(VGG16_STAGES):
            filters = max(1, int(round(width * width_multiplier)))
            convs = [keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                         kernel_initializer=init.msra_fill(),
                                         name=f"conv{s + 1}_{c + 1}")
                     for c in range(num_convs)]
            if s < freeze_at:
                for conv in convs:
                    conv.trainable = False
            self.blocks.append(convs)
        self.pools = [keras.layers.MaxPooling2D(2, strides=2, name=f"pool{s + 1}") for s in range(4)]
        self.out_channels = {4: max(1, int(round(512 * width_multiplier)))}
        self.strides = {4: 16}

    def call(self, images, training=None):
        x = images
        for s, convs in enumerate(self.blocks):
            for conv in convs:
                x = conv(x)
            if s < 4:
                x = self.pools[s](x)
        return {4: x}

    def get_config(self):
        return {**super().get_config(), **self._config}
