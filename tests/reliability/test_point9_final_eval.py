"""Issue 8.9: a finished run whose final evaluation crashed (or was killed) evaluates on restart, once."""

import os

import pytest

import reliability_toys as rtoys
from rethink_tf.training import checkpointing


def test_final_evaluation_that_crashed_runs_on_restart(tmp_path):
    calls = []

    def crashing_eval(step, samples):
        calls.append(("crash", step))
        raise RuntimeError("evaluation crashed")

    def good_eval(step, samples):
        calls.append(("good", step))
        return {"bbox/AP": 1.0}, {}

    t = rtoys.make_trainer(tmp_path, 8, eval_fn=crashing_eval, eval_every=0)
    with pytest.raises(RuntimeError, match="evaluation crashed"):
        t.train()
    assert checkpointing.checkpoint_steps(str(tmp_path))[-1] == 8
    assert not os.path.exists(tmp_path / checkpointing.FINAL_EVAL_FILE)

    rtoys.make_trainer(tmp_path, 8, eval_fn=good_eval, eval_every=0).train()
    assert calls == [("crash", 8), ("good", 8)]
    assert checkpointing.final_eval_done(str(tmp_path), 8)

    rtoys.make_trainer(tmp_path, 8, eval_fn=good_eval, eval_every=0).train()  # done: not evaluated again
    assert calls == [("crash", 8), ("good", 8)]
