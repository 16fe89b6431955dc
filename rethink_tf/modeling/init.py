"""Weight initializers named after their Caffe2/Detectron originals (rethink_tf/modeling/README.md, "init")."""
import keras


def msra_fill():
    """He normal with fan_out (Caffe2 MSRAFill, detectron2 c2_msra_fill): std = sqrt(2 / fan_out)."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal")


def xavier_fill():
    """Caffe2 XavierFill (detectron2 c2_xavier_fill): uniform(±sqrt(3 / fan_in))."""
    return keras.initializers.VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform")


def normal(std):
    """Zero-mean normal with the given standard deviation (RPN 0.01, predictors 0.01 / 0.001)."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=std)
