"""End-to-end training throughput: the real `train` path on coco128 at the paper's image size.

    python benchmarks/train_e2e.py --steps=20 --batch=2 [--checkpoint_every=10] [--xla]
        [--dtype_policy=mixed_bfloat16] [--gin_bindings='build_backbone.depth = 101']

Runs what `python -m rethink_tf.train --gin_file=gin_configs/scratch_6x.gin` runs (R50-FPN GN Mask R-CNN,
shorter side 800, longer <= 1333, horizontal flip, the Trainer's loop with coupled L2, summaries and
checkpoints every --checkpoint_every steps), with `gin_configs/base/data_coco128.gin` as the data (128
real COCO images from ../shared/data) and no evaluation, for --steps steps in a temporary model directory.

Then it times the input pipeline alone (the same `build_dataset` with the same bindings, nothing else
running) over --pipeline_batches batches.

Prints one JSON line:
  images_per_s         training images per second of wall time after the first step (tracing excluded)
  step_share           fraction of that wall time inside the compiled step (trainer.step_share; the
                       target is >= 0.9); phase_seconds has the whole split (trainer.LOOP_PHASES)
  pipeline_images_per_s  the input pipeline alone, images per second
  pipeline_headroom    pipeline_images_per_s / the step's demand (images_per_s of the step alone; target
                       >= 5)
  cores_for_61_img_s   cores this pipeline needs to feed 61 img/s (detectron2's R50-FPN Mask R-CNN on 8
                       V100s), assuming it scales with cores from what it does on this machine's cores
"""
import json
import os
import resource
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_integer("steps", 20, "Training steps (the first one traces and is reported apart).")
flags.DEFINE_integer("batch", 2, "Global batch size.")
flags.DEFINE_integer("checkpoint_every", 10, "Checkpoint cadence in steps (the paper's configs: 2000).")
flags.DEFINE_integer("pipeline_batches", 30, "Batches timed for the input pipeline alone (after 3 warm-up).")
flags.DEFINE_bool("xla", False, "Trainer.jit_compile.")
flags.DEFINE_string("dtype_policy", "float32", "float32 or mixed_bfloat16 (Trainer.mixed_precision).")
flags.DEFINE_multi_string("gin_bindings", [], "More gin bindings (after the benchmark's own).")
FLAGS = flags.FLAGS
CONFIGS = ("gin_configs/scratch_6x.gin", "gin_configs/base/data_coco128.gin")
DETECTRON2_IMG_PER_S = 61.0  # R50-FPN Mask R-CNN training on 8 V100s (detectron2 model zoo)


def _bindings():
    policy = None if FLAGS.dtype_policy == "float32" else FLAGS.dtype_policy
    return [f"experiment.global_batch_size = {FLAGS.batch}", f"experiment.max_steps = {FLAGS.steps}",
            "experiment.eval_source = None", "Trainer.eval_every = None",
            f"Trainer.checkpoint_every = {FLAGS.checkpoint_every}", f"Trainer.jit_compile = {FLAGS.xla}",
            f"Trainer.mixed_precision = {policy!r}", *FLAGS.gin_bindings]


def time_pipeline(batches: int) -> float:
    """Images per second of the training input pipeline alone (the gin config already parsed)."""
    import gin

    from rethink_tf.data.input_pipeline import build_dataset
    from rethink_tf.data.sources import CocoSource

    with gin.config_scope("train"):
        dataset = build_dataset(CocoSource(), training=True, global_batch_size=FLAGS.batch)
    iterator = iter(dataset)
    for _ in range(3):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * FLAGS.batch / (time.perf_counter() - start)


def main(argv):
    del argv
    from rethink_tf.training import config, distribute, experiment, trainer

    config.parse(list(CONFIGS), _bindings())
    model_dir = tempfile.mkdtemp(prefix="train_e2e_")
    start = time.perf_counter()
    experiment.experiment(model_dir, distribute.get_strategy())
    wall = time.perf_counter() - start
    seconds = dict(trainer.LAST_RUN["phase_seconds"])
    steady_steps = FLAGS.steps - 1
    steady = sum(trainer.steady_seconds(seconds).values())
    images_per_s = steady_steps * FLAGS.batch / steady
    step_images_per_s = steady_steps * FLAGS.batch / seconds["step"]
    pipeline = time_pipeline(FLAGS.pipeline_batches)
    cores = os.cpu_count() or 1
    print(json.dumps({
        "configs": list(CONFIGS), "bindings": _bindings(), "steps": FLAGS.steps, "batch": FLAGS.batch,
        "wall_s": round(wall, 1), "phase_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "images_per_s": round(images_per_s, 3), "step_s": round(seconds["step"] / steady_steps, 3),
        "step_share": round(trainer.step_share(seconds), 4),
        "pipeline_images_per_s": round(pipeline, 2),
        "pipeline_headroom": round(pipeline / step_images_per_s, 1),
        "cores": cores, "cores_for_61_img_s": round(DETECTRON2_IMG_PER_S / (pipeline / cores), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }), flush=True)


if __name__ == "__main__":
    app.run(main)
