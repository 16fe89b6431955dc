"""benchmarks/compare_torchvision.py runs end to end at a tiny size and prints both frameworks' times."""
import importlib.util
import math
import os
import re
import subprocess
import sys

import pytest

# Looked up, not imported: torch's triton crashes a process that already holds TensorFlow (the script
# hides it itself; rethink_tf.interop.torchvision.import_torch).
if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
    pytest.skip("torch and torchvision are in the `interop` extra (pip install -e '.[interop]')",
                allow_module_level=True)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow  # two R50-FPN models, a SavedModel export and a train step each: ~2-3 min on 2 cores
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_compare_torchvision_prints_times_and_ratios(precision):
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "compare_torchvision.py"), "--size=64", "--batch=1",
         "--predict_sizes=64", "--rounds=2", "--steps=1", f"--precision={precision}"],
        env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    # Both compute in the precision asked for, as observed on their activations.
    assert f"compute dtype: ours' backbone features {precision}, torchvision's stem convolution {precision}" in out, out
    assert f"call(s), {precision} " in out, out
    # Both models detect (the confident class biases): the mask heads run as with a trained model.
    ours = re.search(r"ours: SavedModel at 64 .*; (\d+) detections", out)
    theirs = re.search(r"torchvision: (\d+) detections at 64", out)
    assert ours and theirs and int(ours.group(1)) > 0 and int(theirs.group(1)) > 0, out
    # Two rounds alternate the order: ours first, then torchvision first.
    rounds = re.findall(r"round (\d) (ours|torchvision) +train", out)
    assert rounds == [("1", "ours"), ("1", "torchvision"), ("2", "torchvision"), ("2", "ours")], out
    for task in ("train step, batch 1, 64x64", "predict per image, 64x64"):
        row = re.search(re.escape(task) + r" +([\d.]+) +([\d.]+) +([\d.]+)$", out, re.M)
        assert row, out
        ours_s, theirs_s, ratio = (float(v) for v in row.groups())
        assert ours_s > 0 and theirs_s > 0 and ratio == pytest.approx(ours_s / theirs_s, abs=0.01)
    # The train times are of finite steps (NaN boxes would change the work).
    losses = re.search(r"last step \(lr [^)]*\): ours (\S+), torchvision (\S+)$", out, re.M)
    assert losses and all(math.isfinite(float(v)) for v in losses.groups()), out
