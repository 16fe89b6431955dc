"""Helpers of the reliability tests (a plain module: every test directory has its own conftest)."""
import os
import subprocess
import sys

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
