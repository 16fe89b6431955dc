"""The weight gradient of the box head's 3x3 convolutions, oneDNN's kernel against the same sum as matmuls.

    python benchmarks/conv_weight_grad.py [--rois=1024] [--rounds=5]
    python benchmarks/conv_weight_grad.py --model_shapes [--rounds=3]

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

--model_shapes times oneDNN's three kernels of a convolution's training step (forward, data gradient,
weight gradient) at the shapes of R50-FPN Mask R-CNN's convolutions in a 512x512, batch-2 step
(MODEL_SHAPES), in both dtypes, and prints each one's GFLOP/s and the weight gradient's rate as a
fraction of the forward's. A bfloat16 step whose weight gradients run at half the forward's rate
cannot reach the forward's rate: a third of a training step's convolution FLOPs are weight gradients.
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

CHANNELS, SIDE, KERNEL = 256, 7, 3

# (where in the model, input [N, H, W, C_in], C_out, kernel side) at 512x512, batch 2.
MODEL_SHAPES = (
    ("res2 3x3", (2, 128, 128, 64), 64, 3),
    ("res2 1x1 expand", (2, 128, 128, 64), 256, 1),
    ("res3 3x3", (2, 64, 64, 128), 128, 3),
    ("res4 3x3", (2, 32, 32, 256), 256, 3),
    ("res5 3x3", (2, 16, 16, 512), 512, 3),
    ("FPN output / RPN conv, P2", (2, 128, 128, 256), 256, 3),
    ("FPN output / RPN conv, P3", (2, 64, 64, 256), 256, 3),
    ("mask head, 256 RoIs", (256, 14, 14, 256), 256, 3),
    ("box head 4conv, 1024 RoIs", (1024, 7, 7, 256), 256, 3),
)


def shifted_matmuls(x, dy):
    """Weight gradient [3, 3, C, C] of a stride-1 'same' 3x3 convolution as nine matmuls."""
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    grad = tf.reshape(dy, [-1, CHANNELS])
    taps = [tf.matmul(tf.reshape(padded[:, i:i + SIDE, j:j + SIDE, :], [-1, CHANNELS]), grad, transpose_a=True)
            for i in range(KERNEL) for j in range(KERNEL)]
    return tf.reshape(tf.stack(taps), [KERNEL, KERNEL, CHANNELS, CHANNELS])


def best_time(fn, inputs, rounds):
    """Best wall time (s) of fn(*inputs) over `rounds` x 5 calls, after a warm-up call."""
    fn(*inputs).numpy()
    best = float("inf")
    for _ in range(rounds * 5):
        start = time.perf_counter()
        fn(*inputs).numpy()
        best = min(best, time.perf_counter() - start)
    return best


def model_shapes(rounds):
    """Prints forward / data-gradient / weight-gradient GFLOP/s at MODEL_SHAPES, float32 and bfloat16."""
    print(f"{'convolution':28s} {'input':20s} {'C_out':>5s} {'k':>2s} {'dtype':8s} {'GFLOP':>6s} "
          f"{'forward':>8s} {'dgrad':>8s} {'wgrad':>8s} {'wgrad/fwd':>9s}  (GFLOP/s)")
    for name, shape, c_out, k in MODEL_SHAPES:
        flop = 2 * shape[0] * shape[1] * shape[2] * shape[3] * c_out * k * k
        for dtype in (tf.float32, tf.bfloat16):
            x = tf.cast(tf.random.stateless_normal(shape, seed=[1, 2]), dtype)
            dy = tf.cast(tf.random.stateless_normal(shape[:3] + (c_out,), seed=[3, 4]), dtype)
            kernel = tf.cast(tf.random.stateless_normal([k, k, shape[3], c_out], seed=[5, 6]) * 0.05, dtype)
            forward = best_time(tf.function(lambda a, w: tf.nn.conv2d(a, w, 1, "SAME")), (x, kernel), rounds)
            dgrad = best_time(tf.function(lambda w, g: tf.compat.v1.nn.conv2d_backprop_input(
                list(shape), w, g, [1, 1, 1, 1], "SAME")), (kernel, dy), rounds)
            wgrad = best_time(tf.function(lambda a, g: tf.compat.v1.nn.conv2d_backprop_filter(
                a, [k, k, shape[3], c_out], g, [1, 1, 1, 1], "SAME")), (x, dy), rounds)
            rates = [flop / t / 1e9 for t in (forward, dgrad, wgrad)]
            print(f"{name:28s} {str(list(shape)):20s} {c_out:5d} {k:2d} {dtype.name:8s} {flop / 1e9:6.1f} "
                  f"{rates[0]:8.0f} {rates[1]:8.0f} {rates[2]:8.0f} {rates[2] / rates[0]:9.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rois", type=int, default=1024, help="RoIs (2 images x 512 at the paper's sampling)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model_shapes", action="store_true",
                        help="time forward / data / weight gradient at the model's shapes (module docstring)")
    args = parser.parse_args()
    if args.model_shapes:
        return model_shapes(args.rounds)
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
                best[name].append(best_time(fn, inputs, 1))
        for name, (fn, inputs) in forms.items():
            diff = "" if name == "forward" else (
                f", max |diff| from native {float(tf.reduce_max(tf.abs(tf.cast(fn(*inputs), tf.float32) - native))):.3g}"
                f" (max |native| {float(tf.reduce_max(tf.abs(native))):.3g})")
            top = min(best[name])
            print(f"{dtype.name:8s} {name:8s} rounds {[round(t * 1000) for t in best[name]]} ms; best "
                  f"{top * 1000:.0f} ms, {flop / top / 1e9:.0f} GFLOP/s{diff}", flush=True)


if __name__ == "__main__":
    main()
