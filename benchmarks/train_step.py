"""Times the training step and the predict step of R50-FPN Mask R-CNN (GN, 4conv1fc) on this machine.

    python benchmarks/train_step.py --size=512 --batch=2 [--xla] [--steps=5] [--dtype_policy=mixed_bfloat16]
        [--deterministic]
    python benchmarks/train_step.py --height=800 --width=1344 --batch=1   # a non-square canvas

The canvas is --height x --width (each defaulting to --size); the whole canvas is image content.

The training step is the Trainer's own (`Trainer.on_fixed_batch`): forward, backward, coupled L2 weight
decay with Detectron's per-variable rules (no decay on norms and biases, 2x bias LR), dynamic loss scaling
under mixed_float16, the SGD-momentum update and the samples-seen counters, at the paper's LR 0.02.

Prints one JSON line: train_step_s and predict_step_s (medians over --steps steps after one
warm-up step that traces/compiles), every timed step, the warm-up times, the trace times (tracing
alone; with --xla also the XLA compile time, warm-up - trace - one step), and peak_rss_mb (peak
resident memory of the process). The roofline (benchmarks/roofline.py): train_gflop, the step's
convolution and matmul work (forward and gradients) counted from its graph traced with static shapes
(the XLA paths), with each RoI branch's slot count (`max_fg`) set to what the timed mode runs: all
128 per image under --xla; in graph mode only as many as the batch's most-foreground image needs at
that step's weights (the steps train at LR 0.02, so the proposals and their foreground move from step
to step). Before each timed graph-mode step (outside its timing) one eager forward counts those slots
(`branch_slots`); the step's FLOPs are linear in them (`FlopModel`, from two traces per branch).
train_gflop is the mean over the timed steps, `roi_branch_slots_per_image` lists each step's count,
and train_gflops_per_s = the timed steps' FLOPs / their time; matmul_ceiling_gflops_per_s, a 2048^3
matmul in the policy's compute dtype measured in this process; and their ratio, fraction_of_ceiling.
predict_gflop_all_detections: the predict step's work with the RoI branches on all 100 detection
slots per image, the most a trained model's predict does (untrained weights keep none, so the timed
predict step is not comparable with it). The batch is the input pipeline's
(rethink_tf.data.input_pipeline): random image content, 7 instances per image (COCO's average) in
M = 100 slots, 112x112 box-cropped masks; COCO's 80 classes.
"""
import json
import os
import resource
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import roofline  # noqa: E402  (benchmarks/, beside this script)
from rethink_tf.modeling.factory import build_model_from_bindings  # noqa: E402
from rethink_tf.training.trainer import Trainer  # noqa: E402

flags.DEFINE_integer("size", 512, "Square canvas side in pixels (multiple of 32).")
flags.DEFINE_integer("height", None, "Canvas height in pixels (multiple of 32); default --size.")
flags.DEFINE_integer("width", None, "Canvas width in pixels (multiple of 32); default --size.")
flags.DEFINE_integer("batch", 2, "Images per step.")
flags.DEFINE_bool("xla", False, "Compile both steps with jit_compile=True.")
flags.DEFINE_integer("steps", 5, "Timed steps after the warm-up step.")
flags.DEFINE_integer("depth", 50, "ResNet depth.")
flags.DEFINE_string("norm", "gn", "Norm kind.")
flags.DEFINE_string("box_head", "4conv1fc", "Box head.")
flags.DEFINE_string("dtype_policy", "float32", "Keras dtype policy: float32, mixed_bfloat16 or mixed_float16 "
                    "(Trainer.mixed_precision; float16 adds dynamic loss scaling).")
flags.DEFINE_bool("deterministic", False, "TF op determinism, as Trainer.deterministic (its cost).")
NUM_CLASSES = 80


