"""Figure 2: AP of a pre-trained + fine-tuned run and a from-scratch run against the samples each has seen,
pre-training included, counted three ways: images, instances and pixels.

    python -m rethink_tf.evaluation.figure2 --pretrained_dir=runs/finetune --scratch_dir=runs/scratch \
        --metric=bbox/AP --out=figure2.png

Reads each DIR/metrics.jsonl (one record per evaluation). A record's own counts are `images_seen`,
`instances_seen`, `pixels_seen` (the detection training's, `input_pipeline.samples_seen`); a fine-tuning
run's records also carry its pre-training totals `pretrain_images_seen`, `pretrain_instances_seen`,
`pretrain_pixels_seen` (a classification image counts as 1 instance and S x S pixels at the trained size,
224 x 224 for ImageNet; `classification.samples_seen`). The x value of a point is own + pre-training
count; a run without pretrain_* fields is from scratch (pre-training 0). `--pretrain_counts=FILE` (a json
{"images": ..., "instances": ..., "pixels": ...}) supplies the totals for a fine-tuning run whose records
lack them, and overrides them when present.

Each panel draws the pre-training as a flat segment at AP 0 from 0 to its total (no detection AP exists
yet) followed by the fine-tuning curve, next to the from-scratch curve, as in the paper's Figure 2 (there
bars of totals; here the AP curves, which show the same totals at their right ends). Without matplotlib
the command prints the table (and writes it as CSV next to `out`).
"""

from __future__ import annotations

import csv
import json
import os
import sys

from absl import flags

from rethink_tf.evaluation.coco_evaluator import read_metrics_jsonl
from rethink_tf.utils import cli, validate

KINDS = ("images", "instances", "pixels")
PRETRAIN_FIELDS = {k: f"pretrain_{k}_seen" for k in KINDS}
OWN_FIELDS = {k: f"{k}_seen" for k in KINDS}


def load_pretrain_counts(path: str) -> dict:
    """{"images", "instances", "pixels"} floats from a json file; InputError naming the file and key."""
    try:
        with open(path) as f:
            counts = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise validate.InputError(f"--pretrain_counts {path}: cannot read a json object ({e})") from e
    missing = [k for k in KINDS if not isinstance(counts, dict) or not isinstance(counts.get(k), (int, float))]
    if missing:
        raise validate.InputError(f"--pretrain_counts {path}: missing numeric {', '.join(missing)}")
    return {k: float(counts[k]) for k in KINDS}


