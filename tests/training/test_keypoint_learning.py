"""gin_configs/keypoints_coco_mini_overfit.gin learns person keypoints on real COCO annotations: the COCO
keypoint AP on its 8 training images rises clearly from the first evaluation (step 50) to the last (step
200). A whole training run (about 2-3 minutes on 2 cores), so it runs with --run-slow."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "coco_mini"


@pytest.mark.slow
def test_keypoint_ap_rises_on_coco_mini_persons(tmp_path):
    if not DATA.is_dir():
        pytest.skip(f"real COCO data not found at {DATA}")
    model_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "rethink_tf.train", "--gin_file=gin_configs/keypoints_coco_mini_overfit.gin",
         f"--model_dir={model_dir}"],
        capture_output=True, text=True, timeout=1200, cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == [50, 100, 150, 200], steps
    ap = [r["keypoints"]["AP"] for r in records]
    print("keypoint AP by step:", dict(zip(steps, ap)))
    assert set(records[-1]["keypoints"]) == {"AP", "AP50", "AP75", "APm", "APl"}
    # AP in percent. A model that puts each box's mean pose scores 0 on these images (OKS < 0.5 for
    # every person), so any keypoint AP comes from the heatmaps.
    assert ap[-1] >= ap[0] + 25.0, ap
    assert ap[-1] >= 40.0, ap
    results = json.loads((model_dir / "coco_results.json").read_text())
    assert results and all(len(r["keypoints"]) == 51 for r in results)
