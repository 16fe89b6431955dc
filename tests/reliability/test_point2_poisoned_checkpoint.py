"""Issue 8.2: NaN/Inf weights are never saved as a checkpoint, and a non-finite LR is refused at start-up."""

import os

import numpy as np
import pytest
import tensorflow as tf

import reliability_toys as rtoys
from rethink_tf.training import schedule, task as task_lib, trainer as trainer_lib


def test_nan_weights_on_a_checkpoint_step_are_not_saved(tmp_path):
    # Batch 7 (step 8, a checkpoint step) has a finite loss but NaN gradients.
    t = rtoys.make_trainer(tmp_path, 12, model_cls=rtoys.NanGradientToy,
                           dataset_fn=lambda ctx: rtoys.poisoned_dataset(ctx, 7))
    with pytest.raises(trainer_lib.NonFiniteLossError) as err:
        t.train()
    message = str(err.value)
    assert "step 8" in message and "ckpt-4" in message and "box_head/kernel" in message
    assert rtoys.checkpoint_steps(tmp_path) == [4]  # the NaN weights of step 8 were not saved
    assert type(err.value).__name__ == "NonFiniteWeightsError"
    reader = tf.train.load_checkpoint(str(tmp_path / "ckpt-4"))
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.isfinite(value).all(), name


def test_lr_that_overflows_float32_is_refused_at_start_up(tmp_path):
    with pytest.raises(ValueError, match=r"paper_schedule\.base_lr"):
        schedule.paper_schedule(global_batch_size=4, total_steps=12, base_lr=1e39)
    # A spec built by other means is checked by the Trainer before anything runs.
    spec = schedule.ScheduleSpec(base_lr=1e39, total_steps=12, boundaries=(8,), decay_factor=0.1,
                                 warmup_steps=2, warmup_factor=1 / 3)
    from rethink_tf.training import distribute
    import training_toys as toys
    with pytest.raises(ValueError, match=r"base_lr"):
        task = task_lib.ModelTask(lambda: toys.ToyDetector("gn"), lambda ctx: toys.toy_dataset(ctx, 4))
        trainer_lib.Trainer(str(tmp_path), distribute.get_strategy("default"), task, spec, 4)
    assert not os.listdir(tmp_path)
