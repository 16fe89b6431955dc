"""The reliability suite reuses the trainer toys of tests/training (fast, real Keras models)."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "training"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytest  # noqa: E402

STEPS = 16


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """An uninterrupted deterministic SamplingToy run of STEPS steps: (per-step losses, final weights)."""
    import reliability_toys as rtoys

    d = tmp_path_factory.mktemp("reference")
    rtoys.run_script(d, STEPS)
    losses = rtoys.read_losses(d)
    assert [s for s, _ in losses] == list(range(1, STEPS + 1))
    return dict(losses), rtoys.read_weights(d)
