"""gin_configs/keypoints_coco_mini_overfit.gin learns person keypoints on real COCO annotations: the COCO
keypoint AP on its 8 training images rises clearly from the first evaluation (step 50) to the last (step
200). A whole training run (about 2-3 minutes on 2 cores), so it runs with --run-slow."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    # AP in percent; for scale, the training set's mean pose placed in every ground-truth box.
    (ids_file,) = model_dir.glob("image_ids_*.json")  # the 8 images (train and eval share the subset)
    baseline = mean_pose_ap(json.loads(ids_file.read_text()))
    print("mean pose in the ground-truth boxes: keypoint AP", baseline)
    assert ap[-1] >= ap[0] + 25.0, ap
    assert ap[-1] >= 40.0 and ap[-1] >= baseline + 30.0, (ap, baseline)
    results = json.loads((model_dir / "coco_results.json").read_text())
    assert results and all(len(r["keypoints"]) == 51 for r in results)


def mean_pose_ap(ids_record):
    """Keypoint AP (percent) of the train json's mean pose (keypoints relative to the box, over labeled
    points) put in each ground-truth box of the evaluated images, score 1."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(DATA / "annotations" / "person_keypoints_train2017.json"))
    relative = []
    for a in gt.dataset["annotations"]:
        if a["num_keypoints"] and not a["iscrowd"]:
            x, y, w, h = a["bbox"]
            k = np.asarray(a["keypoints"], float).reshape(17, 3)
            relative.append(np.where(k[:, 2:] > 0, (k[:, :2] - [x, y]) / [w, h], np.nan))
    mean = np.nanmean(np.stack(relative), axis=0)
    ids = ids_record["image_ids"]
    results = []
    for a in gt.loadAnns(gt.getAnnIds(imgIds=ids)):
        x, y, w, h = a["bbox"]
        points = mean * [w, h] + [x, y]
        results.append({"image_id": a["image_id"], "category_id": 1, "score": 1.0,
                        "keypoints": [float(v) for p in points for v in (p[0], p[1], 1.0)]})
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(results), "keypoints")
        evaluator.params.imgIds = ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0]) * 100.0
