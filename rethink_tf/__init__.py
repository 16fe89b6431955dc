"""rethink_tf: Mask R-CNN from random initialization, after "Rethinking ImageNet Pre-training".

`rethink_tf.Detector` (and `Detections`) are the Python inference API (`rethink_tf.api`); they are
imported on first use so that `import rethink_tf` stays light (no TensorFlow).
"""

__version__ = "0.1.0"

_API_NAMES = ("Detector", "Detections")


def __getattr__(name):
    if name in _API_NAMES:
        from rethink_tf import api
        return getattr(api, name)
    raise AttributeError(f"module 'rethink_tf' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API_NAMES))
