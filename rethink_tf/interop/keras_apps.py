"""keras.applications ResNet50/101/152 and VGG16 -> rethink_tf bodies.

Keras names (layer/weight): stem `conv1_conv`, `conv1_bn`; block j of stage s (s = 2..5) is
`conv{s}_block{j+1}_{1,2,3}_conv/_bn` and the projection `..._0_conv/_0_bn`; every conv has a bias;
BatchNorm eps 1.001e-5. VGG16: `block{s}_conv{c}` (kernel HWIO, bias). These ResNets downsample in
the first 1x1 conv (caffe-style), hence build_backbone.stride_in_1x1 and conv_bias (archs.py).
"""
import warnings

_CONV_INDEX = {"a": 1, "b": 2, "c": 3, "shortcut": 0}
ARCH_CONSTRUCTORS = {"resnet50": "ResNet50", "resnet101": "ResNet101", "resnet152": "ResNet152",
                     "vgg16": "VGG16"}


class KerasAppNames:
    layout = "hwio"

    def __init__(self, epsilon=1.001e-5):
        self.epsilon = epsilon

    def conv(self, position):
        base = self._base(position)
        return {"weight": f"{base}_conv/kernel", "bias": f"{base}_conv/bias"}

    def norm(self, position):
        base = self._base(position) + "_bn/"
        return {"scale": base + "gamma", "shift": base + "beta", "mean": base + "moving_mean",
                "var": base + "moving_variance"}

    @staticmethod
    def _base(position):
        if position == ("stem",):
            return "conv1"
        s, j, key = position
        return f"conv{s + 2}_block{j + 1}_{_CONV_INDEX[key]}"

    @staticmethod
    def vgg_conv(stage, index):
        base = f"block{stage + 1}_conv{index + 1}/"
        return {"weight": base + "kernel", "bias": base + "bias"}


def model_tensors(model):
    """{"layer_name/weight_name": numpy array} of a Keras model."""
    return {f"{layer.name}/{w.name}": w.numpy() for layer in model.layers for w in layer.weights}


def build_application(arch, weights_file=None):
    """The keras.applications model of `arch`, loading `weights_file` if given.

    A weight file with the classifier (include_top=True) is read into the model with the top (VGG16's
    fc1 / fc2 are its fc6 / fc7), one without into the model without. The top model is tried first:
    Keras reads a file with the top into a model without it silently, dropping the top, but refuses
    a file without the top for a model with it.
    """
    import keras
    ctor = getattr(keras.applications, ARCH_CONSTRUCTORS[arch])
    if weights_file is None:
        return ctor(weights=None, include_top=False, input_shape=(None, None, 3))
    try:
        model = ctor(weights=None, include_top=True)
        with warnings.catch_warnings():  # Keras warns of each part it misses before it refuses the file
            warnings.simplefilter("ignore")
            model.load_weights(weights_file)
    except ValueError:
        model = ctor(weights=None, include_top=False, input_shape=(None, None, 3))
        model.load_weights(weights_file)
    return model


def bn_epsilon(model):
    """The BatchNorm epsilon of a keras.applications ResNet (1.001e-5), None for VGG16."""
    for layer in model.layers:
        if hasattr(layer, "moving_variance"):
            return float(layer.epsilon)
    return None
