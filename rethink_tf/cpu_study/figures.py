"""The study's figures and tables, drawn from the records `runner` keeps (metrics.jsonl, train_log.txt).

  figure1_schedules.png    bbox AP against steps, both arms, every schedule (a branch joins the longest run
                           at its first LR drop; the drops are marked), like the paper's Figure 1.
  figure2_samples.png      the longest runs of figure 1 against images / instances / pixels seen, pre-training
                           included (`rethink_tf.evaluation.figure2`), like the paper's Figure 2.
  figure3_small_data.png   the subsets: bbox AP against steps, and the training loss of the smallest subset,
                           like the paper's Figures 7 and 8.
  results.md               the tables behind them: AP at the end of every schedule, and the runs' wall times.

matplotlib is the `plot` extra; without it only results.md is written.
"""

from __future__ import annotations

import json
import os
import re

from rethink_tf.cpu_study import plan
from rethink_tf.evaluation import figure2
from rethink_tf.evaluation.coco_evaluator import read_metrics_jsonl

COLORS = {"scratch": "tab:purple", "pretrained": "tab:green"}
LABELS = {"scratch": "random init", "pretrained": "w/ pre-training"}
_PROGRESS = re.compile(r"\] step (\d+)/\d+ .*?\| loss ([0-9.]+|nan|inf)")


def evaluations(out_dir: str, name: str, metric: str = "bbox/AP") -> dict:
    """{step: metric} of one run's records; {} when the run has none yet."""
    path = os.path.join(out_dir, name, "metrics.jsonl")
    if not os.path.isfile(path):
        return {}
    group, _, key = metric.partition("/")
    return {int(r["step"]): float(r[group][key]) for r in read_metrics_jsonl(path) if group in r}


def training_loss(out_dir: str, name: str) -> dict:
    """{step: total loss} from the run's progress lines (medians over each 50-step window)."""
    path = os.path.join(out_dir, name, "train_log.txt")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return {int(m.group(1)): float(m.group(2)) for m in map(_PROGRESS.search, f) if m}


def schedule_curve(out_dir: str, run: plan.StudyRun, values) -> list:
    """[(step, value)] of `run`'s whole schedule: its parent's values up to the branch step, then its own.

    Args:
      values: `evaluations` or `training_loss` (a function of (out_dir, name) -> {step: value}).
    """
    own = values(out_dir, run.name)
    if not run.branch_of:
        return sorted(own.items())
    parent = {s: v for s, v in values(out_dir, run.branch_of).items() if s <= run.branch_step}
    return sorted({**parent, **{s: v for s, v in own.items() if s > run.branch_step}}.items())


def final_table(out_dir: str, runs) -> list:
    """Rows {"name", "arm", "subset", "multiplier", "steps", "bbox", "segm"} of the runs that finished."""
    rows = []
    for run in runs:
        bbox, segm = evaluations(out_dir, run.name, "bbox/AP"), evaluations(out_dir, run.name, "segm/AP")
        if run.total_steps in bbox:
            rows.append({"name": run.name, "arm": run.arm, "subset": run.subset, "multiplier": run.multiplier,
                         "steps": run.total_steps, "bbox": bbox[run.total_steps], "segm": segm.get(run.total_steps)})
    return rows


def _detection_runs(finding, subset=None):
    return [r for r in plan.study_runs() if r.finding == finding and r.subset == subset]


def _longest_runs() -> dict:
    """{arm: name} of finding 1's longest runs, the ones the shorter schedules branch from."""
    return {r.arm: r.name for r in _detection_runs(1) if not r.branch_of}


