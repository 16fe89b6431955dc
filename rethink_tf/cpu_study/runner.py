"""Trains the study's runs one after another and keeps what each one wrote, without its checkpoints.

A run trains in `<work_dir>/<name>` (checkpoints and all) through the same command a user types, in a
subprocess with its log captured; when it ends, `collect` copies its small files into `<out_dir>/<name>`:
config.gin, run_config.json, metrics.jsonl, label_map.json, the load report of its backbone, the ids of its
training images, the pre-training's samples-seen record, `train_log.txt` (the progress and evaluation lines
of the log) and `study_run.json` (the command, the wall time, the commit and the machine's load). A run
whose `study_run.json` exists is skipped, so an interrupted study resumes where it stopped: a killed run
restarts from its last checkpoint in the work directory.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

from absl import logging

from rethink_tf.cpu_study import plan

RECORD = "study_run.json"
_KEEP_FILES = ("config.gin", "run_config.json", "metrics.jsonl", "label_map.json", "backbone_weights.json",
               "backbone_weights.h5.samples.json", "init_checkpoint.json")
_LOG_LINE = re.compile(r"\] (step \d+/|Evaluation at step|Evaluated \d+ images|Schedule:|Training from step|"
                       r"Restored |Resumed |Loaded .* images)")


def is_done(out_dir: str, run: plan.StudyRun) -> bool:
    return os.path.isfile(os.path.join(out_dir, run.name, RECORD))


def seed_branch(model_dir: str, parent_dir: str, step: int) -> None:
    """Makes `model_dir` resume from `parent_dir`'s checkpoint at `step`: copies ckpt-<step> and the input
    position data-<step> (the model record run_config.json too, so the resume check compares against it).

    Raises:
      FileNotFoundError naming the missing checkpoint (the parent was not trained, or did not keep it).
    """
    checkpoint = os.path.join(parent_dir, f"ckpt-{step}")
    if not os.path.isfile(checkpoint + ".index"):
        raise FileNotFoundError(f"{checkpoint}.index: the branch point of {os.path.basename(model_dir)} is missing "
                                f"(train {os.path.basename(parent_dir)} first; it keeps every 100-step checkpoint)")
    if glob.glob(os.path.join(glob.escape(model_dir), "ckpt-*.index")):
        return  # already seeded (or trained further): the trainer resumes from its own latest checkpoint
    data_dir = os.path.join(model_dir, "data", "worker_0")
    os.makedirs(data_dir, exist_ok=True)
    for path in glob.glob(glob.escape(checkpoint) + ".*"):
        shutil.copy2(path, model_dir)
    for path in glob.glob(os.path.join(glob.escape(parent_dir), "data", "worker_0", f"data-{step}.*")):
        shutil.copy2(path, data_dir)
    shutil.copy2(os.path.join(parent_dir, "run_config.json"), model_dir)


def _load_average() -> list | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _commit(repo_dir: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", repo_dir, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def command_line(run: plan.StudyRun, work_dir: str) -> str:
    """The shell command of `run` as a user would type it from the repository root."""
    def quote(arg):
        return f'"{arg}"' if "'" in arg else (f"'{arg}'" if " " in arg else arg)
    return " ".join([f"python -m rethink_tf.{run.job}"] + [quote(a) for a in run.argv(work_dir)])


def train(run: plan.StudyRun, work_dir: str, log_path: str, repo_dir: str) -> dict:
    """Trains `run` (a branch is seeded from its parent first); returns its study record.

    Raises:
      RuntimeError naming the log when the job exits with an error.
    """
    model_dir = os.path.join(work_dir, run.name)
    if run.branch_of:
        seed_branch(model_dir, os.path.join(work_dir, run.branch_of), run.branch_step)
    argv = [sys.executable, "-m", f"rethink_tf.{run.job}"] + run.argv(work_dir)
    record = {"name": run.name, "command": command_line(run, "runs/cpu_study"), "commit": _commit(repo_dir),
              "branch_of": run.branch_of, "branch_step": run.branch_step,
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_average_start": _load_average()}
    logging.info("cpu_study: %s: %s", run.name, " ".join(argv))
    start = time.monotonic()
    with open(log_path, "a") as log:
        status = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=repo_dir).returncode
    record.update(wall_seconds=round(time.monotonic() - start, 1), load_average_end=_load_average())
    if status != 0:
        raise RuntimeError(f"{run.name} failed (exit status {status}); its log: {log_path}")
    return record


def collect(run: plan.StudyRun, work_dir: str, out_dir: str, log_path: str, record: dict) -> str:
    """Copies the run's small files into <out_dir>/<name> and writes its study record last; returns the folder."""
    model_dir, folder = os.path.join(work_dir, run.name), os.path.join(out_dir, run.name)
    os.makedirs(folder, exist_ok=True)
    for name in _KEEP_FILES + tuple(os.path.basename(p) for p in glob.glob(os.path.join(model_dir, "image_ids_*.json"))):
        if os.path.isfile(os.path.join(model_dir, name)):
            shutil.copy2(os.path.join(model_dir, name), folder)
    with open(log_path) as src, open(os.path.join(folder, "train_log.txt"), "w") as dst:
        dst.writelines(line for line in src if _LOG_LINE.search(line))
    with open(os.path.join(folder, RECORD), "w") as f:
        json.dump(record, f, indent=1)
    return folder


def run_all(work_dir: str, out_dir: str, repo_dir: str, only=None) -> list[str]:
    """Trains and collects every run not yet in `out_dir` (or only the names in `only`); returns their names."""
    done = []
    for run in plan.study_runs():
        if (only and run.name not in only) or is_done(out_dir, run):
            continue
        os.makedirs(work_dir, exist_ok=True)
        log_path = os.path.join(work_dir, f"{run.name}.log")
        record = train(run, work_dir, log_path, repo_dir)
        collect(run, work_dir, out_dir, log_path, record)
        logging.info("cpu_study: %s done in %.0f s", run.name, record["wall_seconds"])
        done.append(run.name)
    return done
