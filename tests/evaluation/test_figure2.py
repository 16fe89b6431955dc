"""Figure 2 from two hand-written metrics.jsonl files: counts include pre-training, table, CSV/PNG, errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rethink_tf.evaluation import figure2
from rethink_tf.utils import validate

REPO = Path(__file__).resolve().parents[2]
PRE = {"pretrain_images_seen": 1000.0, "pretrain_instances_seen": 1000.0, "pretrain_pixels_seen": 1000.0 * 64 * 64}


def write_run(path, records):
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "metrics.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def record(step, images, instances, pixels, ap, **extra):
    return {"step": step, "images_seen": images, "instances_seen": instances, "pixels_seen": pixels,
            "bbox": {"AP": ap, "AP50": 2 * ap}, **extra}


@pytest.fixture
def runs(tmp_path):
    finetuned = write_run(tmp_path / "ft", [record(100, 800.0, 3000.0, 800.0 * 128 * 128, 10.0, **PRE),
                                            record(200, 1600.0, 6000.0, 1600.0 * 128 * 128, 20.0, **PRE),
                                            record(200, 1600.0, 6000.0, 1600.0 * 128 * 128, 21.0, **PRE)])
    scratch = write_run(tmp_path / "scratch", [record(300, 2400.0, 9000.0, 2400.0 * 128 * 128, 15.0),
                                               {"step": 300, "note": "no metric here"},
                                               record(600, 4800.0, 18000.0, 4800.0 * 128 * 128, 25.0)])
    return finetuned, scratch


def test_points_add_the_pretraining_counts(runs):
    data = figure2.figure2_data(*map(str, runs))
    ft, scratch = data["pretrained"], data["scratch"]
    assert [(p["step"], p["images"], p["instances"], p["pixels"], p["value"]) for p in ft] == [
        (100, 1800.0, 4000.0, 800 * 128 * 128 + 1000 * 64 * 64, 10.0),
        (200, 2600.0, 7000.0, 1600 * 128 * 128 + 1000 * 64 * 64, 21.0)]  # the last record of a step wins
    assert [(p["step"], p["images"], p["pixels"], p["value"]) for p in scratch] == [
        (300, 2400.0, 2400 * 128 * 128, 15.0), (600, 4800.0, 4800 * 128 * 128, 25.0)]
    counts = {"images": 5.0, "instances": 6.0, "pixels": 7.0}
    override = figure2.run_points(str(runs[0]), "bbox/AP50", counts)
    assert [(p["images"], p["instances"], p["pixels"], p["value"]) for p in override] == [
        (805.0, 3006.0, 800 * 128 * 128 + 7.0, 20.0), (1605.0, 6006.0, 1600 * 128 * 128 + 7.0, 42.0)]


def test_runs_in_the_wrong_role_are_named(runs, tmp_path):
    finetuned, scratch = map(str, runs)
    with pytest.raises(validate.InputError, match="scratch/metrics.jsonl has no pretrain_images_seen"):
        figure2.figure2_data(scratch, scratch)
    with pytest.raises(validate.InputError, match="scratch_dir must be a run from random init"):
        figure2.figure2_data(finetuned, finetuned)
    with pytest.raises(validate.InputError, match="no record has segm/AP"):
        figure2.figure2_data(finetuned, scratch, "segm/AP")
    bad = write_run(tmp_path / "bad", [{"step": 1, "bbox": {"AP": 1.0}}])
    with pytest.raises(validate.InputError, match="lacks images_seen"):
        figure2.run_points(str(bad))
    (tmp_path / "c.json").write_text('{"images": 1, "pixels": 2}')
    with pytest.raises(validate.InputError, match="c.json: missing numeric instances"):
        figure2.load_pretrain_counts(str(tmp_path / "c.json"))


def test_command_prints_the_table_and_writes_the_figure(runs, tmp_path):
    out = tmp_path / "fig2.png"
    result = subprocess.run(
        [sys.executable, "-m", "rethink_tf.evaluation.figure2", f"--pretrained_dir={runs[0]}",
         f"--scratch_dir={runs[1]}", f"--out={out}"], capture_output=True, text=True, cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["run", "step"] and len(lines) == 1 + 4 + 1
    assert lines[1].split()[-5:] == ["100", "1800", "4000", "1.72e+07", "10.00"]
    written = Path(lines[-1])
    assert written.exists() and written.suffix in (".png", ".csv")
    if written.suffix == ".csv":  # no matplotlib here: the same table as CSV
        rows = written.read_text().splitlines()
        assert rows[0] == "run,step,images_seen,instances_seen,pixels_seen,bbox/AP" and len(rows) == 5
    missing = subprocess.run(
        [sys.executable, "-m", "rethink_tf.evaluation.figure2", f"--pretrained_dir={runs[1]}",
         f"--scratch_dir={runs[1]}"], capture_output=True, text=True, cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert missing.returncode == 2 and "has no pretrain_images_seen" in missing.stderr
