"""Issue 8.1: the model checkpoint and the data position are one unit; every restart works after any earlier one.

Faults: a checkpoint whose data position is missing (deleted, as after a kill or a full disk between the
two writes, or only ckpt-* copied) followed by two SIGKILLs; a real full disk (a small tmpfs) while saving;
a write failure injected into the second of the two writes.
"""

import contextlib
import os
import subprocess
import uuid

import numpy as np
import pytest
import tensorflow as tf

import reliability_toys as rtoys
from reliability_toys import STEPS


@pytest.mark.slow  # 3 processes; test_only_model_checkpoints_copied_resumes_by_rereading covers it in-process
def test_missing_data_position_then_two_kills_still_restarts(tmp_path, reference_run):
    reference_losses, reference_weights = reference_run
    rtoys.run_script(tmp_path, STEPS, kill_at=10)  # ckpt-4, ckpt-8 with data-4, data-8
    for path in tf.io.gfile.glob(str(tmp_path / "data" / "worker_0" / "data-8.*")):
        os.remove(path)
    rtoys.run_script(tmp_path, STEPS, kill_at=14)  # restarts without data-8, saves ckpt-12
    rtoys.run_script(tmp_path, STEPS)              # restarts again: must restore and finish
    logged = rtoys.read_losses(tmp_path)
    assert logged[-1][0] == STEPS
    for step, loss in logged:  # every restart continued the uninterrupted curve
        assert loss == reference_losses[step], f"step {step}: {loss} != {reference_losses[step]}"
    for got, want in zip(rtoys.read_weights(tmp_path), reference_weights, strict=True):
        np.testing.assert_array_equal(got, want)


def test_only_model_checkpoints_copied_resumes_by_rereading(tmp_path):
    first = rtoys.make_trainer(tmp_path, 12)
    first.train(max_steps=8)
    tf.io.gfile.rmtree(str(tmp_path / "data"))
    second = rtoys.make_trainer(tmp_path, 12)
    assert second.restore_or_initialize() == 8
    second.train(max_steps=2)  # saves nothing; then a unit at 12
    second.train()
    third = rtoys.make_trainer(tmp_path, 12)
    assert third.restore_or_initialize() == 12  # data-12 came from an unchanged pipeline: restorable
    assert third._checkpointer.restore()[1]


@contextlib.contextmanager
def _small_tmpfs(size="16m"):
    """A real small filesystem (needs root); skips the test where mounting is not allowed."""
    where = f"/tmp/reliability_tmpfs_{uuid.uuid4().hex[:8]}"
    os.makedirs(where)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", where], capture_output=True).returncode:
        os.rmdir(where)
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", where], check=False)
        os.rmdir(where)


def _fill(directory):
    """Writes a file until the filesystem is full; returns its path."""
    path = os.path.join(directory, "filler")
    try:
        with open(path, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    return path


def test_full_disk_stops_with_a_clear_error_and_keeps_the_last_unit(tmp_path):
    with _small_tmpfs() as disk:
        run = os.path.join(disk, "run")
        t = rtoys.make_trainer(run, 12, summary_every=100)
        t.restore_or_initialize()
        step_fn = t._build_train_step()
        filler = []

        def step_then_fill_the_disk_at_6(batch):
            out = step_fn(batch)
            if t.step == 6:
                filler.append(_fill(disk))
            return out

        t._train_step = step_then_fill_the_disk_at_6
        with pytest.raises(OSError, match=r"step 8 .*No space left.*ckpt-4") as err:
            t.train()
        assert type(err.value).__name__ == "CheckpointWriteError"
        assert rtoys.checkpoint_steps(run) == [4]
        assert not tf.io.gfile.glob(os.path.join(run, "ckpt-8*"))
        assert not tf.io.gfile.glob(os.path.join(run, "data", "worker_0", "data-8*"))
        os.remove(filler[0])
        resumed = rtoys.make_trainer(run, 12, summary_every=100)
        assert resumed.restore_or_initialize() == 4
        resumed.train()
        again = rtoys.make_trainer(run, 12)
        assert again.restore_or_initialize() == 12 and again._checkpointer.restore()[1]


def test_failure_of_the_second_write_keeps_the_previous_unit(tmp_path, monkeypatch):
    t = rtoys.make_trainer(tmp_path, 12)
    t.train(max_steps=4)
    real_save = tf.train.CheckpointManager.save
    writes = []

    def failing_second_write(self, checkpoint_number=None, **kw):
        writes.append(checkpoint_number)
        if writes.count(8) == 2:
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device (injected)")
        return real_save(self, checkpoint_number=checkpoint_number, **kw)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", failing_second_write)
    with pytest.raises(OSError, match="step 8"):
        t.train()
    monkeypatch.undo()
    restarted = rtoys.make_trainer(tmp_path, 12)
    assert restarted.restore_or_initialize() == 4  # neither half of step 8 became the latest
    restarted.train()
    again = rtoys.make_trainer(tmp_path, 12)
    assert again.restore_or_initialize() == 12 and again._checkpointer.restore()[1]
