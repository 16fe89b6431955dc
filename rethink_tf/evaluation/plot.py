"""Plots COCO AP of several runs against steps or samples seen (the paper's Figures 2, 4, 5).

`python -m rethink_tf.evaluation.plot --model_dirs=A,B --x=images --metric=bbox/AP --out=ap.png`

Reads each DIR/metrics.jsonl. Without matplotlib it prints the table and writes a CSV instead.
"""

from __future__ import annotations

import csv
import os
import sys

from absl import app, flags

from rethink_tf.evaluation.coco_evaluator import read_metrics_jsonl

X_AXES = {"step": "step", "images": "images_seen", "instances": "instances_seen", "pixels": "pixels_seen"}


def curve(model_dir: str, metric: str = "bbox/AP", x: str = "step") -> list[tuple[float, float]]:
    """[(x, metric)] of one run, sorted by x; the last record wins for a repeated x.

    Args:
      model_dir: a training directory holding metrics.jsonl.
      metric: "<bbox|segm>/<AP|AP50|AP75|APs|APm|APl>".
      x: one of X_AXES ("step", "images", "instances", "pixels").
    """
    if x not in X_AXES:
        raise ValueError(f"x must be one of {sorted(X_AXES)}, got {x!r}")
    kind, _, name = metric.partition("/")
    path = os.path.join(model_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist (has the run evaluated yet?)")
    points = {}
    for record in read_metrics_jsonl(path):
        if kind in record and name in record[kind] and X_AXES[x] in record:
            points[float(record[X_AXES[x]])] = float(record[kind][name])
    return sorted(points.items())


def plot(model_dirs: list[str], out: str, metric: str = "bbox/AP", x: str = "step", labels=None) -> str:
    """Writes a PNG (matplotlib) or, when matplotlib is missing, a CSV next to `out`. Returns the path."""
    labels = labels or [os.path.basename(os.path.normpath(d)) for d in model_dirs]
    curves = {label: curve(d, metric, x) for label, d in zip(labels, model_dirs)}
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        out = os.path.splitext(out)[0] + ".csv"
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["run", X_AXES[x], metric])
            for label, points in curves.items():
                writer.writerows([label, px, py] for px, py in points)
        return out
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in curves.items():
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xlabel(X_AXES[x].replace("_", " "))
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


flags.DEFINE_list("model_dirs", [], "Training directories to compare.")
flags.DEFINE_list("labels", None, "Legend labels (default: directory names).")
flags.DEFINE_string("metric", "bbox/AP", "Metric: <bbox|segm>/<AP|AP50|AP75|APs|APm|APl>.")
flags.DEFINE_enum("x", "step", sorted(X_AXES), "X axis: step or samples seen.")
flags.DEFINE_string("out", "ap.png", "Output PNG (CSV when matplotlib is not installed).")


def main(argv):
    del argv
    if not flags.FLAGS.model_dirs:
        print("error: --model_dirs is required", file=sys.stderr)
        sys.exit(2)
    path = plot(flags.FLAGS.model_dirs, flags.FLAGS.out, flags.FLAGS.metric, flags.FLAGS.x, flags.FLAGS.labels)
    print(path)


if __name__ == "__main__":
    app.run(main)
