"""Plots COCO AP of several runs against steps or samples seen (the paper's Figures 2, 4, 5).

`python -m rethink_tf.evaluation.plot --model_dirs=A,B --x=images --metric=bbox/AP --out=ap.png`

Reads each DIR/metrics.jsonl. matplotlib is the `plot` extra (`pip install -e ".[plot]"`); without it
the command prints the table it would have drawn and writes it as a CSV next to `--out`. A metric no
run has is an error listing the metrics the runs do have (exit status 2).
"""

from __future__ import annotations

import csv
import os
import sys

from absl import flags

from rethink_tf.evaluation.coco_evaluator import read_metrics_jsonl
from rethink_tf.utils.validate import InputError

X_AXES = {"step": "step", "images": "images_seen", "instances": "instances_seen", "pixels": "pixels_seen"}


def known_metrics(records) -> list[str]:
    """Metric names the records carry, "<group>/<name>" for nested numbers (bbox/AP) and "<name>" for
    top-level numbers that are not counters or bookkeeping."""
    skip = {"step", "wall_time", "num_eval_images", *X_AXES.values()}
    names = set()
    for record in records:
        for key, value in record.items():
            if isinstance(value, dict):
                names.update(f"{key}/{k}" for k, v in value.items() if isinstance(v, (int, float)))
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and key not in skip:
                names.add(key)
    return sorted(names)


def _value(record, metric):
    kind, _, name = metric.partition("/")
    if name:
        group = record.get(kind)
        return group.get(name) if isinstance(group, dict) else None
    return record.get(kind)


def curve(model_dir: str, metric: str = "bbox/AP", x: str = "step") -> list[tuple[float, float]]:
    """[(x, metric)] of one run, sorted by x; the last record wins for a repeated x.

    Args:
      model_dir: a training directory holding metrics.jsonl.
      metric: "<bbox|segm>/<AP|AP50|AP75|APs|APm|APl>".
      x: one of X_AXES ("step", "images", "instances", "pixels").
    """
    if x not in X_AXES:
        raise InputError(f"--x={x}: expected one of {sorted(X_AXES)}")
    path = os.path.join(model_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise InputError(f"{path} does not exist (has the run evaluated yet?)")
    points = {}
    for record in read_metrics_jsonl(path):
        value = _value(record, metric)
        if value is not None and X_AXES[x] in record:
            points[float(record[X_AXES[x]])] = float(value)
    return sorted(points.items())


def table(curves: dict, metric: str, x: str) -> str:
    """The curves as aligned text: one line per (run, x) point."""
    rows = [("run", X_AXES[x], metric)] + [(label, f"{px:g}", f"{py:.2f}")
                                             for label, points in curves.items() for px, py in points]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def plot(model_dirs: list[str], out: str, metric: str = "bbox/AP", x: str = "step", labels=None) -> str:
    """Writes a PNG (matplotlib) or, when matplotlib is missing, prints the table and writes it as a CSV
    next to `out`. Returns the path written.

    Raises:
      InputError: a run without metrics.jsonl, or `metric` in none of the runs (the message lists the
        metrics they have).
    """
    labels = labels or [os.path.basename(os.path.normpath(d)) for d in model_dirs]
    curves = {label: curve(d, metric, x) for label, d in zip(labels, model_dirs)}
    if not any(curves.values()):
        known = sorted(set().union(*(known_metrics(read_metrics_jsonl(os.path.join(d, "metrics.jsonl")))
                                     for d in model_dirs)))
        raise InputError(f"--metric={metric}: no point in {', '.join(model_dirs)} has it with --x={x}; "
                         f"known metrics: {', '.join(known) or 'none (no evaluation recorded yet)'}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(table(curves, metric, x))
        print("matplotlib is not installed (pip install -e \".[plot]\"): wrote the table as CSV instead.",
              file=sys.stderr)
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


def define_flags():
    """The command's flags, defined when it runs (not on import: figure2 has flags of the same names)."""
    flags.DEFINE_list("model_dirs", [], "Training directories to compare.")
    flags.DEFINE_list("labels", None, "Legend labels (default: directory names).")
    flags.DEFINE_string("metric", "bbox/AP", "Metric: <bbox|segm>/<AP|AP50|AP75|APs|APm|APl>, or any other "
                        "metric of metrics.jsonl (an unknown one is an error listing them).")
    flags.DEFINE_enum("x", "step", sorted(X_AXES), "X axis: step or samples seen.")
    flags.DEFINE_string("out", "ap.png", "Output PNG (CSV when matplotlib is not installed).")


def main(argv):
    del argv
    if not flags.FLAGS.model_dirs:
        raise InputError("--model_dirs is required (comma-separated training directories)")
    path = plot(flags.FLAGS.model_dirs, flags.FLAGS.out, flags.FLAGS.metric, flags.FLAGS.x, flags.FLAGS.labels)
    print(path)


def run():
    """Console script `rethink-plot`."""
    from rethink_tf.utils import cli

    define_flags()
    cli.run(main)


if __name__ == "__main__":
    run()
