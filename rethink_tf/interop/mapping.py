"""WeightMapper: assigns named source tensors to model variables and reports what happened.

Every assignment names its source tensor; a missing tensor or a shape that does not fit raises
`WeightImportError` naming the source tensor, its shape, and the target variable. Layout changes
(e.g. a PyTorch / Caffe2 conv kernel [O, I/g, kh, kw] -> Keras [kh, kw, I/g, O]) are listed as
"reshaped"; source tensors the model has no place for (classifier, BN counters, momenta) as "unused";
variables given a value not read from the file (e.g. the zero mean / unit variance of an AffineChannel
imported as a frozen BatchNorm) as "derived".
"""
import dataclasses

import keras
import numpy as np

from rethink_tf.utils.validate import InputError


class WeightImportError(InputError):
    """A source tensor is missing or does not fit its target variable (a ValueError: bad input file)."""


@dataclasses.dataclass
class ImportReport:
    source: str
    matched: list = dataclasses.field(default_factory=list)    # (source key, variable path)
    reshaped: list = dataclasses.field(default_factory=list)   # (source key, source shape, variable shape)
    derived: list = dataclasses.field(default_factory=list)    # (variable path, how)
    unused: list = dataclasses.field(default_factory=list)     # source keys not read
    missing: list = dataclasses.field(default_factory=list)    # model variables given no value

    def summary(self):
        return (f"{self.source}: matched {len(self.matched)}, reshaped {len(self.reshaped)}, "
                f"derived {len(self.derived)}, unused in source {len(self.unused)}, "
                f"model variables without a value {len(self.missing)}")

    def to_json(self):
        return dataclasses.asdict(self)


def conv_kernel_from_oihw(w):
    """PyTorch / Caffe2 conv weight [O, I/g, kh, kw] -> Keras kernel [kh, kw, I/g, O]."""
    return np.transpose(w, (2, 3, 1, 0))


class WeightMapper:
    """Copies `tensors` {name: numpy array} into variables; see the module docstring.

    Args:
      tensors: the source's tensors by name.
      source: a short description for messages (e.g. "torchvision file r50.pth").
    """

    def __init__(self, tensors, source):
        self.tensors = {k: np.asarray(v) for k, v in tensors.items()}
        self.report = ImportReport(source=source)
        self._used = set()
        self._assigned = set()

    def has(self, key):
        return key in self.tensors

    def assign(self, variable, key, transform=None, offset=None):
        """variable <- transform(tensors[key]) (+ offset). Raises WeightImportError if missing or misfit."""
        if key not in self.tensors:
            raise WeightImportError(f"{self.report.source}: no tensor {key!r} for variable {variable.path} "
                                    f"{tuple(variable.shape)}. Is the file for another architecture?")
        raw = self.tensors[key]
        value = transform(raw) if transform is not None else raw
        if tuple(value.shape) != tuple(variable.shape):
            layout = f" (after layout change: {tuple(value.shape)})" if transform is not None else ""
            raise WeightImportError(
                f"{self.report.source}: tensor {key!r} of shape {tuple(raw.shape)}{layout} does not fit "
                f"variable {variable.path} of shape {tuple(variable.shape)}. Is the file for another "
                "depth or width?")
        if offset is not None:
            value = value + offset
        self._set(variable, value)
        self._used.add(key)
        self.report.matched.append((key, variable.path))
        if transform is not None and tuple(raw.shape) != tuple(value.shape):
            self.report.reshaped.append((key, tuple(raw.shape), tuple(value.shape)))

    def derive(self, variable, value, how):
        """variable <- value, a value not read from the source (recorded as derived)."""
        self._set(variable, np.broadcast_to(np.asarray(value, np.float32), tuple(variable.shape)))
        self.report.derived.append((variable.path, how))

    def _set(self, variable, value):
        if id(variable) in self._assigned:
            raise WeightImportError(f"{self.report.source}: variable {variable.path} assigned twice.")
        variable.assign(np.asarray(value).astype(variable.dtype))
        self._assigned.add(id(variable))

    def finish(self, layer):
        """Completes the report for `layer`'s variables; raises if any has no value."""
        self.report.unused = sorted(k for k in self.tensors if k not in self._used)
        self.report.missing = [v.path for v in layer.weights if id(v) not in self._assigned]
        if self.report.missing:
            raise WeightImportError(f"{self.report.source}: {len(self.report.missing)} model variables got "
                                    f"no value, first {self.report.missing[0]} ({self.report.summary()}).")
        return self.report


def assign_conv(mapper, conv, weight_key, bias_key=None, layout="oihw"):
    """A keras Conv2D <- weight (layout "oihw": PyTorch / Caffe2; "hwio": Keras) and optional bias."""
    mapper.assign(conv.kernel, weight_key, conv_kernel_from_oihw if layout == "oihw" else None)
    if conv.use_bias:
        if bias_key is None:
            raise WeightImportError(f"{mapper.report.source}: {conv.path} has a bias but the source conv "
                                    f"{weight_key!r} has none (build_backbone.conv_bias?).")
        mapper.assign(conv.bias, bias_key)
    elif bias_key is not None:
        raise WeightImportError(f"{mapper.report.source}: source conv bias {bias_key!r} has no place in "
                                f"{conv.path} (set build_backbone.conv_bias = True).")


def assign_norm(mapper, norm, scale_key, shift_key, mean_key=None, var_key=None, source_epsilon=None):
    """A norm layer <- a source norm: GroupNorm (scale, shift), BatchNorm (+ mean, var), or AffineChannel.

    BatchNorm / AffineChannel go into a FrozenBatchNorm or BatchNormalization layer. A source epsilon
    other than the layer's is folded into the variance (var + source_eps - eps: same output). An
    AffineChannel (no statistics) gets mean 0 and variance 1 - eps, i.e. y = x * scale + shift.
    """
    kind = "GroupNorm" if isinstance(norm, keras.layers.GroupNormalization) else "BatchNorm"
    has_stats = mean_key is not None
    if kind == "GroupNorm" and has_stats:
        raise WeightImportError(f"{mapper.report.source}: {mean_key!r} is a BatchNorm statistic but "
                                f"{norm.path} is a GroupNorm (import BatchNorm weights with norm frozen_bn).")
    if not hasattr(norm, "gamma"):
        raise WeightImportError(f"{mapper.report.source}: source norm {scale_key!r} has no place: "
                                f"{norm.path} is not a normalization layer (norm='none'?).")
    mapper.assign(norm.gamma, scale_key)
    mapper.assign(norm.beta, shift_key)
    if kind == "GroupNorm":
        return
    if has_stats:
        mapper.assign(norm.moving_mean, mean_key)
        offset = None
        if source_epsilon is not None and source_epsilon != norm.epsilon:
            offset = np.float32(source_epsilon - norm.epsilon)
        mapper.assign(norm.moving_variance, var_key, offset=offset)
    else:
        mapper.derive(norm.moving_mean, 0.0, "AffineChannel: mean 0")
        mapper.derive(norm.moving_variance, 1.0 - norm.epsilon, "AffineChannel: variance 1 - eps")
