"""SGD momentum with coupled L2: matches a numpy reference; norm γ/β are not decayed."""

import keras
import numpy as np
import tensorflow as tf

import training_toys as toys
from rethink_tf.training import optimizer as optimizer_lib


def test_norm_variables_are_not_decayed():
    model = toys.ToyDetector("gn")
    model(toys.fixed_batch(2), training=True)
    decayed, not_decayed = optimizer_lib.split_decay_variables(model)
    norm_ids = {id(v) for layer in (model.norm1, model.norm2) for v in layer.trainable_variables}
    assert {id(v) for v in not_decayed} == norm_ids and len(norm_ids) == 4
    assert {id(v) for v in decayed} == {id(v) for v in model.trainable_variables} - norm_ids


def test_coupled_weight_decay_matches_numpy_momentum_sgd():
    """Three steps of Caffe2/Detectron MomentumSGD with L2 in the gradient, LR changing mid-way."""
    w0 = np.array([1.0, -2.0, 0.5], np.float32)
    gamma0 = np.array([1.5], np.float32)
    target = np.array([0.3, 0.1, -0.4], np.float32)
    w, gamma = keras.Variable(w0), keras.Variable(gamma0)
    lrs = [0.1, 0.1, 0.01]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1], [0.1, 0.01])
    opt = optimizer_lib.build_optimizer(schedule, momentum=0.9)
    wd = 0.01
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum((w * gamma - target) ** 2)
        grads = tape.gradient(loss, [w, gamma])
        grads = optimizer_lib.add_coupled_weight_decay(grads, [w, gamma], [True, False], wd)
        opt.apply_gradients(zip(grads, [w, gamma]))

    rw, rg = w0.astype(np.float64), gamma0.astype(np.float64)
    vw, vg = np.zeros_like(rw), np.zeros_like(rg)
    for lr in lrs:
        r = rw * rg - target
        gw = 2 * r * rg + wd * rw          # decay enters the gradient (coupled) ...
        gg = np.array([np.sum(2 * r * rw)])  # ... but not for the norm scale
        vw = 0.9 * vw - lr * gw
        vg = 0.9 * vg - lr * gg
        rw, rg = rw + vw, rg + vg
    np.testing.assert_allclose(np.asarray(w), rw, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gamma), rg, rtol=1e-5)


def test_decay_scale_for_replicas():
    v = keras.Variable(np.array([2.0], np.float32))
    g = tf.constant([1.0])
    out = optimizer_lib.add_coupled_weight_decay([g, None], [v, v], [True, True], 1e-4, scale=0.5)
    np.testing.assert_allclose(out[0].numpy(), [1.0 + 1e-4 * 0.5 * 2.0])
    assert out[1] is None
