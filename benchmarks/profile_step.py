"""Where the time of a training (or predict) step goes: op time by op type and by model scope.

    python benchmarks/profile_step.py --size=512 --batch=2 [--predict] [--box_head=2fc] [--top=25]

(--xla and --steps of train_step.py are ignored here.)

Builds the same model and batch as benchmarks/train_step.py, runs one warm-up step, then traces
--traced_steps steps with the TensorFlow profiler and sums the host op time of the trace (the CPU
executor's per-op events) by op type and by the first --scope_depth components of the op's name scope.
Prints three tables and the per-step wall time; the trace stays in --logdir for TensorBoard.
Op times are summed over both cores, so they add up to about cores x wall time when the step
keeps both busy.
"""
import collections
import glob
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# Shares the model flags (--size, --batch, --depth, --norm, --box_head, --dtype_policy), the
# batch and the steps.
from train_step import build_steps  # noqa: E402

flags.DEFINE_integer("traced_steps", 2, "Traced steps after the warm-up step.")
flags.DEFINE_bool("predict", False, "Profile the predict step instead of the training step.")
flags.DEFINE_integer("scope_depth", 3, "Name-scope components kept for the per-scope table.")
flags.DEFINE_integer("top", 25, "Rows per table.")
flags.DEFINE_string("logdir", "/tmp/rethink_tf_profile", "Where the trace is written.")


def _op_events(logdir):
    """Yields (op_name, op_type, duration_s) for every executor op event of the newest trace."""
    path = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                # Executor op events are "scope/op_name:OpType"; python and runtime events lack ':'.
                # oneDNN kernels have types like _MklNativeConv2D.
                if ":" not in name or name.startswith("$") or "::" in name:
                    continue
                op_name, op_type = name.rsplit(":", 1)
                if not op_type or not (op_type[0].isupper() or op_type[0] == "_") or " " in op_type:
                    continue
                yield op_name, op_type, event.duration_ps * 1e-12


def _table(title, totals, total, top):
    print(f"\n{title}")
    for key, seconds in sorted(totals.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {seconds:8.3f} s  {100 * seconds / total:5.1f}%  {key}")


def main(_):
    f = flags.FLAGS
    _, batch, train_step, predict_step, _ = build_steps(f, jit_compile=False)

    step = predict_step if f.predict else train_step
    tf.nest.map_structure(lambda t: t.numpy(), step(batch))
    tf.profiler.experimental.start(f.logdir)
    start = time.perf_counter()
    for _ in range(f.traced_steps):
        tf.nest.map_structure(lambda t: t.numpy(), step(batch))
    wall = (time.perf_counter() - start) / f.traced_steps
    tf.profiler.experimental.stop()

    by_type, by_scope, by_op = collections.Counter(), collections.Counter(), collections.Counter()
    for op_name, op_type, seconds in _op_events(f.logdir):
        seconds /= f.traced_steps
        by_type[op_type] += seconds
        parts = [p for p in op_name.split("/") if p]
        by_scope["/".join(parts[:f.scope_depth])] += seconds
        by_op[f"{op_name}:{op_type}"] += seconds
    total = sum(by_type.values())
    print(f"step wall {wall:.2f} s; summed op time {total:.2f} s per step")
    _table("by op type", by_type, total, f.top)
    _table(f"by scope (first {f.scope_depth} components)", by_scope, total, f.top)
    _table("by op", by_op, total, f.top)


if __name__ == "__main__":
    app.run(main)
