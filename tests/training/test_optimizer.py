"""SGD momentum with coupled L2 and Detectron's per-variable rules, against numpy references.

Rules (optimizer module docstring): kernels decayed at LR x1; norm gamma not decayed, x1; biases (conv/dense
bias, norm beta) not decayed, LR x2 (Detectron); detectron2's switches: biases decayed, x1.
"""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import toy_train_script as script
import training_toys as toys
from rethink_tf.training import optimizer as optimizer_lib


class _Tiny(keras.Model):
    """x [B, 3] -> Dense(4) (kernel + bias) -> GroupNorm(2 groups) (gamma + beta) -> sum of squares."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(4, kernel_initializer="glorot_uniform", bias_initializer="ones")
        self.norm = keras.layers.GroupNormalization(groups=2, epsilon=1e-5, gamma_initializer="ones",
                                                    beta_initializer=keras.initializers.Constant(0.3))

    def call(self, x):
        return self.norm(self.dense(x))


def _by_name(model):
    """{"kernel", "bias", "gamma", "beta"} -> variable."""
    return {v.name: v for v in model.trainable_variables}


def _sgd_steps(bias_lr_factor, bias_weight_decay, steps=2):
    """`steps` SGD+momentum steps through parameter_groups + add_coupled_weight_decay; numpy replay."""
    keras.utils.set_random_seed(1)
    model = _Tiny()
    x = tf.constant(np.random.RandomState(0).randn(5, 3), tf.float32)
    target = tf.constant(np.random.RandomState(1).randn(5, 4), tf.float32)
    model(x)
    groups = optimizer_lib.parameter_groups(model, bias_lr_factor=bias_lr_factor,
                                            bias_weight_decay=bias_weight_decay)
    variables = model.trainable_variables
    before = {v.name: np.asarray(v, np.float64) for v in variables}
    lr, wd, mom = 0.1, 0.05, 0.9
    opt = optimizer_lib.build_optimizer(lr, momentum=mom)
    raw_grads = []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum((model(x) - target) ** 2)
        grads = tape.gradient(loss, variables)
        raw_grads.append({v.name: np.asarray(g, np.float64) for v, g in zip(variables, grads)})
        grads = optimizer_lib.add_coupled_weight_decay(grads, variables, groups.decay_mask, wd,
                                                       lr_multipliers=groups.lr_multipliers)
        opt.apply_gradients(zip(grads, variables))
    # The numpy replay writes each rule out by hand (Caffe2 MomentumSGDUpdate: v = m v - lr g; w += v).
    decay = {"kernel": True, "bias": bias_weight_decay, "gamma": False, "beta": False}
    factor = {"kernel": 1.0, "bias": bias_lr_factor, "gamma": 1.0, "beta": bias_lr_factor}
    ref = dict(before)
    velocity = {k: np.zeros_like(w) for k, w in ref.items()}
    for g in raw_grads:
        for k in ref:
            grad = g[k] + (wd * ref[k] if decay[k] else 0.0)
            velocity[k] = mom * velocity[k] - lr * factor[k] * grad
            ref[k] = ref[k] + velocity[k]
    return model, before, ref


@pytest.mark.parametrize("bias_lr_factor,bias_weight_decay", [(2.0, False), (1.0, True)],
                         ids=["detectron", "detectron2"])
def test_per_variable_rules_match_numpy_momentum_sgd(bias_lr_factor, bias_weight_decay):
    model, before, ref = _sgd_steps(bias_lr_factor, bias_weight_decay)
    got = _by_name(model)
    assert sorted(got) == ["beta", "bias", "gamma", "kernel"]
    for k in ref:
        assert np.abs(ref[k] - before[k]).max() > 1e-3, k  # every variable actually moved
        np.testing.assert_allclose(np.asarray(got[k]), ref[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_default_groups_are_detectrons():
    """Defaults: kernel decayed x1, gamma undecayed x1, bias and beta undecayed x2 (BIAS_DOUBLE_LR)."""
    model = _Tiny()
    model(tf.zeros([2, 3]))
    groups = optimizer_lib.parameter_groups(model)
    rules = {v.name: (d, m) for v, d, m in zip(model.trainable_variables, groups.decay_mask, groups.lr_multipliers)}
    assert rules == {"kernel": (True, 1.0), "bias": (False, 2.0), "gamma": (False, 1.0), "beta": (False, 2.0)}


def test_gin_switches_and_bad_factor():
    model = _Tiny()
    model(tf.zeros([2, 3]))
    gin.clear_config()
    try:
        gin.parse_config(["parameter_groups.bias_lr_factor = 1.0", "parameter_groups.bias_weight_decay = True"])
        groups = optimizer_lib.parameter_groups(model)
    finally:
        gin.clear_config()
    rules = {v.name: (d, m) for v, d, m in zip(model.trainable_variables, groups.decay_mask, groups.lr_multipliers)}
    assert rules == {"kernel": (True, 1.0), "bias": (True, 1.0), "gamma": (False, 1.0), "beta": (False, 1.0)}
    with pytest.raises(ValueError, match="parameter_groups.bias_lr_factor"):
        optimizer_lib.parameter_groups(model, bias_lr_factor=0.0)


def test_toy_detector_groups():
    """Every norm variable is undecayed; the dense heads' biases are the only other undecayed ones."""
    model = toys.ToyDetector("gn")
    model(toys.fixed_batch(2), training=True)
    groups = optimizer_lib.parameter_groups(model)
    undecayed = {id(v) for v, d in zip(model.trainable_variables, groups.decay_mask) if not d}
    norm_ids = {id(v) for layer in (model.norm1, model.norm2) for v in layer.trainable_variables}
    head_biases = {id(model.box_head.bias), id(model.cls_head.bias)}
    assert undecayed == norm_ids | head_biases and len(norm_ids) == 4
    doubled = {id(v) for v, m in zip(model.trainable_variables, groups.lr_multipliers) if m == 2.0}
    assert doubled == head_biases | {id(model.norm1.beta), id(model.norm2.beta)}