def run_points(model_dir: str, metric: str = "bbox/AP", pretrain_counts: dict | None = None) -> list[dict]:
    """The evaluations of one run, by step: [{"step", "images", "instances", "pixels", "pretrain_images",
    ..., "value"}], counts including pre-training. The last record of a repeated step wins.

    Args:
      model_dir: a training directory holding metrics.jsonl.
      metric: "<bbox|segm>/<AP|AP50|...>".
      pretrain_counts: pre-training totals replacing the records' pretrain_* fields (None: the records').
    """
    kind, _, name = metric.partition("/")
    path = os.path.join(model_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise validate.InputError(f"{path} does not exist (has the run evaluated yet?)")
    by_step = {}
    for record in read_metrics_jsonl(path):
        if not isinstance(record.get(kind), dict) or name not in record[kind]:
            continue
        missing = [f for f in OWN_FIELDS.values() if f not in record]
        if missing:
            raise validate.InputError(f"{path}: the record of step {record.get('step')} lacks {', '.join(missing)}")
        point = {"step": int(record["step"]), "value": float(record[kind][name])}
        for k in KINDS:
            pre = (pretrain_counts[k] if pretrain_counts is not None
                   else float(record.get(PRETRAIN_FIELDS[k], 0.0)))
            point[f"pretrain_{k}"] = pre
            point[k] = float(record[OWN_FIELDS[k]]) + pre
        by_step[point["step"]] = point
    if not by_step:
        raise validate.InputError(f"{path}: no record has {metric}")
    return [by_step[s] for s in sorted(by_step)]


def figure2_data(pretrained_dir: str, scratch_dir: str, metric: str = "bbox/AP",
                 pretrain_counts: dict | None = None) -> dict:
    """{"pretrained": points, "scratch": points} (see run_points); InputError if the pre-trained run has
    no pre-training counts or the scratch run has some."""
    pretrained = run_points(pretrained_dir, metric, pretrain_counts)
    if not any(p["pretrain_images"] for p in pretrained):
        raise validate.InputError(
            f"{os.path.join(pretrained_dir, 'metrics.jsonl')} has no {PRETRAIN_FIELDS['images']}: is it a "
            "fine-tuning run? Pass --pretrain_counts=<json of the pre-training's images/instances/pixels>")
    scratch = run_points(scratch_dir, metric)
    if any(p["pretrain_images"] for p in scratch):
        raise validate.InputError(f"{os.path.join(scratch_dir, 'metrics.jsonl')} records pre-training counts: "
                                  "--scratch_dir must be a run from random initialization")
    return {"pretrained": pretrained, "scratch": scratch}


def format_table(data: dict, labels: dict, metric: str) -> str:
    lines = [f"{'run':<24} {'step':>8} {'images':>14} {'instances':>14} {'pixels':>18} {metric:>10}"]
    for key, points in data.items():
        for p in points:
            lines.append(f"{labels[key]:<24} {p['step']:>8d} {p['images']:>14.4g} {p['instances']:>14.4g} "
                         f"{p['pixels']:>18.4g} {p['value']:>10.2f}")
    return "\n".join(lines)


def plot(data: dict, labels: dict, metric: str, out: str) -> str:
    """Writes the three-panel PNG (matplotlib) or, without matplotlib, the CSV next to `out`; returns the
    path written."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        out = os.path.splitext(out)[0] + ".csv"
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["run", "step", "images_seen", "instances_seen", "pixels_seen", metric])
            for key, points in data.items():
                writer.writerows([labels[key], p["step"], p["images"], p["instances"], p["pixels"], p["value"]]
                                 for p in points)
        return out
    colors = {"pretrained": "tab:green", "scratch": "tab:purple"}
    fig, axes = plt.subplots(3, 1, figsize=(6, 9))
    for ax, kind in zip(axes, KINDS):
        for key, points in data.items():
            pre = points[0][f"pretrain_{kind}"]
            xs, ys = [p[kind] for p in points], [p["value"] for p in points]
            if pre:
                ax.plot([0, pre], [0, 0], color=colors[key], linewidth=4, alpha=0.4)
                ax.annotate("pre-training", (pre / 2, 0), ha="center", va="bottom", fontsize=8)
                xs, ys = [pre] + xs, [0.0] + ys
            ax.plot(xs, ys, marker="o", color=colors[key], label=labels[key])
        ax.set_xlabel(f"{kind} seen (pre-training included)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def define_flags():
    """The command's flags, defined when it runs (not on import: plot has flags of the same names)."""
    flags.DEFINE_string("pretrained_dir", None, "The fine-tuning run (from a pre-trained backbone).")
    flags.DEFINE_string("scratch_dir", None, "The run from random initialization.")
    flags.DEFINE_string("pretrain_counts", None, "Optional json {images, instances, pixels} of the pre-training.")
    flags.DEFINE_list("labels", ["pre-training + fine-tuning", "random init"], "Legend labels of the two runs.")
    flags.DEFINE_string("metric", "bbox/AP", "Metric: <bbox|segm>/<AP|AP50|AP75|APs|APm|APl>.")
    flags.DEFINE_string("out", "figure2.png", "Output PNG (CSV when matplotlib is not installed).")


def main(argv):
    del argv
    f = flags.FLAGS
    if not f.pretrained_dir or not f.scratch_dir:
        print("error: --pretrained_dir and --scratch_dir are required", file=sys.stderr)
        sys.exit(2)
    if len(f.labels) != 2:
        print(f"error: --labels needs two labels, got {f.labels}", file=sys.stderr)
        sys.exit(2)
    counts = load_pretrain_counts(f.pretrain_counts) if f.pretrain_counts else None
    data = figure2_data(f.pretrained_dir, f.scratch_dir, f.metric, counts)
    labels = dict(zip(("pretrained", "scratch"), f.labels))
    print(format_table(data, labels, f.metric))
    print(plot(data, labels, f.metric, f.out))


def run():
    """Console script `rethink-figure2`."""
    define_flags()
    cli.run(main)


if __name__ == "__main__":
    run()
