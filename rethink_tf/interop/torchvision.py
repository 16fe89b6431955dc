"""torchvision ImageNet classifiers (ResNet-50/101/152, ResNeXt-101 32x8d, VGG-16) -> rethink_tf bodies.

torchvision names: `conv1`, `bn1` (stem); `layer{1..4}.{block}.conv{1,2,3}` / `bn{1,2,3}` and
`downsample.0` (conv) / `downsample.1` (BN) for res2..res5; VGG `features.{index}` (the convs of
torchvision's `features` Sequential, pool5 and the classifier unused). BatchNorm eps 1e-5.
`read_state_dict` needs torch (the `interop` extra); the mapping itself works on numpy arrays.
"""
import numpy as np

# Indices of the 13 convs in torchvision's vgg16().features, by stage.
VGG16_FEATURE_INDICES = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))


class TorchvisionNames:
    layout = "oihw"
    epsilon = 1e-5

    def __init__(self, prefix=""):
        self.prefix = prefix

    def conv(self, position):
        return {"weight": self._base(position, "conv") + ".weight"}

    def norm(self, position):
        base = self._base(position, "bn")
        return {"scale": base + ".weight", "shift": base + ".bias", "mean": base + ".running_mean",
                "var": base + ".running_var"}

    def _base(self, position, kind):
        if position == ("stem",):
            return f"{self.prefix}{kind}1"
        s, j, key = position
        block = f"{self.prefix}layer{s + 1}.{j}"
        if key == "shortcut":
            return f"{block}.downsample.{0 if kind == 'conv' else 1}"
        return f"{block}.{kind}{'abc'.index(key) + 1}"

    def vgg_conv(self, stage, index):
        i = VGG16_FEATURE_INDICES[stage][index]
        return {"weight": f"{self.prefix}features.{i}.weight", "bias": f"{self.prefix}features.{i}.bias"}


def import_torch():
    """Imports torch (the `interop` extra) in a process that may already hold TensorFlow.

    torch's optional GPU compiler `triton` crashes the process (segfault) when its CUDA library loads
    after TensorFlow's; CPU inference never needs it, so it is hidden unless already imported.
    """
    import sys
    sys.modules.setdefault("triton", None)
    try:
        import torch
    except ImportError as err:
        raise ImportError("Reading a torchvision .pth file needs torch and torchvision: install the "
                          "`interop` extra (pip install -e '.[interop]').") from err
    return torch


def read_state_dict(path):
    """A torchvision `.pth` state dict -> {name: float32 numpy array}. Needs torch installed."""
    torch = import_torch()
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}


def state_dict_to_numpy(state_dict):
    """{name: torch tensor} -> {name: numpy array} (tests, in-memory models)."""
    return {k: np.asarray(v.detach().cpu().numpy()) for k, v in state_dict.items()}
