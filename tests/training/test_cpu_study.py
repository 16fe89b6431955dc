"""The CPU-scale study's plan (branches share their parent's LR path), its runner's file handling and its
figures and tables drawn from hand-made records."""

import json
import os
import subprocess
import sys

import gin
import pytest

from rethink_tf.cpu_study import figures, plan, runner
from rethink_tf.training import config, schedule

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _schedule_of(run):
    """The ScheduleSpec the run's config and bindings resolve to (global batch from the config)."""
    gin.clear_config()
    bindings = [b.format(work_dir="/nonexistent") for b in run.bindings]
    config.parse([os.path.join(REPO, run.gin_file)], bindings)
    try:
        return schedule.paper_schedule(global_batch_size=gin.query_parameter("experiment.global_batch_size"))
    finally:
        gin.clear_config()


def test_plan_order_and_names():
    runs = plan.study_runs()
    names = [r.name for r in runs]
    assert len(names) == len(set(names))
    for i, run in enumerate(runs):
        if run.branch_of:
            assert run.branch_of in names[:i], f"{run.name} must come after {run.branch_of}"
        if run.arm == "pretrained":
            assert names.index(plan.PRETRAIN_RUN) < i


@pytest.mark.parametrize("run", [r for r in plan.study_runs() if r.job == "train"], ids=lambda r: r.name)
def test_schedule_matches_the_plan(run):
    spec = _schedule_of(run)
    assert spec.total_steps == run.total_steps
    assert tuple(spec.boundaries) == run.lr_drops
    if run.subset:
        assert spec.decay_factor == pytest.approx(0.02)


@pytest.mark.parametrize("run", [r for r in plan.study_runs() if r.branch_of], ids=lambda r: r.name)
def test_branch_shares_its_parents_lr_path(run):
    """A branch resumes its parent's checkpoint at branch_step: the LR of every step before it must be the
    same in both schedules (else the branch is not the N x run), and the checkpoint must exist there."""
    parent = plan.by_name()[run.branch_of]
    mine, theirs = _schedule_of(run), _schedule_of(parent)
    assert run.branch_step == mine.boundaries[0]
    assert all(mine.lr_at(s) == theirs.lr_at(s) for s in range(run.branch_step))
    assert theirs.lr_at(run.branch_step) != mine.lr_at(run.branch_step)  # the branch's drop happens there
    assert run.branch_step % 100 == 0  # detection.gin: Trainer.checkpoint_every = 100, all kept
    assert parent.total_steps // 100 <= 20  # Trainer.keep_checkpoints = 20


def test_seed_branch_copies_the_unit(tmp_path):
    parent, child = tmp_path / "parent", tmp_path / "child"
    (parent / "data" / "worker_0").mkdir(parents=True)
    for name in ("ckpt-400.index", "ckpt-400.data-00000-of-00001", "ckpt-500.index", "run_config.json"):
        (parent / name).write_text(name)
    for name in ("data-400.index", "data-400.data-00000-of-00001", "data-500.index"):
        (parent / "data" / "worker_0" / name).write_text(name)
    runner.seed_branch(str(child), str(parent), 400)
    assert sorted(os.listdir(child)) == ["ckpt-400.data-00000-of-00001", "ckpt-400.index", "data", "run_config.json"]
    assert sorted(os.listdir(child / "data" / "worker_0")) == ["data-400.data-00000-of-00001", "data-400.index"]
    with pytest.raises(FileNotFoundError, match="ckpt-700"):
        runner.seed_branch(str(tmp_path / "other"), str(parent), 700)