def test_trainer_step_applies_the_rules(tmp_path):
    """One Trainer step (LR at step 0 = warmup) moves each variable by -lr * factor * (g + decay)."""
    from rethink_tf.training import distribute
    batch = toys.fixed_batch(4)
    ds = tf.data.Dataset.from_tensors(batch).repeat()
    trainer = script.make_trainer(str(tmp_path), distribute.get_strategy("default"), "gn", lambda ctx: ds, 4, 4,
                                  weight_decay=0.01)
    trainer.restore_or_initialize()
    model = trainer.model
    variables = model.trainable_variables
    before = [np.asarray(v, np.float64) for v in variables]
    with tf.GradientTape() as tape:
        loss = tf.add_n(list(model(batch, training=True).values()))
    grads = [np.asarray(g, np.float64) for g in tape.gradient(loss, variables)]
    trainer.train(max_steps=1)
    lr = float(trainer.lr_schedule(0))
    kernels = {id(model.conv1.kernel), id(model.conv2.kernel), id(model.box_head.kernel), id(model.cls_head.kernel)}
    biases = {id(model.box_head.bias), id(model.cls_head.bias), id(model.norm1.beta), id(model.norm2.beta)}
    for v, w0, g in zip(variables, before, grads):
        decay = 0.01 * w0 if id(v) in kernels else 0.0
        factor = 2.0 if id(v) in biases else 1.0
        np.testing.assert_allclose(np.asarray(v), w0 - lr * factor * (g + decay), rtol=1e-4, atol=1e-7,
                                   err_msg=v.path)


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
    out = optimizer_lib.add_coupled_weight_decay([g], [v], [True], 1e-4, scale=0.5, lr_multipliers=[2.0])
    np.testing.assert_allclose(out[0].numpy(), [2.0 * (1.0 + 1e-4 * 0.5 * 2.0)])
