"""Issue 8.3: a run SIGKILLed twice continues exactly the loss curve and ends at the weights of the
uninterrupted run, although its model draws random samples every step (keyed by batch["sampling_seed"])."""

import numpy as np
import tensorflow as tf

import reliability_toys as rtoys
from reliability_toys import STEPS
from rethink_tf.training import trainer as trainer_lib


def test_killed_twice_repeats_every_loss_and_the_final_weights(tmp_path, reference_run):
    reference_losses, reference_weights = reference_run
    rtoys.run_script(tmp_path, STEPS, kill_at=6)    # last checkpoint: 4
    rtoys.run_script(tmp_path, STEPS, kill_at=11)   # resumes at 4, last checkpoint: 8
    rtoys.run_script(tmp_path, STEPS)               # resumes at 8, runs to the end
    logged = rtoys.read_losses(tmp_path)
    assert [s for s, _ in logged] == list(range(1, 7)) + list(range(5, 12)) + list(range(9, STEPS + 1))
    for step, loss in logged:
        assert loss == reference_losses[step], f"step {step}: {loss} != {reference_losses[step]}"
    for got, want in zip(rtoys.read_weights(tmp_path), reference_weights, strict=True):
        np.testing.assert_array_equal(got, want)


def test_sampling_seed_is_keyed_by_seed_step_and_replica():
    seeds = {(s, st, r): tuple(trainer_lib.sampling_seed(s, st, r).numpy())
             for s in (0, 1) for st in (0, 1, 2) for r in (0, 1)}
    assert len(set(seeds.values())) == len(seeds)
    again = trainer_lib.sampling_seed(1, tf.constant(2, tf.int64), tf.constant(1))
    assert again.dtype == tf.int32 and again.shape == [2] and tuple(again.numpy()) == seeds[(1, 2, 1)]