def test_collect_keeps_progress_and_evaluation_lines(tmp_path):
    run = plan.by_name()["scratch_6x"]
    model_dir = tmp_path / "work" / run.name
    model_dir.mkdir(parents=True)
    (model_dir / "metrics.jsonl").write_text("{}\n")
    (model_dir / "ckpt-100.index").write_text("")
    log = tmp_path / "work" / "scratch_6x.log"
    log.write_text("I 10:00:00 trainer] step 50/1800 (2.8%) | loss 2.5 [mask 1.0] | lr 0.01 | 90 img/s | ETA 3m\n"
                   "W 10:00:01 something] a warning\n"
                   "I 10:00:02 experiment] Evaluation at step 300: bbox AP 19.05\n")
    folder = runner.collect(run, str(tmp_path / "work"), str(tmp_path / "out"), str(log), {"wall_seconds": 1.0})
    assert sorted(os.listdir(folder)) == ["metrics.jsonl", "study_run.json", "train_log.txt"]
    assert len(open(os.path.join(folder, "train_log.txt")).readlines()) == 2
    assert runner.is_done(str(tmp_path / "out"), run)


def _record(step, bbox, segm=None, **extra):
    return {"step": step, "bbox": {"AP": bbox}, "segm": {"AP": bbox - 1 if segm is None else segm},
            "images_seen": 8.0 * step, "instances_seen": 30.0 * step, "pixels_seen": 8.0 * step * 128 * 128, **extra}


def _write_run(out_dir, name, records, losses=(), wall=60.0, branch=None):
    folder = out_dir / name
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "train_log.txt").write_text("".join(
        f"I 10:00:00 trainer] step {s}/1800 (1%) | loss {v} [mask 0.1] | lr 0.02 | 90 img/s | ETA 1m\n" for s, v in losses))
    (folder / "study_run.json").write_text(json.dumps({"wall_seconds": wall, "command": f"python -m x {name}",
                                                      "branch_of": branch and branch[0],
                                                      "branch_step": branch and branch[1],
                                                      "load_average_start": [0.1, 0.1, 0.1]}))


def test_figures_and_tables_from_records(tmp_path):
    pre = {"pretrain_images_seen": 1000.0, "pretrain_instances_seen": 1000.0, "pretrain_pixels_seen": 4096000.0}
    _write_run(tmp_path, "scratch_6x", [_record(s, s / 40) for s in range(100, 1801, 100)],
               losses=[(s, 3 - s / 1000) for s in range(50, 1801, 50)])
    _write_run(tmp_path, "pretrained_6x", [_record(s, 20 + s / 60, **pre) for s in range(100, 1801, 100)])
    _write_run(tmp_path, "scratch_2x", [_record(500, 30.0), _record(600, 33.5, 30.0)], branch=("scratch_6x", 400))
    _write_run(tmp_path, "pretrained_1pct_4x", [_record(1200, 12.0)], losses=[(1200, 0.4)])

    scratch_2x = plan.by_name()["scratch_2x"]
    curve = figures.schedule_curve(str(tmp_path), scratch_2x, figures.evaluations)
    assert curve[:4] == [(100, 2.5), (200, 5.0), (300, 7.5), (400, 10.0)]  # the parent's path up to the branch
    assert curve[4:] == [(500, 30.0), (600, 33.5)]
    assert figures.training_loss(str(tmp_path), "scratch_6x")[1800] == pytest.approx(1.2)

    paths = figures.draw_all(str(tmp_path))
    text = open(paths[0]).read()
    assert "| 2000 | 2x (600 steps) | 33.5 / 30.0 | - |" in text
    assert "| 2000 | 6x (1800 steps) | 45.0 / 44.0 | 50.0 / 49.0 |" in text
    assert "| 20 | 4x (1200 steps) | - | 12.0 / 11.0 |" in text
    assert "| scratch_2x | scratch_6x @ 400 | 1.0 min |" in text
    assert "Total wall time of the recorded runs: 4.0 min." in text
    pytest.importorskip("matplotlib")
    assert sorted(os.path.basename(p) for p in paths) == [
        "figure1_schedules.png", "figure2_samples.png", "figure3_small_data.png", "results.md"]
    assert all(os.path.getsize(p) > 0 for p in paths)


def test_cli_rejects_unknown_run(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rethink_tf.cpu_study", "--only=scratch_7x",
                             f"--out_dir={tmp_path}", f"--work_dir={tmp_path / 'work'}"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert "unknown run(s) scratch_7x" in result.stderr and "scratch_6x" in result.stderr
