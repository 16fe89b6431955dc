"""A training process killed with SIGKILL and started again with the same command continues where it stopped."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

import toy_train_script as script
import training_toys as toys
from rethink_tf.training import distribute

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toy_train_script.py")
STEPS = 24


def _read(path):
    with open(path) as f:
        return [(int(a), float(b)) for a, b in (line.split() for line in f if line.strip())]


def _reference_losses(model_dir):
    t = script.make_trainer(str(model_dir), distribute.get_strategy("default"), "gn",
                            lambda ctx: toys.toy_dataset(ctx, 4), STEPS, 4, checkpoint_every=100)
    script.LossLogger(t, os.path.join(model_dir, "losses_0.txt")).install()
    t.train()
    return dict(_read(os.path.join(model_dir, "losses_0.txt")))


def test_sigkill_then_restart_continues_step_lr_data_and_loss_curve(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cmd = [sys.executable, SCRIPT, str(run), "single", "--steps", str(STEPS), "--checkpoint_every", "4"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    proc = subprocess.Popen(cmd + ["--sleep", "0.25"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    try:
        while not (run / "ckpt-8.index").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "no checkpoint 8 within the time limit"
            time.sleep(0.1)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    before = _read(run / "losses_0.txt")
    killed_at = before[-1][0]
    assert 8 <= killed_at < STEPS

    latest = int(tf.train.latest_checkpoint(str(run)).rsplit("-", 1)[1])
    assert 8 <= latest <= killed_at
    restarted = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    after = _read(run / "losses_0.txt")[len(before):]
    # Same step: the first step run after the restart is the one after the latest checkpoint.
    assert [s for s, _ in after] == list(range(latest + 1, STEPS + 1))

    reference = _reference_losses(tmp_path / "reference")
    np.testing.assert_allclose([v for _, v in before], [reference[s] for s, _ in before], rtol=1e-5)
    # Same LR and data position: the resumed curve is the uninterrupted one, step for step.
    np.testing.assert_allclose([v for _, v in after], [reference[s] for s, _ in after], rtol=1e-5)
