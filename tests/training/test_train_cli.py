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
