"""rethink_tf: Mask R-CNN from random initialization, after "Rethinking ImageNet Pre-training"."""

__version__ = "0.1.0"
