"""`RoIPooler`: multi-level RoIAlign with its own settings, one per RoI branch.

The box stage pools 7x7 and the mask branch 14x14; each branch owns a pooler (output size, sampling
ratio, levels, canonical size / level), so no branch borrows another's settings. Level assignment is
FPN's (Detectron's defaults): level = floor(canonical_level + log2(sqrt(box area) / canonical_size)),
clipped to [min_level, max_level] (rethink_tf.ops.roi_align).
"""
import gin
import keras
from keras import ops

from rethink_tf.ops import roi_align
from rethink_tf.utils import validate


@keras.saving.register_keras_serializable(package="rethink_tf")
class RoIPooler(keras.layers.Layer):
    """{level: features [B, H_l, W_l, C]} and boxes [B, R, 4] canvas pixels -> float32 [B, R, S, S, C].

    The float32 island of the RoI heads: features are cast to float32 (the bilinear weights are
    float32) whatever the compute dtype, and no gradient flows into the boxes.

    Args:
      output_size: S, the pooled side (7 for boxes, 14 for masks).
      sampling_ratio: samples per bin and axis (2; Detectron's ROI_XFORM_SAMPLING_RATIO).
      min_level, max_level: pyramid levels boxes are assigned to (2, 5; 4, 4 for VGG-16).
      canonical_size, canonical_level: a canonical_size^2 box maps to canonical_level (224, 4).
      level_mapping: "detectron" (eps inside the log) or "torchvision" (MultiScaleRoIAlign's eps 1e-6
        after it) (rethink_tf.ops.roi_align.assign_levels). Sampling (aligned=False, 2 samples per
        bin axis, 0 outside [-1, H]) is the same in both.
    """

    def __init__(self, output_size=7, sampling_ratio=2, min_level=2, max_level=5, canonical_size=224.0,
                 canonical_level=4, level_mapping="detectron", **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if min_level > max_level:
            raise ValueError(f"RoIPooler: min_level {min_level} > max_level {max_level}")
        self.output_size, self.sampling_ratio = int(output_size), int(sampling_ratio)
        self.min_level, self.max_level = int(min_level), int(max_level)
        self.canonical_size, self.canonical_level = float(canonical_size), int(canonical_level)
        if level_mapping not in roi_align.LEVEL_MAPPINGS:
            raise ValueError(f"RoIPooler: level_mapping {level_mapping!r} is not one of {roi_align.LEVEL_MAPPINGS}")
        self.level_mapping = level_mapping
        self.built = True  # no variables: Keras must not trace a call to build it

    @property
    def levels(self):
        return list(range(self.min_level, self.max_level + 1))

    def call(self, features, boxes):
        features = {l: ops.cast(f, "float32") for l, f in features.items() if self.min_level <= l <= self.max_level}
        return roi_align.multilevel_roi_align(
            features, ops.stop_gradient(ops.cast(boxes, "float32")), self.output_size,
            sampling_ratio=self.sampling_ratio, min_level=self.min_level, max_level=self.max_level,
            canonical_size=self.canonical_size, canonical_level=self.canonical_level,
            level_mapping=self.level_mapping)

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size,
                "sampling_ratio": self.sampling_ratio, "min_level": self.min_level,
                "max_level": self.max_level, "canonical_size": self.canonical_size,
                "canonical_level": self.canonical_level, "level_mapping": self.level_mapping}


def check_roi_pooler_arguments(args):
    validate.integer("roi_pooler.sampling_ratio", args["sampling_ratio"], minimum=1)
    if args["level_mapping"] not in roi_align.LEVEL_MAPPINGS:
        validate.fail("roi_pooler.level_mapping", args["level_mapping"], f"one of {roi_align.LEVEL_MAPPINGS}")


@gin.configurable
def roi_pooler(sampling_ratio=2, level_mapping="detectron"):
    """RoIPooler settings shared by every box stage and branch -> RoIPooler keyword arguments (the
    model adds its levels).

    Args (gin): sampling_ratio: samples per bin and axis (2: Detectron and torchvision alike);
      level_mapping: "detectron" or "torchvision" (rethink_tf.ops.roi_align.assign_levels).
    """
    check_roi_pooler_arguments(locals())
    return dict(sampling_ratio=sampling_ratio, level_mapping=level_mapping)


class PooledBranch(keras.layers.Layer):
    """Base of the RoI branches (mask, keypoint): `self.pooler` (a RoIPooler) feeds `self.head`."""

    def build_networks(self, channels, batch_size=1, dtype="float32"):
        """Creates the head's variables by running it on zeros of the pooled shape."""
        size = self.pooler.output_size
        self.head(ops.zeros((batch_size, 1, size, size, channels), dtype), training=False)

    def logits(self, features, boxes, training=None):
        """The head's output float32 [B, R, S, S, C] (mask: C = K classes; keypoint: C = K keypoints)
        for boxes [B, R, 4] canvas pixels; the head runs in the compute dtype."""
        pooled = self.pooler(features, boxes)
        return ops.cast(self.head(ops.cast(pooled, self.compute_dtype), training=training), "float32")
