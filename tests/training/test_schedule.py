"""The paper's N× schedule: totals, boundaries and LR at the boundaries, scaled to the batch."""

import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.training.schedule import WarmupStepDecay, paper_schedule


def _lr(spec, step):
    return float(WarmupStepDecay.from_spec(spec)(tf.constant(step, tf.int64)))


@pytest.mark.parametrize("multiplier,batch,total,b1,b2,base_lr", [
    (2, 16, 180_000, 120_000, 160_000, 0.02),
    (6, 16, 540_000, 480_000, 520_000, 0.02),
    (2, 2, 1_440_000, 960_000, 1_280_000, 0.0025),
    (6, 2, 4_320_000, 3_840_000, 4_160_000, 0.0025),
    (9, 64, 202_500, 187_500, 197_500, 0.08),  # detectron2 scratch 9x at batch 64
])
def test_boundaries_and_lr(multiplier, batch, total, b1, b2, base_lr):
    spec = paper_schedule(global_batch_size=batch, schedule_multiplier=multiplier)
    assert spec.total_steps == total
    assert spec.boundaries == (b1, b2)
    np.testing.assert_allclose(spec.base_lr, base_lr, rtol=1e-12)
    warm = spec.warmup_steps
    assert warm == round(500 * 16 / batch)
    expected = {
        0: base_lr / 3,                       # warmup starts at factor 1/3
        warm // 2: base_lr * (1 / 3 + (2 / 3) * (warm // 2) / warm),
        warm: base_lr,
        b1 - 1: base_lr,
        b1: base_lr * 0.1,
        b2 - 1: base_lr * 0.1,
        b2: base_lr * 0.01,
        total - 1: base_lr * 0.01,
    }
    for step, lr in expected.items():
        np.testing.assert_allclose(_lr(spec, step), lr, rtol=1e-5, err_msg=f"step {step}")
        np.testing.assert_allclose(spec.lr_at(step), lr, rtol=1e-9, err_msg=f"step {step}")


def test_small_data_recipe_decay_factor():
    spec = paper_schedule(global_batch_size=16, schedule_multiplier=2, base_lr_at_batch_16=0.04, decay_factor=0.02)
    np.testing.assert_allclose(_lr(spec, 120_000), 0.04 * 0.02, rtol=1e-5)
    np.testing.assert_allclose(_lr(spec, 160_000), 0.04 * 0.02 ** 2, rtol=1e-5)


def test_explicit_total_steps_and_boundaries():
    spec = paper_schedule(global_batch_size=2, total_steps=100, boundaries=(60, 90), warmup_steps_at_batch_16=1,
                          base_lr=0.01)
    assert (spec.total_steps, spec.boundaries, spec.warmup_steps) == (100, (60, 90), 8)
    np.testing.assert_allclose([_lr(spec, s) for s in (59, 60, 89, 90)], [0.01, 0.001, 0.001, 0.0001], rtol=1e-5)
    # total_steps alone keeps the paper's proportions (1x: decays at 1/3 and 7/9 of the run).
    assert paper_schedule(global_batch_size=16, total_steps=900).boundaries == (300, 700)


def test_bad_values_name_the_binding():
    with pytest.raises(ValueError, match="global_batch_size"):
        paper_schedule(global_batch_size=0)
    with pytest.raises(ValueError, match="boundaries"):
        paper_schedule(global_batch_size=16, total_steps=10, boundaries=(8, 4))


@pytest.mark.parametrize("batch", [16, 64])
def test_tail_of_a_schedule_continues_its_lr(batch):
    """The cascade switch: a run that is the 9x schedule from iteration 540k on has, at each of its steps
    s, the LR the whole 9x run has at 540k + s (scaled to the batch), and ends where it ends."""
    full = paper_schedule(global_batch_size=batch, schedule_multiplier=9)
    tail = paper_schedule(global_batch_size=batch, schedule_multiplier=9, start_at_batch_16=540_000)
    start = 540_000 * 16 // batch
    assert tail.total_steps == full.total_steps - start == 270_000 * 16 // batch
    assert tail.boundaries == tuple(b - start for b in full.boundaries) and tail.warmup_steps == 0
    for s in (0, 1, 1000, tail.boundaries[0] - 1, tail.boundaries[0], tail.boundaries[1], tail.total_steps - 1):
        np.testing.assert_allclose(_lr(tail, s), full.lr_at(start + s), rtol=1e-6, err_msg=f"step {s}")
    # The run before the switch is the head: the same LR up to 540k, where it ends.
    head = paper_schedule(global_batch_size=batch, schedule_multiplier=9, end_at_batch_16=540_000)
    assert (head.total_steps, head.boundaries, head.warmup_steps) == (start, (), full.warmup_steps)
    for s in (0, full.warmup_steps // 2, full.warmup_steps, start - 1):
        np.testing.assert_allclose(_lr(head, s), full.lr_at(s), rtol=1e-6, err_msg=f"step {s}")
    # A start past the first decay keeps only the later one.
    assert paper_schedule(global_batch_size=16, schedule_multiplier=9, start_at_batch_16=760_000).boundaries == (30_000,)


def test_tail_start_out_of_range_or_combined_names_the_binding():
    for start in (100, 810_000):
        with pytest.raises(ValueError, match="start_at_batch_16"):
            paper_schedule(global_batch_size=16, schedule_multiplier=9, start_at_batch_16=start)
    with pytest.raises(ValueError, match="start_at_batch_16"):
        paper_schedule(global_batch_size=16, total_steps=1000, start_at_batch_16=600)
    with pytest.raises(ValueError, match="end_at_batch_16"):
        paper_schedule(global_batch_size=16, schedule_multiplier=1, end_at_batch_16=90_001)
    with pytest.raises(ValueError, match="start_at_batch_16"):
        paper_schedule(global_batch_size=16, schedule_multiplier=9, start_at_batch_16=600_000, end_at_batch_16=540_000)
