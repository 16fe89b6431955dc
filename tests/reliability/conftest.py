"""A real run for the reliability tests: `rethink_tf.train` on tiny_run.gin for 1 step, and its export.

Shared by the whole session: the training and the export cost about 40 s of CPU each (idle 2-core machine).
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
    assert os.path.exists(os.path.join(run, "ckpt-1.index"))
    return run


@pytest.fixture(scope="session")
def exported_run(trained_run, tmp_path_factory):
    """The run exported with `rethink_tf.export.export` (score threshold 0 through --gin_bindings)."""
    import gin
    from rethink_tf import export
    path = str(tmp_path_factory.mktemp("export") / "saved_model")
    try:
        export.export(trained_run, path, gin_bindings=["build_model.score_threshold = 0.0"])
    finally:
        gin.clear_config()
    return path
