"""benchmarks/train_step.py counts the RoI branches at the slot count the timed mode runs: graph mode
runs the mask head on as many RoIs as the most-foreground image needs, not on all max_fg slots, and
the roofline must not credit the step with the work it skipped."""
import sys
import tempfile
from pathlib import Path

import pytest
import tensorflow as tf

from rethink_tf.training.trainer import Trainer
from tests.modeling.conftest import synthetic_batch, tiny_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import train_step  # noqa: E402


@pytest.fixture(scope="module")
def trainer_and_batch():
    batch = {k: tf.constant(v) for k, v in synthetic_batch(batch_size=2, size=64).items()}
    trainer, _ = Trainer.on_fixed_batch(tempfile.mkdtemp(prefix="flops_"), lambda: tiny_model(num_classes=3),
                                        batch, base_lr=0.02)
    return trainer, batch


def test_graph_mode_count_drops_exactly_the_skipped_mask_slots(trainer_and_batch):
    trainer, batch = trainer_and_batch
    branch = trainer.model.roi_heads.branches["mask"]
    max_fg = branch.max_fg  # ceil(64 RoIs x 0.25) = 16
    slots = train_step.branch_slots(trainer.model, batch)
    used = slots[branch.name]
    assert max_fg == 16 and 1 <= used < max_fg, slots

    flops = train_step.FlopModel(trainer, batch)
    direct, unknown = train_step._traced_gflop(trainer, batch, slots)
    assert unknown == [] and branch.max_fg == max_fg  # the branch is left as it was
    assert flops(slots) == pytest.approx(direct, rel=1e-9)  # linear in the slots, as FlopModel assumes
    assert flops() == flops.full

    # The tiny mask head on one 14x14 RoI of the 16-channel FPN: two 3x3 convs of width 8, a 2x2
    # stride-2 deconv, a 1x1 predictor for 3 classes at 28x28; forward, input and kernel gradients.
    forward = 2 * (14 * 14 * 8 * 9 * 16 + 14 * 14 * 8 * 9 * 8 + 14 * 14 * 8 * 4 * 8 + 28 * 28 * 3 * 8)
    # Each conv's GroupNorm (8 channels, 8 groups) maps per-channel statistics to groups and back with
    # two [1, 8] x [8, 8] matmuls, twice forward (mean, variance) and twice backward.
    group_norm = 2 * 4 * 2 * (2 * 8 * 8)
    skipped = 2 * (max_fg - used)  # images x slots graph mode does not run
    assert (flops.full - direct) * 1e9 == pytest.approx((3 * forward + group_norm) * skipped, rel=1e-9)
