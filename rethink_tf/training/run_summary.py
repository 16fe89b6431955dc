"""The block a training job logs at its end: what it did, how well, what it wrote, what to run next.

    Run summary (/tmp/run)
      wall time   1m02s
      time split  step 91.2%, input 1.0%, checkpoint 2.3%, other 5.5% of 0m48s; first step 0m09s, evaluation 0m05s
      steps       0 -> 40 of 40 (finished)
      images seen 320 (8 per step)
      evaluation  (DIR/coco_eval.txt) COCOeval's table and the AP per category, or the last
                  metrics.jsonl record (pre-training: top-1 / top-5)
      files written config.gin, ckpt-40.*, eval/, metrics.jsonl, train/, ...
      next        python -m rethink_tf.export --model_dir=/tmp/run --export_dir=/tmp/run/export

Everything is read back from the model directory (checkpoint, metrics.jsonl, coco_eval.txt), so the
block says what the files say, whichever job wrote them.
"""

from __future__ import annotations

import json
import os
import re

import tensorflow as tf


def checkpoint_state(model_dir: str) -> dict:
    """{"step", "images"} of the latest checkpoint in DIR (zeros without one)."""
    latest = tf.train.latest_checkpoint(model_dir)
    if latest is None:
        return {"step": 0, "images": 0.0}
    names = dict(tf.train.list_variables(latest))
    read = lambda key: tf.train.load_variable(latest, key) if key in names else 0  # noqa: E731
    return {"step": int(read("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")),
            "images": float(read("seen_images/.ATTRIBUTES/VARIABLE_VALUE"))}


def _files_written(model_dir: str, since: float) -> list[str]:
    """Top-level entries of DIR written since `since` (a checkpoint's files as `ckpt-N.*`, folders as
    `name/`), sorted."""
    names = set()
    for name in os.listdir(model_dir):
        path = os.path.join(model_dir, name)
        if os.path.isdir(path):
            newest = max((os.path.getmtime(os.path.join(root, f)) for root, _, files in os.walk(path)
                          for f in files), default=0.0)
            if newest >= since:
                names.add(name + "/")
        elif os.path.getmtime(path) >= since:
            names.add(re.sub(r"^(ckpt-\d+)\..*$", r"\1.*", name))
    return sorted(names)


def _evaluation(model_dir: str, since: float) -> str:
    """This process's last evaluation: DIR/coco_eval.txt, else the last metrics.jsonl record."""
    report = os.path.join(model_dir, "coco_eval.txt")
    if os.path.exists(report) and os.path.getmtime(report) >= since:
        with open(report) as f:
            return f.read().rstrip()
    metrics = os.path.join(model_dir, "metrics.jsonl")
    if os.path.exists(metrics) and os.path.getmtime(metrics) >= since:
        with open(metrics) as f:
            lines = [line for line in f if line.strip()]
        record = json.loads(lines[-1])
        values = "  ".join(f"{kind}/{k} {v:.2f}" for kind, m in sorted(record.items())
                           if isinstance(m, dict) and kind != "eval_seconds"
                           for k, v in sorted(m.items()) if isinstance(v, (int, float)))
        return f"step {record.get('step')}: {values}"
    return "none in this process"


def time_split(phase_seconds: dict) -> str:
    """The training loop's wall time by phase (trainer.LOOP_PHASES seconds) as one line: the steady-state
    shares (what `trainer.step_share` divides) and the one-off first step and evaluations apart."""
    from rethink_tf.training.trainer import format_duration, steady_seconds

    steady = steady_seconds(phase_seconds)
    total = sum(steady.values())
    if total <= 0:
        return "no steps after the first"
    shares = ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in steady.items() if v > 0)
    return (f"{shares} of {format_duration(total)}; first step {format_duration(phase_seconds['first_step'])}, "
            f"evaluation {format_duration(phase_seconds['evaluation'])}")


def summary_text(model_dir: str, *, wall_seconds: float, start_step: int, total_steps: int | None,
                 global_batch_size: int | None, since: float, next_commands=(),
                 phase_seconds: dict | None = None) -> str:
    """The run summary block (see the module docstring) for DIR, `since` = the process's start time,
    `phase_seconds` = the training loop's trainer.LOOP_PHASES seconds (no "time split" row without)."""
    from rethink_tf.training.trainer import format_duration

    state = checkpoint_state(model_dir)
    finished = total_steps is not None and state["step"] >= total_steps
    steps = (f"{start_step} -> {state['step']}" + (f" of {total_steps}" if total_steps else "")
             + (" (finished)" if finished else ""))
    per_step = f" ({global_batch_size} per step)" if global_batch_size else ""
    indent = "\n" + " " * 16
    rows = [("wall time", format_duration(wall_seconds)),
            *([("time split", time_split(phase_seconds))] if phase_seconds else []), ("steps", steps),
            ("images seen", f"{state['images']:.0f}{per_step}"),
            ("evaluation", _evaluation(model_dir, since).replace("\n", indent)),
            ("files written", ", ".join(_files_written(model_dir, since)) or "none"),
            *[("next", command) for command in next_commands]]
    return f"Run summary ({model_dir})\n" + "\n".join(f"  {name:<13} {value}" for name, value in rows)