def make_batch(batch_size, size, num_instances=7, max_instances=100, mask_size=112, seed=0):
    """A training batch on a canvas of `size` = side or (height, width) pixels."""
    height, width = (size, size) if isinstance(size, int) else size
    extent = np.array([height, width], "float32")
    rng = np.random.default_rng(seed)
    yx = rng.uniform(0, 1, size=(batch_size, num_instances, 2)) * extent * 0.7
    hw = rng.uniform(0.05, 0.3, size=(batch_size, num_instances, 2)) * extent
    boxes = np.zeros((batch_size, max_instances, 4), "float32")
    boxes[:, :num_instances] = np.concatenate([yx, np.minimum(yx + hw, extent)], -1)
    classes = -np.ones((batch_size, max_instances), "int32")
    classes[:, :num_instances] = rng.integers(1, NUM_CLASSES + 1, size=(batch_size, num_instances))
    masks = np.zeros((batch_size, max_instances, mask_size, mask_size), "uint8")
    masks[:, :num_instances, mask_size // 4: 3 * mask_size // 4, mask_size // 4: 3 * mask_size // 4] = 1
    info = np.tile(np.array([[height, width], [height, width], [1, 1], [0, 0]], "float32"),
                   (batch_size, 1, 1))
    return {"images": rng.normal(size=(batch_size, height, width, 3)).astype("float32") * 50,
            "image_info": info, "image_id": np.arange(batch_size, dtype="int64"), "gt_boxes": boxes, "gt_classes": classes,
            "gt_is_crowd": np.zeros((batch_size, max_instances), bool), "gt_masks": masks}


def _timed(fn, arg, steps, probe=None):
    """-> (trace s, warm-up s (trace + first run, and XLA compilation), median s, every step's s,
    probe() before each timed step, outside its timing (None without a probe))."""
    start = time.perf_counter()
    fn.get_concrete_function(arg)  # tracing only (under jit_compile XLA compiles on the first call)
    trace = time.perf_counter() - start
    tf.nest.map_structure(lambda t: t.numpy(), fn(arg))
    warmup = time.perf_counter() - start
    times, probes = [], []
    for _ in range(steps):
        probes.append(probe() if probe else None)
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), fn(arg))
        times.append(time.perf_counter() - start)
    return trace, warmup, statistics.median(times), [round(t, 2) for t in times], probes


def canvas_of(f):
    """(height, width) of the canvas from --height / --width / --size."""
    hw = (f.height or f.size, f.width or f.size)
    if hw[0] % 32 or hw[1] % 32:
        raise app.UsageError(f"the canvas must be a multiple of 32 on both sides, got {hw[0]}x{hw[1]}")
    return hw


def build_steps(f, jit_compile):
    """Model, batch and tf.function train/predict steps from the model flags (shared with
    profile_step.py, so both time the same thing). The train step is the Trainer's (module docstring)."""
    hw = canvas_of(f)
    batch = {k: tf.constant(v) for k, v in make_batch(f.batch, hw).items()}
    model_dir = tempfile.mkdtemp(prefix="train_step_benchmark_")  # never written: no checkpoint is saved
    trainer, train_step = Trainer.on_fixed_batch(
        model_dir, lambda: build_model_from_bindings(
            NUM_CLASSES, {"build_backbone.depth": f.depth}, norm=f.norm, box_head=f.box_head), batch,
        base_lr=0.02, jit_compile=jit_compile, deterministic=f.deterministic,
        mixed_precision=None if f.dtype_policy == "float32" else f.dtype_policy)
    model = trainer.model

    @tf.function(jit_compile=jit_compile)
    def predict_step(b):
        return model({"images": b["images"], "image_info": b["image_info"]}, training=False)

    return model, batch, train_step, predict_step, trainer


def branch_slots(model, batch):
    """{branch name: RoI slots per image} that graph mode runs each RoI branch's head on in training:
    the `rois` width its `logits` receives in one eager forward of `batch` (eager takes graph mode's
    data-dependent paths)."""
    seen = {}
    classes = {type(branch) for branch in model.roi_heads.branches.values()}
    originals = {cls: cls.logits for cls in classes}

    def spy(original):
        def logits(self, features, rois, *args, **kwargs):
            seen[self.name] = int(rois.shape[1])
            return original(self, features, rois, *args, **kwargs)
        return logits

    try:
        for cls in classes:
            cls.logits = spy(originals[cls])
        model(batch, training=True)
    finally:
        for cls, original in originals.items():
            cls.logits = original
    return seen


def _traced_gflop(trainer, batch, slots):
    """(GFLOP, uncounted op names) of the Trainer's step traced (not run) with jit_compile=True, whose
    shapes are all static, with each RoI branch's max_fg set from `slots` {branch name: slots}."""
    branches = trainer.model.roi_heads.branches.values()
    saved = {branch.name: branch.max_fg for branch in branches}
    jit = trainer.jit_compile
    trainer.jit_compile = True
    try:
        for branch in branches:
            branch.max_fg = slots.get(branch.name, branch.max_fg)
        concrete = trainer._build_train_step().get_concrete_function(batch)
    finally:
        trainer.jit_compile = jit
        for branch in branches:
            branch.max_fg = saved[branch.name]
    count = roofline.count_flops(concrete)
    return count["flops"] / 1e9, count["unknown"]


