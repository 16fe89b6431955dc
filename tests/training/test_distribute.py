"""Distribution, each in its own processes (logical devices and TF_CONFIG must be set before TF starts).

- MirroredStrategy over 2 logical CPUs: one SyncBN step equals one single-device step on the same global batch.
- MultiWorkerMirroredStrategy, 2 workers on 127.0.0.1: a few steps run, both end with identical weights
  and neither logs an error line.
"""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np

from rethink_tf.utils import logs

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toy_train_script.py")


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def test_mirrored_syncbn_step_equals_single_device_step(tmp_path):
    out = tmp_path / "w.npz"
    proc = subprocess.run([sys.executable, SCRIPT, str(tmp_path), "mirrored_vs_single", "--steps", "1",
                           "--weights_out", str(out)], env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = np.load(out)
    n = len([k for k in d if k.startswith("single_final_")])
    assert n == 14  # 2 convs, 2 SyncBN x (γ, β, mean, var), 2 dense x (kernel, bias)
    np.testing.assert_allclose(d["mirrored_loss"], d["single_loss"], rtol=1e-6)
    moved = 0
    for i in range(n):
        single, mirrored = d[f"single_final_{i}"], d[f"mirrored_final_{i}"]
        np.testing.assert_allclose(mirrored, single, rtol=1e-4, atol=1e-6, err_msg=f"weight {i}")
        moved += not np.allclose(single, d[f"single_initial_{i}"], rtol=1e-4, atol=1e-6)
    assert moved >= 10  # the step really changed the weights


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multi_worker_two_processes_end_with_identical_weights(tmp_path):
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    procs = []
    for task in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": task}})
        procs.append(subprocess.Popen(
            [sys.executable, SCRIPT, str(tmp_path / "run"), "multi_worker", "--steps", "4", "--checkpoint_every", "2",
             "--weights_out", str(tmp_path / f"w{task}.npz"), "--heartbeat_timeout_ms", "4000", "--chief_linger", "8"],
            env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
        # A clean run logs no error. Without distribute.leave_cluster, the task that exits last logs
        # "BaseCollectiveExecutor::StartAbort UNAVAILABLE" (the other stopped heartbeating): here worker 1
        # would leave while the chief lingers 8 s, twice the 4 s heartbeat timeout set for the test.
        errors = [line for line in err.splitlines()
                  if re.match(r"E\d{4} |ERROR", line) and not logs.is_native_noise(line)]
        assert not errors and "StartAbort" not in err, err[-3000:]
    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert len(w0.files) == len(w1.files) == 14
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k], err_msg=k)
    # The chief (worker 0) owns the checkpoints; worker 1's scratch copies are gone.
    names = sorted(os.listdir(tmp_path / "run"))
    assert "ckpt-4.index" in names and "ckpt-2.index" in names
    assert not os.path.exists(tmp_path / "run" / ".scratch" / "worker_1")


def test_strategy_choice_is_logged_with_the_devices_found(monkeypatch):
    """A run says which devices TensorFlow sees and whether its build can use GPUs: a CPU-only build
    on a GPU machine is otherwise silent."""
    import tensorflow as tf

    from rethink_tf.training import distribute

    # Captured at the call (absl's handlers and levels depend on what ran before in this process).
    lines = []
    monkeypatch.setattr(distribute.logging, "info", lambda msg, *args: lines.append(msg % args if args else msg))
    strategy = distribute.get_strategy()
    text = "\n".join(lines)
    cpus = len(tf.config.list_physical_devices("CPU"))
    gpus = len(tf.config.list_physical_devices("GPU"))
    assert f"Devices: {cpus} CPU, {gpus} GPU" in text
    assert ("with CUDA" in text) == tf.test.is_built_with_cuda()
    assert f"Distribution: {type(strategy).__name__}" in text
