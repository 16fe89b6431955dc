"""Fixtures of the reliability suite.

- `trained_run` / `exported_run`: a real `rethink_tf.train` run of tiny_run.gin for 1 step, and its
  export (shared by the session; about 40 s of CPU each on an idle 2-core machine).
- `reference_run`: an uninterrupted deterministic SamplingToy run (the trainer toys of tests/training),
  against which the killed and resumed runs are compared.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "training"))
sys.path.insert(0, _HERE)

import pytest  # noqa: E402

from reliability_helpers import run_module, train_args  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_dir):
    """DIR of a 1-step run of tiny_run.gin (checkpoint ckpt-1)."""
    run = str(tmp_path_factory.mktemp("runs") / "tiny")
    proc = run_module("rethink_tf.train", *train_args(run, data_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(run + ".stderr.txt", "w") as f:  # its log, read by test_clean_log.py
        f.write(proc.stderr)
    assert os.path.exists(os.path.join(run, "ckpt-1.index"))
    return run


@pytest.fixture(scope="session")
def exported_run(trained_run, tmp_path_factory):
    """The run exported with `rethink_tf.export.export` (score threshold 0 through --gin_bindings)."""
    import gin
    from rethink_tf import export
    path = str(tmp_path_factory.mktemp("export") / "saved_model")
    try:
        export.export(trained_run, path, gin_bindings=["build_postprocessor.score_threshold = 0.0"])
    finally:
        gin.clear_config()
    return path


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """An uninterrupted deterministic SamplingToy run of STEPS steps: (per-step losses, final weights)."""
    import reliability_toys as rtoys

    d = tmp_path_factory.mktemp("reference")
    rtoys.run_script(d, rtoys.STEPS)
    losses = rtoys.read_losses(d)
    assert [s for s, _ in losses] == list(range(1, rtoys.STEPS + 1))
    return dict(losses), rtoys.read_weights(d)
