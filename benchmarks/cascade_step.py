"""Times Cascade Mask R-CNN against the plain (single-stage) Mask R-CNN of the same size on this machine.

    python benchmarks/cascade_step.py --size=256 --batch=1 --rounds=5 [--depth=50] [--xla]

Both models are built (R50-FPN GN, 4conv1fc, COCO's 80 classes unless flags say otherwise) with the same
random batch (benchmarks/train_step.py's `make_batch`); each round times one train step (forward, loss,
gradients, SGD update) and one predict step of the plain model, then of the cascade, so the load of a
shared machine hits both alike. Prints one JSON line: per-model median train / predict seconds over the
rounds (after one warm-up step each that traces / compiles), every timed step, and the ratios
cascade / plain.
"""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from train_step import NUM_CLASSES, make_batch  # noqa: E402

from rethink_tf.modeling.factory import build_model_from_bindings  # noqa: E402

# --size, --batch, --depth and --xla are train_step.py's flags (imported with its make_batch).
flags.DEFINE_integer("rounds", 5, "Timed rounds (each: one train and one predict step per model).")


def _steps(model, jit_compile):
    optimizer = keras.optimizers.SGD(0.02, momentum=0.9)
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=jit_compile)
    def train_step(b):
        with tf.GradientTape() as tape:
            total = tf.add_n(list(model(b, training=True).values()))
        optimizer.apply_gradients(zip(tape.gradient(total, model.trainable_variables), model.trainable_variables))
        return total

    @tf.function(jit_compile=jit_compile)
    def predict_step(b):
        return model({"images": b["images"], "image_info": b["image_info"]}, training=False)

    return train_step, predict_step


def _time(fn, batch):
    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy(), fn(batch))
    return time.perf_counter() - start


def main(_):
    f = flags.FLAGS
    batch = {k: tf.constant(v) for k, v in make_batch(f.batch, f.size).items()}
    depth = {"build_backbone.depth": f.depth}
    models = {"plain": build_model_from_bindings(NUM_CLASSES, depth),
              "cascade": build_model_from_bindings(NUM_CLASSES, depth, roi_heads="cascade")}
    steps, times = {}, {}
    for name, model in models.items():
        model.build_networks(image_size=64)
        steps[name] = _steps(model, f.xla)
        times[name] = {"train_warmup_s": round(_time(steps[name][0], batch), 1),
                       "predict_warmup_s": round(_time(steps[name][1], batch), 1), "train": [], "predict": []}
    for _ in range(f.rounds):
        for name in models:
            times[name]["train"].append(round(_time(steps[name][0], batch), 3))
            times[name]["predict"].append(round(_time(steps[name][1], batch), 3))
    out = {"canvas": f.size, "batch": f.batch, "depth": f.depth, "xla": f.xla, "rounds": f.rounds}
    for name in models:
        out[name] = {**times[name], "train_step_s": statistics.median(times[name]["train"]),
                     "predict_step_s": statistics.median(times[name]["predict"])}
    for kind in ("train", "predict"):
        out[f"{kind}_ratio_cascade_over_plain"] = round(
            out["cascade"][f"{kind}_step_s"] / out["plain"][f"{kind}_step_s"], 3)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    app.run(main)
