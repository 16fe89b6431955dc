"""The two numbers of a roofline for benchmarks/train_step.py: FLOPs of a traced step, and the matmul
ceiling of this CPU measured in the same process.

FLOPs are counted from the traced graph's convolution and matrix-multiply ops (forward and gradient
ops alike), 2 per multiply-add, from their static shapes:
  Conv2D, Conv2DBackpropInput (also Keras's Conv2DTranspose), Conv2DBackpropFilter: 2 * N*Ho*Wo*Co * kh*kw*Ci
  (Ho, Wo, Co: the convolution's output side; for the two gradient ops that is the out_backprop input),
  DepthwiseConv2dNative: 2 * N*Ho*Wo*C*m * kh*kw,
  MatMul / BatchMatMulV2 / BatchMatMulV3: 2 * batch * m * n * k.
Everything else (norms, activations, RoIAlign's gathers, NMS) is left out: it is memory-bound work the
ceiling says nothing about. Only ops the outputs depend on count (`_live_ops`), in the function's graph
and in the function graphs it calls (nested tf.functions such as the Trainer's XLA forward-backward,
while/cond bodies). The graph
must be traced with static shapes (jit_compile=True: the static-shape paths of rethink_tf.ops.tracing);
an op whose shapes are not all known is counted in `unknown`.
"""
import time

import numpy as np
import tensorflow as tf

CONV_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")
MATMUL_OPS = ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "BatchMatMul")


def _dims(tensor):
    shape = tensor.shape
    return None if shape.rank is None or None in shape.as_list() else shape.as_list()


def _const_value(tensor):
    try:
        return tf.get_static_value(tensor)
    except (TypeError, ValueError):
        return None


def _data_format_nhwc(op):
    try:
        return op.get_attr("data_format") in (b"NHWC", "NHWC")
    except ValueError:
        return True


def _conv_flops(op):
    """2 * N*Ho*Wo*Co * kh*kw*Ci of a 2-D convolution op or one of its gradients, or None."""
    if op.type == "Conv2D":
        out, kernel = _dims(op.outputs[0]), _dims(op.inputs[1])
    elif op.type == "Conv2DBackpropInput":  # (input_sizes, filter, out_backprop)
        out, kernel = _dims(op.inputs[2]), _dims(op.inputs[1])
    else:  # Conv2DBackpropFilter: (input, filter_sizes, out_backprop)
        out = _dims(op.inputs[2])
        sizes = _const_value(op.inputs[1])
        source = op.inputs[1]
        if sizes is None and source.op.type in ("Shape", "ShapeN"):  # tf.shape(kernel): its static shape
            sizes = _dims(source.op.inputs[source.value_index if source.op.type == "ShapeN" else 0])
        kernel = None if sizes is None else [int(v) for v in sizes]
    if out is None or kernel is None:
        return None
    if not _data_format_nhwc(op):
        out = [out[0], out[2], out[3], out[1]]
    kh, kw, ci, co = kernel
    return 2 * out[0] * out[1] * out[2] * co * kh * kw * ci


def _matmul_flops(op):
    a, b = _dims(op.inputs[0]), _dims(op.inputs[1])
    if a is None or b is None:
        return None
    transpose_a = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
    transpose_b = op.get_attr("transpose_b" if op.type == "MatMul" else "adj_y")
    m, k = (a[-1], a[-2]) if transpose_a else (a[-2], a[-1])
    n = b[-2] if transpose_b else b[-1]
    batch = int(np.prod(np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])))) if len(a) > 2 or len(b) > 2 else 1
    return 2 * batch * m * n * k


def _depthwise_flops(op):
    out, kernel = _dims(op.outputs[0]), _dims(op.inputs[1])
    if out is None or kernel is None:
        return None
    return 2 * int(np.prod(out)) * kernel[0] * kernel[1]


def _live_ops(graph):
    """Ops `graph`'s outputs depend on (data or control): gradient ops nothing uses (e.g. the gradient
    with respect to the input images) are pruned at run time and must not be counted."""
    live, stack = {}, [t.op for t in graph.outputs] + list(getattr(graph, "control_outputs", []))
    while stack:
        op = stack.pop()
        if op.name in live:
            continue
        live[op.name] = op
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return list(live.values())


def _nested_graphs(graph):
    """Function graphs `graph` calls (while/cond bodies, nested tf.functions), recursively."""
    seen, stack = set(), list(getattr(graph, "_functions", {}).values())
    while stack:
        function = stack.pop()
        nested = getattr(function, "graph", None)
        if nested is None or id(nested) in seen:
            continue
        seen.add(id(nested))
        yield nested
        stack.extend(getattr(nested, "_functions", {}).values())


def count_flops(concrete_function) -> dict:
    """{"flops": int, "by_op": {op type: flops}, "unknown": [op names]} of a traced concrete function:
    the live ops (`_live_ops`) of its graph and of the function graphs it calls."""
    graph = concrete_function.graph
    ops = _live_ops(graph) + [op for nested in _nested_graphs(graph) for op in _live_ops(nested)]
    by_op, unknown = {}, []
    for op in ops:
        if op.type in CONV_OPS:
            flops = _conv_flops(op)
        elif op.type in MATMUL_OPS:
            flops = _matmul_flops(op)
        elif op.type == "DepthwiseConv2dNative":
            flops = _depthwise_flops(op)
        else:
            continue
        if flops is None:
            unknown.append(f"{op.type}:{op.name}")
        else:
            by_op[op.type] = by_op.get(op.type, 0) + int(flops)
    return {"flops": sum(by_op.values()), "by_op": by_op, "unknown": unknown}


def matmul_ceiling(dtype="float32", n=2048, repeats=10) -> float:
    """GFLOP/s of an n x n x n tf.matmul in `dtype` on this CPU (best of `repeats` after a warm-up),
    measured now, in this process: the roof the step's achieved GFLOP/s is compared with."""
    a = tf.random.stateless_normal([n, n], seed=[1, 2], dtype=tf.float32)
    a = tf.cast(a, dtype)
    b = tf.cast(tf.random.stateless_normal([n, n], seed=[3, 4], dtype=tf.float32), dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1], tf.float32)))
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9
