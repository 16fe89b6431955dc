"""GroupNorm's fused TF path (norm.group_norm) against numpy and Keras's own GroupNormalization."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.modeling.norm import GroupNorm

EPS = 1e-5
# (input shape, requested groups): narrow channels (gcd -> 8 groups), the real 32 x 256, N > 1.
SHAPES = [((2, 5, 7, 8), 32), ((3, 6, 6, 256), 32), ((1, 9, 4, 64), 32), ((4, 3, 3, 48), 6)]


def _inputs(shape, seed=0):
    """x with a non-zero mean (3) and std 2, random gamma/beta, and an upstream gradient."""
    rng = np.random.default_rng(seed)
    c = shape[-1]
    return (rng.normal(3.0, 2.0, shape).astype("float32"), rng.uniform(0.5, 1.5, c).astype("float32"),
            rng.normal(0.0, 1.0, c).astype("float32"), rng.normal(0.0, 1.0, shape).astype("float32"))


def _numpy_group_norm(x, gamma, beta, groups):
    n, h, w, c = x.shape
    xg = x.astype("float64").reshape(n, h, w, groups, c // groups)
    mean = xg.mean(axis=(1, 2, 4), keepdims=True)
    var = xg.var(axis=(1, 2, 4), keepdims=True)
    return ((xg - mean) / np.sqrt(var + EPS)).reshape(x.shape) * gamma + beta


def _layers(shape, groups, gamma, beta, **kwargs):
    """(ours, Keras reference) built for `shape` with the same gamma/beta."""
    ours = GroupNorm(groups=groups, epsilon=EPS, **kwargs)
    ref = keras.layers.GroupNormalization(groups=math.gcd(groups, shape[-1]), epsilon=EPS, **kwargs)
    for layer in (ours, ref):
        layer.build(shape)
        if layer.scale:
            layer.gamma.assign(gamma)
        if layer.center:
            layer.beta.assign(beta)
    return ours, ref


def _forward_and_grads(layer, x, dy, mode="graph"):
    """y, dx and the layer's variable gradients: eagerly or in a tf.function (graph or XLA)."""

    def run(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        return [y] + tape.gradient(y, [x] + layer.trainable_variables, output_gradients=dy)

    if mode != "eager":
        run = tf.function(run, jit_compile=(mode == "xla"))
    return [t.numpy().astype("float64") for t in run(tf.constant(x), tf.constant(dy))]


def _assert_close(actual, expected, rtol):
    """Max abs error relative to the reference's largest magnitude."""
    scale = max(np.max(np.abs(expected)), 1e-6)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("shape,groups", SHAPES)
def test_forward_and_gradients_match_keras_and_numpy(shape, groups):
    x, gamma, beta, dy = _inputs(shape)
    ours, ref = _layers(shape, groups, gamma, beta)
    assert [v.path for v in ours.weights] == [v.path.replace(ref.name, ours.name) for v in ref.weights]
    got = _forward_and_grads(ours, x, dy)
    want = _forward_and_grads(ref, x, dy)  # autodiff of Keras's implementation
    _assert_close(got[0], _numpy_group_norm(x, gamma, beta, math.gcd(groups, shape[-1])), 1e-5)
    _assert_close(got[0], want[0], 1e-5)
    for g, w in zip(got[1:], want[1:]):  # dx, dgamma, dbeta
        _assert_close(g, w, 1e-4)


@pytest.mark.parametrize("center,scale", [(False, True), (True, False), (False, False)])
def test_center_scale_flags(center, scale):
    shape = (2, 4, 5, 32)
    x, gamma, beta, dy = _inputs(shape, seed=1)
    ours, ref = _layers(shape, 4, gamma, beta, center=center, scale=scale)
    assert len(ours.trainable_variables) == int(center) + int(scale)
    for g, w in zip(_forward_and_grads(ours, x, dy), _forward_and_grads(ref, x, dy)):
        _assert_close(g, w, 1e-4)


def test_numeric_gradient():
    from rethink_tf.modeling.norm import group_norm

    x, gamma, beta, _ = _inputs((2, 3, 3, 4), seed=2)
    theoretical, numeric = tf.test.compute_gradient(
        lambda x, gamma, beta: group_norm(x, gamma, beta, 2, EPS), [x, gamma, beta], delta=1e-2)
    for t, n in zip(theoretical, numeric):
        np.testing.assert_allclose(t, n, atol=5e-3)


@pytest.mark.parametrize("mode", ["eager", "xla"])
def test_eager_and_xla_match_keras(mode):
    shape = (3, 6, 5, 64)
    x, gamma, beta, dy = _inputs(shape, seed=3)
    ours, ref = _layers(shape, 32, gamma, beta)
    for g, w in zip(_forward_and_grads(ours, x, dy, mode), _forward_and_grads(ref, x, dy)):
        _assert_close(g, w, 1e-4)


def test_functional_model_and_dynamic_shapes():
    shape = (3, 6, 5, 64)
    x, gamma, beta, _ = _inputs(shape, seed=3)
    ours, ref = _layers(shape, 32, gamma, beta)
    want = ref(x).numpy()
    inputs = keras.Input((None, None, 64))
    _assert_close(keras.Model(inputs, ours(inputs))(x).numpy(), want, 1e-5)

    # Unknown N, H, W at trace time (the RoI heads' N varies per step in graph mode), and N = 0.
    spec = tf.TensorSpec([None, None, None, 64])
    dynamic = tf.function(lambda x: ours(x), input_signature=[spec])
    _assert_close(dynamic(x).numpy(), want, 1e-5)
    empty = tf.zeros([0, 6, 5, 64])
    with tf.GradientTape() as tape:
        tape.watch(empty)
        y = dynamic(empty)
    dx, dgamma = tape.gradient(y, [empty, ours.gamma.value])
    assert y.shape == (0, 6, 5, 64) and dx.shape == (0, 6, 5, 64)
    np.testing.assert_array_equal(dgamma.numpy(), 0)


def test_mixed_bfloat16():
    shape = (2, 6, 6, 64)
    x, gamma, beta, dy = _inputs(shape, seed=4)
    ours = GroupNorm(groups=32, epsilon=EPS, dtype="mixed_bfloat16")
    ours.build(shape)
    ours.gamma.assign(gamma)
    ours.beta.assign(beta)
    assert all(v.dtype == "float32" for v in ours.weights)
    _, ref = _layers(shape, 32, gamma, beta)
    x16, dy16 = tf.cast(x, tf.bfloat16), tf.cast(dy, tf.bfloat16)

    @tf.function
    def run(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = ours(x)
        return [y] + tape.gradient(y, [x] + ours.trainable_variables, output_gradients=dy)

    got = run(x16, dy16)
    assert got[0].dtype == tf.bfloat16 and got[1].dtype == tf.bfloat16 and got[2].dtype == tf.float32
    # float32 reference on the bf16-rounded inputs.
    want = _forward_and_grads(ref, tf.cast(x16, tf.float32).numpy(), tf.cast(dy16, tf.float32).numpy())
    for g, w in zip(got, want):
        _assert_close(tf.cast(g, tf.float32).numpy(), w, 1e-2)


def test_inside_distribution_strategy_replica():
    shape = (2, 4, 4, 32)
    x, gamma, beta, dy = _inputs(shape, seed=5)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        ours, ref = _layers(shape, 8, gamma, beta)

    @tf.function
    def step(x, dy):
        def replica_fn(x, dy):
            with tf.GradientTape() as tape:
                y = ours(x)
            return [y] + tape.gradient(y, ours.trainable_variables, output_gradients=dy)
        return strategy.run(replica_fn, (x, dy))

    got = step(tf.constant(x), tf.constant(dy))
    want = _forward_and_grads(ref, x, dy)
    for g, w in zip(got, [want[0]] + want[2:]):
        _assert_close(g.numpy(), w, 1e-4)
