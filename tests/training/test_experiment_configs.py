"""The paper's experiment files parse, and fail at start-up with a useful message without COCO."""
import os
import subprocess
import sys
import time
from pathlib import Path

import gin
import pytest

from rethink_tf.training import config

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((REPO / "gin_configs").glob("*.gin"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_file_parses(path):
    gin.clear_config()
    try:
        config.parse([str(path)], [], finalize=False)
        assert gin.query_parameter("experiment.train_source") is not None
    finally:
        gin.clear_config()


def test_scratch_6x_is_the_papers_headline_run():
    gin.clear_config()
    try:
        config.parse([str(REPO / "gin_configs" / "scratch_6x.gin")], [], finalize=False)
        from rethink_tf.training import schedule

        spec = schedule.paper_schedule(global_batch_size=gin.query_parameter("experiment.global_batch_size"))
        assert (spec.total_steps, spec.boundaries, spec.base_lr) == (540_000, (480_000, 520_000), 0.02)
        assert gin.query_parameter("build_model.norm") == "gn"
        assert gin.query_parameter("build_model.depth") == 50
    finally:
        gin.clear_config()


def test_scratch_6x_without_coco_fails_at_start_up_saying_where_and_how(tmp_path):
    missing = tmp_path / "no_coco_here"
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "rethink_tf.train", f"--gin_file={REPO / 'gin_configs' / 'scratch_6x.gin'}",
         f"--gin_bindings=COCO_DIR = '{missing}'", f"--model_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{missing}/annotations/instances_train2017.json" in proc.stderr
    assert "COCO_DIR" in proc.stderr and "cocodataset.org" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.time() - start < 120