def predict_step_gflop(predict_step, batch):
    """GFLOP of `predict_step` (build_steps') traced (not run) with jit_compile=True: the RoI branches on
    all D detection slots (graph mode runs them on the kept detections only, so this is its upper bound,
    reached by a model that keeps D detections per image)."""
    traced = tf.function(predict_step.python_function, jit_compile=True).get_concrete_function(batch)
    return roofline.count_flops(traced)["flops"] / 1e9


class FlopModel:
    """GFLOP of one training step as a function of each RoI branch's slots per image: the step at every
    branch's max_fg (the XLA path) less, per branch, the GFLOP of one slot (from a second trace at one
    slot) times the slots graph mode skips. Exact: the branches' work is linear in their slot count."""

    def __init__(self, trainer, batch):
        self.max_slots = {b.name: b.max_fg for b in trainer.model.roi_heads.branches.values()}
        self.full, self.uncounted = _traced_gflop(trainer, batch, {})
        self.per_slot = {}
        for name, top in self.max_slots.items():
            # With one slot graph mode runs that slot too (it never runs fewer than one).
            fewer = _traced_gflop(trainer, batch, {name: 1})[0] if top > 1 else self.full
            self.per_slot[name] = (self.full - fewer) / max(top - 1, 1)

    def __call__(self, slots=None):
        return self.full - sum(self.per_slot[name] * (top - (slots or {}).get(name, top))
                               for name, top in self.max_slots.items())


def main(_):
    f = flags.FLAGS
    model, batch, train_step, predict_step, trainer = build_steps(f, jit_compile=f.xla)
    probe = None if f.xla else (lambda: branch_slots(model, batch))
    train_trace, train_warmup, train_s, train_times, slots = _timed(train_step, batch, f.steps, probe)
    predict_trace, predict_warmup, predict_s, predict_times, _ = _timed(predict_step, batch, f.steps)
    flop_model = FlopModel(trainer, batch)
    step_gflop = [flop_model(s) for s in slots]
    gflop, uncounted = statistics.mean(step_gflop), flop_model.uncounted
    gflops_per_s = sum(step_gflop) / sum(train_times)
    ceiling = roofline.matmul_ceiling("bfloat16" if f.dtype_policy == "mixed_bfloat16" else
                                      "float16" if f.dtype_policy == "mixed_float16" else "float32")
    print(json.dumps({
        "model": f"R{f.depth}-FPN Mask R-CNN {f.norm} {f.box_head}", "canvas": list(canvas_of(f)),
        "batch": f.batch, "xla": f.xla, "dtype_policy": f.dtype_policy, "deterministic": f.deterministic,
        "steps": f.steps, "train_step_s": round(train_s, 3),
        "predict_step_s": round(predict_s, 3), "train_warmup_s": round(train_warmup, 1),
        "predict_warmup_s": round(predict_warmup, 1),
        # Tracing alone; with --xla, warm-up - trace - one step is about the XLA compile time.
        "train_trace_s": round(train_trace, 1), "predict_trace_s": round(predict_trace, 1),
        **({"train_xla_compile_s": round(train_warmup - train_trace - train_s, 1),
            "predict_xla_compile_s": round(predict_warmup - predict_trace - predict_s, 1)} if f.xla else {}),
        # Every timed step: on this shared machine single steps of one run vary by up to 30%.
        "train_step_times_s": train_times, "predict_step_times_s": predict_times,
        "train_gflop": round(gflop, 1), "uncounted_ops": uncounted,
        "predict_gflop_all_detections": round(predict_step_gflop(predict_step, batch), 1),
        "roi_branch_slots_per_image": [s or flop_model.max_slots for s in slots],
        "train_gflops_per_s": round(gflops_per_s, 1), "matmul_ceiling_gflops_per_s": round(ceiling, 1),
        "fraction_of_ceiling": round(gflops_per_s / ceiling, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "num_params": int(sum(np.prod(v.shape) for v in model.weights)),
    }), flush=True)


if __name__ == "__main__":
    app.run(main)
