"""Detectron (Caffe2) ImageNet `.pkl` files -> rethink_tf ResNet bodies.

Blob names as Detectron's ResNet builder (modeling/ResNet.py) creates them: the stem conv `conv1_w`
with `res_conv1_bn_{s,b}` (AffineChannel, BN models) or `conv1_gn_{s,b}` (GroupNorm models); block j
of stage s is prefix `res{s}_{j}` with the bottleneck convs `{prefix}_branch2{a,b,c}_w` and the
projection shortcut `{prefix}_branch1_w`, each conv followed by `_bn_{s,b}` or `_gn_{s,b}`. Conv
weights are [O, I/g, kh, kw]; no conv has a bias. A file may hold the blobs at its top level or under
"blobs" (Detectron's loader accepts both); the classifier (`pred_w`, `pred_b`) and any momentum blobs
are reported unused. AffineChannel (scale, shift) imports as a frozen BatchNorm with mean 0 and
variance 1 - eps.
"""
import pickle


class DetectronNames:
    layout = "oihw"
    epsilon = None

    def __init__(self, norm_suffix):
        self.suffix = norm_suffix  # "_bn" or "_gn"

    def conv(self, position):
        return {"weight": self._base(position) + "_w"}

    def norm(self, position):
        base = self._base(position)
        if position == ("stem",):
            base = "res_conv1_bn" if self.suffix == "_bn" else "conv1_gn"
        else:
            base += self.suffix
        return {"scale": base + "_s", "shift": base + "_b"}

    @staticmethod
    def _base(position):
        if position == ("stem",):
            return "conv1"
        s, j, key = position
        branch = "branch1" if key == "shortcut" else f"branch2{key}"
        return f"res{s + 2}_{j}_{branch}"


def read_pkl(path):
    """A Detectron .pkl -> {blob name: numpy array}."""
    with open(path, "rb") as f:
        try:
            blobs = pickle.load(f, encoding="latin1")
        except (pickle.UnpicklingError, EOFError) as err:
            raise ValueError(f"{path} is not a Detectron .pkl (pickle): {err}") from err
    if isinstance(blobs, dict) and isinstance(blobs.get("blobs"), dict):
        blobs = blobs["blobs"]
    if not isinstance(blobs, dict):
        raise ValueError(f"{path}: expected a dict of blobs, got {type(blobs).__name__}")
    import numpy as np
    return {str(k): np.asarray(v) for k, v in blobs.items() if hasattr(v, "shape")}
