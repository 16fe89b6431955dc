"""`python -m rethink_tf.train` / `evaluate` fail in seconds, naming the bad file or binding."""

import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(module, *args, timeout=120):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return proc, time.time() - start


@pytest.fixture()
def good_gin(tmp_path):
    path = tmp_path / "schedule.gin"
    path.write_text("paper_schedule.schedule_multiplier = 2\n")
    return path


def test_missing_gin_file(tmp_path):
    proc, seconds = _run("rethink_tf.train", f"--gin_file={tmp_path / 'nope.gin'}", f"--model_dir={tmp_path / 'm'}")
    assert proc.returncode != 0
    assert "nope.gin" in proc.stderr and "not found" in proc.stderr
    assert seconds < 30
    assert not (tmp_path / "m").exists()  # nothing was started


@pytest.mark.parametrize("binding,named", [
    ("paper_schedule.schedule_multiplierr = 2", "schedule_multiplierr"),
    ("no_such_configurable.value = 1", "no_such_configurable"),
])
def test_bad_binding_fails_before_building(tmp_path, good_gin, binding, named):
    proc, seconds = _run("rethink_tf.train", f"--gin_file={good_gin}", f"--gin_bindings={binding}",
                         f"--model_dir={tmp_path / 'm'}")
    assert proc.returncode != 0
    assert named in proc.stderr
    assert "Traceback" not in proc.stderr
    assert seconds < 60  # dominated by importing TensorFlow on a busy machine
    assert not (tmp_path / "m").exists()


def test_missing_included_file(tmp_path):
    path = tmp_path / "exp.gin"
    path.write_text("include 'base_that_is_missing.gin'\n")
    proc, _ = _run("rethink_tf.train", f"--gin_file={path}", f"--model_dir={tmp_path / 'm'}")
    assert proc.returncode != 0 and "base_that_is_missing.gin" in proc.stderr


def test_evaluate_without_config(tmp_path):
    proc, _ = _run("rethink_tf.evaluate", f"--model_dir={tmp_path}")
    assert proc.returncode != 0 and "config.gin" in proc.stderr


@pytest.mark.slow
def test_tiny_run_log_and_tensorboard(tmp_path):
    """2 steps of tests/reliability/tiny_run.gin evaluated after each: the log has no ERROR line and ends
    with the summary (COCOeval table, AP per category); TensorBoard holds the losses, an AP curve, the
    operative config, the hyper-parameters and ground truth | predictions images."""
    import numpy as np

    from rethink_tf.evaluation import eval_loop
    from rethink_tf.training import experiment, summaries
    from rethink_tf.utils import visualize

    run = tmp_path / "run"
    proc, _ = _run("rethink_tf.train", f"--gin_file={REPO}/tests/reliability/tiny_run.gin", f"--model_dir={run}",
                   f'--gin_bindings=SyntheticShapesSource.data_dir = "{tmp_path / "data"}"',
                   "--gin_bindings=Trainer.eval_every = 1", "--gin_bindings=Trainer.summary_every = 1", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stderr
    assert not [line for line in log.splitlines() if line.startswith(("E", "F")) or "ERROR" in line], log
    summary = log[log.index("Run summary"):]
    assert "steps         0 -> 2 of 2 (finished)" in summary and "images seen   4 (2 per step)" in summary
    assert "time split    step " in summary and "first step " in summary
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in summary
    assert summary.count("AP per category: circle ") == 2  # bbox and segm
    assert "coco_eval.txt" in summary and f"python -m rethink_tf.export --model_dir={run}" in summary

    scalars = summaries.read_scalars(str(run / "train"))
    assert [s for s, _ in scalars["loss/total"]] == [1, 2] and "learning_rate" in scalars
    assert [s for s, _ in summaries.read_scalars(str(run / "eval"))["bbox/AP"]] == [1, 2]  # a curve
    config_text = summaries.read_texts(str(run / "train"))["config/operative_gin"][0][1]
    assert "build_backbone.base_width = 8" in config_text
    hparams = summaries.read_hparams(str(run / "train"))
    assert hparams["build_backbone.base_width"] == 8 and hparams["global_batch_size"] == 2
    images = summaries.read_images(str(run / "eval"))[experiment.EVAL_IMAGES_TAG]
    assert [s for s, _ in images] == [1, 2]
    drawn = images[-1][1]
    side = round(64 * visualize.drawing_scale((64, 64)))  # 64 px images are drawn enlarged
    assert drawn.shape[1:] == (side, 2 * side + eval_loop.GAP, 3)  # ground truth | predictions
    assert not np.array_equal(drawn[:, :, :side], drawn[:, :, -side:])  # ground truth drawn on the left only
