"""The weight gradient of the box head's 3x3 convolutions, oneDNN's kernel against the same sum as matmuls.

    python benchmarks/conv_weight_grad.py [--rois=1024] [--rounds=5]

The paper's 4conv1fc box head runs four 3x3x256 convolutions on the 7x7 RoI features of 512 RoIs per
image; their weight gradients (Conv2DBackpropFilter) are the largest single cost of a bfloat16 training
step (`benchmarks/profile_step.py --dtype_policy=mixed_bfloat16`). oneDNN's bfloat16 weight-gradient
kernel on AVX512_BF16 (`jit_bf16`) is slower than its forward convolution (`brg_conv_fwd`).

The same gradient is nine matmuls: dW[i, j] = sum over RoIs and positions of x_pad[n, h + i, w + j, :]^T
dy[n, h, w, :], one per kernel tap, on shifted slices of the zero-padded input. This script times, in
float32 and bfloat16, for x and dy of shape [--rois, 7, 7, 256]:
  forward      the convolution itself (the reference rate),
  native       tf.nn.conv2d_backprop_filter (what autodiff runs),
  shifted      the nine matmuls with transpose_a on the shifted slices,
and prints, per form, the best of 5 calls in each of --rounds interleaved rounds, the best overall, its
GFLOP/s (2 x RoIs x 49 x 256 x 256 x 9 FLOPs), and the largest difference from `native`.
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

CHANNELS, SIDE, KERNEL = 256, 7, 3


def shifted_matmuls(x, dy):
    """Weight gradient [3, 3, C, C] of a stride-1 'same' 3x3 convolution as nine matmuls."""
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    grad = tf.reshape(dy, [-1, CHANNELS])
    taps = [tf.matmul(tf.reshape(padded[:, i:i + SIDE, j:j + SIDE, :], [-1, CHANNELS]), grad, transpose_a=True)
            for i in range(KERNEL) for j in range(KERNEL)]
    return tf.reshape(tf.stack(taps), [KERNEL, KERNEL, CHANNELS, CHANNELS])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rois", type=int, default=1024, help="RoIs (2 images x 512 at the paper's sampling)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    flop = 2 * args.rois * SIDE * SIDE * CHANNELS * CHANNELS * KERNEL * KERNEL
    shape = [args.rois, SIDE, SIDE, CHANNELS]
    for dtype in (tf.float32, tf.bfloat16):
        x = tf.cast(tf.random.stateless_normal(shape, seed=[1, 2]), dtype)
        dy = tf.cast(tf.random.stateless_normal(shape, seed=[3, 4]), dtype)
        kernel = tf.cast(tf.random.stateless_normal([KERNEL, KERNEL, CHANNELS, CHANNELS], seed=[5, 6]), dtype)
        forms = {
            "forward": (tf.function(lambda a, k: tf.nn.conv2d(a, k, 1, "SAME")), (x, kernel)),
            "native": (tf.function(lambda a, g: tf.compat.v1.nn.conv2d_backprop_filter(
                a, [KERNEL, KERNEL, CHANNELS, CHANNELS], g, [1, 1, 1, 1], "SAME")), (x, dy)),
            "shifted": (tf.function(shifted_matmuls), (x, dy)),
        }
        native = tf.cast(forms["native"][0](x, dy), tf.float32)
        best = {name: [] for name in forms}
        for _ in range(args.rounds):
            for name, (fn, inputs) in forms.items():
                fn(*inputs).numpy()
                calls = []
                for _ in range(5):
                    start = time.perf_counter()
                    fn(*inputs).numpy()
                    calls.append(time.perf_counter() - start)
                best[name].append(min(calls))
        for name, (fn, inputs) in forms.items():
            diff = "" if name == "forward" else (
                f", max |diff| from native {float(tf.reduce_max(tf.abs(tf.cast(fn(*inputs), tf.float32) - native))):.3g}"
                f" (max |native| {float(tf.reduce_max(tf.abs(native))):.3g})")
            top = min(best[name])
            print(f"{dtype.name:8s} {name:8s} rounds {[round(t * 1000) for t in best[name]]} ms; best "
                  f"{top * 1000:.0f} ms, {flop / top / 1e9:.0f} GFLOP/s{diff}", flush=True)


if __name__ == "__main__":
    main()
