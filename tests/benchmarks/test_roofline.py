"""benchmarks/roofline.py counts a step's FLOPs from its graph: checked against hand arithmetic on a
conv + deconv + dense model whose forward, gradient ops and a nested XLA function are all in the graph."""
import sys
from pathlib import Path

import keras
import pytest
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import roofline  # noqa: E402


def test_flops_of_a_training_step_match_hand_arithmetic():
    conv = keras.layers.Conv2D(8, 3, padding="same")  # 16x16x3 -> 16x16x8
    deconv = keras.layers.Conv2DTranspose(4, 2, strides=2)  # 16x16x8 -> 32x32x4
    dense = keras.layers.Dense(5)  # 2048 -> 5
    images = tf.zeros([2, 16, 16, 3])

    @tf.function(jit_compile=True)
    def forward_backward(x):
        with tf.GradientTape() as tape:
            h = conv(x)
            loss = tf.reduce_sum(dense(tf.reshape(h, [2, -1]))) + tf.reduce_sum(deconv(h))
        # The loss is an output too, as in the Trainer: without it the last layers' forward is dead.
        return loss, tape.gradient(loss, conv.trainable_variables + deconv.trainable_variables
                                   + dense.trainable_variables)

    @tf.function
    def step(x):  # like the Trainer's step: a graph calling the XLA forward-backward
        return forward_backward(x)

    step(images)
    count = roofline.count_flops(step.get_concrete_function(images))
    conv_flops = 2 * (2 * 16 * 16 * 8) * (3 * 3 * 3)    # 2 * outputs * (kh kw ci)
    deconv_flops = 2 * (2 * 16 * 16 * 8) * (2 * 2 * 4)  # each input pixel feeds a 2x2x4 output patch
    dense_flops = 2 * 2 * 2048 * 5
    # conv: forward + kernel gradient (its input gradient, w.r.t. the images, is dead and pruned);
    # deconv and dense: forward + input gradient + kernel gradient.
    assert count["unknown"] == []
    assert count["flops"] == 2 * conv_flops + 3 * deconv_flops + 3 * dense_flops
    assert count["by_op"] == {"Conv2D": conv_flops + deconv_flops,  # deconv's input gradient is a conv
                              "Conv2DBackpropFilter": conv_flops + deconv_flops,
                              "Conv2DBackpropInput": deconv_flops,  # the deconv's forward
                              "MatMul": 3 * dense_flops}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matmul_ceiling_is_a_rate(dtype):
    assert roofline.matmul_ceiling(dtype, n=256, repeats=2) > 0.1  # GFLOP/s
