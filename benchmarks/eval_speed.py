"""Evaluation speed: the `evaluate` command's wall time, its eval loop and COCOeval apart.

    # the quickstart's val pass (500 images) on a trained quickstart run
    python benchmarks/eval_speed.py --model_dir=runs/quickstart
    # COCO size: R50-FPN GN Mask R-CNN at 800/1333 on coco_mini val2017 (79 images), a 1-step run
    # made here, every image filled to 100 detections (score threshold 0)
    python benchmarks/eval_speed.py --make_run=coco --score_threshold=0

--make_run=coco first trains one step of gin_configs/scratch_6x.gin on gin_configs/base/data_coco128.gin
(eval on coco_mini val2017) into a temporary directory; an untrained COCO model scores every class near
1/81, below the 0.05 threshold, so --score_threshold=0 makes it keep D = 100 detections per image as a
trained model does at 0.05 (each is a box to score and a mask to paste and encode).

Runs `python -m rethink_tf.evaluate --model_dir=DIR` --repeats times and prints one JSON line per run:
command_s (the whole command: start-up, tracing, the pass, scoring, writing), images, the pass's
eval_seconds by part from DIR/metrics.jsonl (input, model, results, drawing, scoring; see
rethink_tf.evaluation.eval_loop.EVAL_PARTS), pass_s (all parts but scoring) and its images_per_s,
scoring_s and its images_per_s, and pass_plus_scoring_s (the issue-13 target for the quickstart: <= 15 s).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

flags.DEFINE_string("model_dir", None, "A training run directory to evaluate (its latest checkpoint).")
flags.DEFINE_enum("make_run", None, ["coco"], "Make a 1-step run to evaluate instead (see module docstring).")
flags.DEFINE_float("score_threshold", None, "build_postprocessor.score_threshold for the evaluation.")
flags.DEFINE_integer("repeats", 1, "Evaluations to time.")
flags.DEFINE_multi_string("gin_bindings", [], "More bindings for the evaluation.")
FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def make_coco_run() -> str:
    model_dir = tempfile.mkdtemp(prefix="eval_speed_")
    _run(["rethink_tf.train", "--gin_file=gin_configs/scratch_6x.gin",
          "--gin_file=gin_configs/base/data_coco128.gin", f"--model_dir={model_dir}",
          "--gin_bindings=experiment.global_batch_size = 1", "--gin_bindings=experiment.max_steps = 1",
          "--gin_bindings=Trainer.eval_every = None"])
    return model_dir


def main(argv):
    del argv
    if bool(FLAGS.model_dir) == bool(FLAGS.make_run):
        raise app.UsageError("give one of --model_dir or --make_run")
    model_dir = FLAGS.model_dir or make_coco_run()
    bindings = list(FLAGS.gin_bindings)
    if FLAGS.score_threshold is not None:
        bindings.append(f"build_postprocessor.score_threshold = {FLAGS.score_threshold}")
    for _ in range(FLAGS.repeats):
        command_s = _run(["rethink_tf.evaluate", f"--model_dir={model_dir}",
                          *[f"--gin_bindings={b}" for b in bindings]])
        with open(os.path.join(model_dir, "metrics.jsonl")) as f:
            record = json.loads([line for line in f if line.strip()][-1])
        parts = record["eval_seconds"]
        images = record["num_eval_images"]
        pass_s = sum(v for k, v in parts.items() if k != "scoring")
        print(json.dumps({
            "model_dir": model_dir, "bindings": bindings, "images": images, "command_s": round(command_s, 1),
            "eval_seconds": parts, "pass_s": round(pass_s, 2), "pass_images_per_s": round(images / pass_s, 2),
            "scoring_s": parts["scoring"], "scoring_images_per_s": round(images / max(parts["scoring"], 1e-9), 1),
            "pass_plus_scoring_s": round(pass_s + parts["scoring"], 2),
            "detections_per_image": round(_detections_per_image(model_dir, record), 1),
        }), flush=True)


def _detections_per_image(model_dir, record):
    """Mean detections per image in the results json the evaluation wrote."""
    name = f"coco_results_{os.path.basename(record['checkpoint'])}.json"
    with open(os.path.join(model_dir, name)) as f:
        return len(json.load(f)) / max(record["num_eval_images"], 1)


if __name__ == "__main__":
    app.run(main)
