"""A real run for the reliability tests: `rethink_tf.train` on tiny_run.gin for 1 step, and its export.

Shared by the whole session: training costs about 40 s of CPU, the export about 20 s.
"""
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_RUN_GIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_run.gin")


def run_module(module, *args, timeout=600):
    """`python -m module args` in a fresh process with this worktree first on the path."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def train_args(model_dir, data_dir, *bindings):
    return [f"--gin_file={TINY_RUN_GIN}", f"--model_dir={model_dir}",
            f'--gin_bindings=SyntheticShapesSource.data_dir = "{data_dir}"',
            "--gin_bindings=experiment.max_steps = 1",
            *[f"--gin_bindings={b}" for b in bindings]]


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
