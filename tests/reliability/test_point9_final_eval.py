"""Issue 8.9: a finished run whose final evaluation crashed (or was killed) evaluates on restart, once."""

import os

import pytest

import reliability_toys as rtoys

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
    assert rtoys.checkpoint_steps(tmp_path)[-1] == 8
    assert not os.path.exists(tmp_path / "final_eval.json")

    rtoys.make_trainer(tmp_path, 8, eval_fn=good_eval, eval_every=0).train()
    assert calls == [("crash", 8), ("good", 8)]
    assert os.path.exists(tmp_path / "final_eval.json")

    rtoys.make_trainer(tmp_path, 8, eval_fn=good_eval, eval_every=0).train()  # done: not evaluated again
    assert calls == [("crash", 8), ("good", 8)]