def _plot_schedules(ax, out_dir, runs, values, ylabel):
    for run in sorted(runs, key=lambda r: -r.multiplier):
        curve = schedule_curve(out_dir, run, values)
        if not curve:
            continue
        steps, ys = zip(*curve)
        longest = not run.branch_of
        if not longest:  # only the branch's own part: its base-LR path is the longest run's
            keep = [i for i, s in enumerate(steps) if s >= run.branch_step]
            steps, ys = [steps[i] for i in keep], [ys[i] for i in keep]
        ax.plot(steps, ys, color=COLORS[run.arm], linewidth=1.8 if longest else 1.2,
                label=LABELS[run.arm] if longest else None)
        if steps and steps[-1] == run.total_steps:
            ax.plot([steps[-1]], [ys[-1]], marker="o", color=COLORS[run.arm], markersize=4)
            ax.annotate(f"{run.multiplier}x", (steps[-1], ys[-1]), textcoords="offset points", xytext=(2, 3),
                        fontsize=7, color=COLORS[run.arm])
        for drop in run.lr_drops:
            ax.axvline(drop, ymin=0, ymax=0.03, color=COLORS[run.arm], linewidth=1)
    ax.set_xlabel(f"iterations (batch 8; 1x = {plan.UNIT_STEPS}; ticks: LR drops)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        return None


def _save(plt, fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def draw_figure1(out_dir: str, plt) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _plot_schedules(ax, out_dir, _detection_runs(1), evaluations, "bbox AP (synthetic val, 500 images)")
    ax.set_title("Schedules 2x-6x from random init and from the pre-trained backbone")
    ax.legend(loc="lower right")
    return _save(plt, fig, os.path.join(out_dir, "figure1_schedules.png"))


def draw_figure2(out_dir: str) -> str:
    longest = _longest_runs()
    data = figure2.figure2_data(os.path.join(out_dir, longest["pretrained"]), os.path.join(out_dir, longest["scratch"]))
    labels = {"pretrained": "pre-training + fine-tuning", "scratch": "random init"}
    return figure2.plot(data, labels, "bbox/AP", os.path.join(out_dir, "figure2_samples.png"))


def draw_figure3(out_dir: str, plt) -> str:
    subsets = list(plan.SUBSETS)
    fig, axes = plt.subplots(1, len(subsets) + 1, figsize=(5 * (len(subsets) + 1), 4.2))
    for ax, subset in zip(axes, subsets):
        _plot_schedules(ax, out_dir, _detection_runs(3, subset), evaluations, "bbox AP (synthetic val)")
        ax.set_title(f"{plan.SUBSETS[subset]} training images")
        ax.legend(loc="lower right")
    smallest = min(subsets, key=plan.SUBSETS.get)
    runs = [r for r in _detection_runs(3, smallest) if not r.branch_of]
    _plot_schedules(axes[-1], out_dir, runs, training_loss, "training loss (median per 50 steps)")
    for run in runs:
        ap = evaluations(out_dir, run.name).get(run.total_steps)
        if ap is not None:
            axes[-1].plot([], [], " ", label=f"{LABELS[run.arm]}: val AP {ap:.1f}")
    axes[-1].set_title(f"{plan.SUBSETS[smallest]} images: training loss")
    axes[-1].legend(loc="upper right", fontsize=8)
    return _save(plt, fig, os.path.join(out_dir, "figure3_small_data.png"))


def results_markdown(out_dir: str) -> str:
    """The tables of results.md: final AP of every schedule, both arms, and every run's wall time."""
    lines = []
    for title, subset_keys in (("Finding 1: full training set (2,000 images)", [None]),
                               ("Finding 3: subsets, small-data recipe", list(plan.SUBSETS))):
        lines += [f"### {title}", "", "| training images | schedule | random init bbox / mask AP | "
                  "w/ pre-training bbox / mask AP |", "|---|---|---|---|"]
        for subset in subset_keys:
            rows = final_table(out_dir, _detection_runs(3 if subset else 1, subset))
            for n in sorted({r["multiplier"] for r in rows}):
                cells = {r["arm"]: f"{r['bbox']:.1f} / {r['segm']:.1f}" for r in rows if r["multiplier"] == n}
                images = plan.SUBSETS[subset] if subset else 2000
                lines.append(f"| {images} | {n}x ({n * plan.UNIT_STEPS} steps) | {cells.get('scratch', '-')} | "
                             f"{cells.get('pretrained', '-')} |")
        lines.append("")
    lines += ["### Runs", "", "| run | branches from | wall time | load average (start) | command |", "|---|---|---|---|---|"]
    total = 0.0
    for run in plan.study_runs():
        path = os.path.join(out_dir, run.name, "study_run.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            record = json.load(f)
        total += record["wall_seconds"]
        branch = f"{record['branch_of']} @ {record['branch_step']}" if record.get("branch_of") else "-"
        load = record.get("load_average_start")
        lines.append(f"| {run.name} | {branch} | {record['wall_seconds'] / 60:.1f} min | "
                     f"{load[0] if load else '?'} | `{record['command']}` |")
    lines += ["", f"Total wall time of the recorded runs: {total / 60:.1f} min.", ""]
    return "\n".join(lines)


def draw_all(out_dir: str) -> list:
    """Writes results.md and, with matplotlib, the three PNGs; returns the paths written."""
    paths = [os.path.join(out_dir, "results.md")]
    with open(paths[0], "w") as f:
        f.write(results_markdown(out_dir))
    plt = _pyplot()
    if plt is None:
        return paths
    paths.append(draw_figure1(out_dir, plt))
    if all(os.path.isfile(os.path.join(out_dir, name, "metrics.jsonl")) for name in _longest_runs().values()):
        paths.append(draw_figure2(out_dir))
    paths.append(draw_figure3(out_dir, plt))
    return paths
