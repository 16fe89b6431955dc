"""Cascade Mask R-CNN against the plain model on a 2-image overfit (issue 9): bbox AP75 on coco128 images
142 and 623 at 256 px after 150 SGD steps, both arms from the same seed, averaged over seeds 0-3.

A single seed decides nothing (README.md, "Cascade Mask R-CNN and the switch": at 128 px the winner flips
with the seed), so the criteria are means over four seeds with margins about half the measured ones
(AP75, and as the localization evidence AP 0.50:0.95 and AP90). The runs use op determinism
(benchmarks/cascade_overfit.py --deterministic), and a run here repeated the sweep's figures exactly.
5 min 5 s measured on 2 cores at load average ~2 (21 min under heavy sharing), so it runs with
--run-slow (.ci/run does).
"""
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "coco128"
SEEDS = (0, 1, 2, 3)


@pytest.mark.slow
def test_cascade_ap75_beats_plain_on_two_image_overfit():
    if not DATA.is_dir():
        pytest.skip(f"real COCO data not found at {DATA}")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "cascade_overfit.py"), "--image_ids=142,623", "--size=256",
         "--steps=150", f"--seeds={','.join(map(str, SEEDS))}", "--deterministic"],
        capture_output=True, text=True, timeout=1800, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(proc.stdout)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    plain, cascade = summary["standard"]["per_seed"], summary["cascade"]["per_seed"]
    gaps = {metric: [cascade[str(s)][metric] - plain[str(s)][metric] for s in SEEDS]
            for metric in ("AP75", "AP", "AP90")}
    # Measured here (README table; one of the 8 instances moves AP75 by 12.5): AP75 gaps 0, 12.5, 25, 25
    # (mean 15.6; seeds 0-5: never negative, mean 12.5); AP (0.50:0.95) 10, 2.5, 26.2, 25 (mean 15.9; positive
    # in all six seeds); AP90 37.5, -12.5, 37.5, 37.5 (mean 25). The thresholds are about half of that, so
    # a machine whose float order turns one seed's outcome by an instance or two still passes, and a cascade
    # no better than the plain model passes all three only by a run of luck across four seeds.
    assert statistics.mean(gaps["AP75"]) >= 6.25, gaps
    assert statistics.mean(gaps["AP"]) >= 8.0, gaps
    assert statistics.mean(gaps["AP90"]) >= 12.5, gaps
