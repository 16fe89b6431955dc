"""Image classifier for backbone pre-training: `build_backbone` body + classification head.

    images float32 [B, S, S, 3] -> logits float32 [B, num_classes]

Heads (the body's variables keep the names detection uses, under the layer "backbone", so
`weights.save_backbone_weights(model.backbone, path)` writes what a detector loads):
  * ResNet / ResNeXt: global average pool of C5 + one fc (torchvision's and Goyal et al.'s ImageNet
    models); the fc is initialized N(0, 0.01), bias 0 (Goyal et al.).
  * VGG-16: pool5 (2x2 max-pool of conv5_3, which the detection body leaves out to keep stride 16),
    flatten, fc6 and fc7 (4096, ReLU, dropout 0.5) and fc8, as the original VGG-16; fc6/fc7 MSRA init
    as the convs (the paper's VGG is trained with MSRA init and no normalization), fc8 N(0, 0.01).
Dropout draws are keyed by the stateless `seed` the Trainer passes per step (exact resume).
"""
import gin
import keras
import tensorflow as tf

from rethink_tf.modeling import init
from rethink_tf.modeling.backbones.builder import build_backbone
from rethink_tf.modeling.backbones.vgg import VGG16
from rethink_tf.utils import validate


@keras.saving.register_keras_serializable(package="rethink_tf")
class ImageClassifier(keras.Model):
    """Backbone + head. `call(images, training, seed=None)` -> float32 logits [B, num_classes].

    Args:
      num_classes: number of classes.
      backbone: a layer from `build_backbone` (named "backbone"), images -> {level: features}.
      fc_dim: width of VGG-16's fc6 / fc7 (4096).
      dropout: dropout rate after fc6 / fc7 (VGG-16 only; 0.5).
    """

    def __init__(self, num_classes, backbone, fc_dim=4096, dropout=0.5, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.fc_dim, self.dropout = int(num_classes), int(fc_dim), float(dropout)
        self.backbone = backbone
        self.level = max(backbone.strides)
        self.is_vgg = isinstance(backbone, VGG16)
        if self.is_vgg:
            self.pool5 = keras.layers.MaxPooling2D(2, strides=2, name="pool5")
            self.fc6 = keras.layers.Dense(self.fc_dim, activation="relu", kernel_initializer=init.msra_fill(),
                                          name="fc6")
            self.fc7 = keras.layers.Dense(self.fc_dim, activation="relu", kernel_initializer=init.msra_fill(),
                                          name="fc7")
        self.fc = keras.layers.Dense(self.num_classes, kernel_initializer=init.normal(0.01), dtype="float32",
                                     name="fc8" if self.is_vgg else "fc")

    def _dropout(self, x, seed, index):
        if self.dropout <= 0:
            return x
        if seed is None:
            return keras.random.dropout(x, self.dropout)
        key = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int32), index)
        keep = tf.random.stateless_uniform(tf.shape(x), key, dtype=x.dtype) >= self.dropout
        return tf.where(keep, x / (1.0 - self.dropout), tf.zeros_like(x))

    def call(self, images, training=False, seed=None):
        x = self.backbone(images, training=training)[self.level]
        if self.is_vgg:
            x = self.pool5(x)
            x = keras.ops.reshape(x, (keras.ops.shape(x)[0], -1))
            x = self.fc6(x)
            x = self._dropout(x, seed, 6) if training else x
            x = self.fc7(x)
            x = self._dropout(x, seed, 7) if training else x
        else:
            x = keras.ops.mean(x, axis=(1, 2))
        return keras.ops.cast(self.fc(x), "float32")

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "fc_dim": self.fc_dim,
                "dropout": self.dropout, "backbone": keras.saving.serialize_keras_object(self.backbone)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


@gin.configurable(denylist=["num_classes"])
def build_classifier(num_classes: int, fc_dim: int = 4096, dropout: float = 0.5) -> ImageClassifier:
    """The gin-configured classifier: `build_backbone()` (its own gin bindings) + the head.

    Args:
      num_classes: classes of the training source.
      fc_dim: VGG-16's fc6 / fc7 width.
      dropout: VGG-16's dropout after fc6 / fc7.
    """
    validate.integer("build_classifier.num_classes", num_classes, minimum=1)
    validate.integer("build_classifier.fc_dim", fc_dim, minimum=1)
    validate.number("build_classifier.dropout", dropout, minimum=0, maximum=1, exclusive_maximum=True)
    return ImageClassifier(num_classes, build_backbone(name="backbone"), fc_dim=fc_dim, dropout=dropout,
                           name="classifier")
