"""`evaluate --tta` as users run it, on the suite's tiny trained run.

(Here rather than in tests/serving because this suite's conftest already trains that run once.)
The augmentation is one extra scale plus flips (4 variants) so the command stays short. `export --tta`
is checked in-process by tests/serving/test_export_tta.py (slow: saving the TTA graph takes minutes).
"""
import json
import os

import pytest

from reliability_helpers import run_module

TTA = ["--gin_bindings=TestTimeAugmentation.scales = (48,)",
       "--gin_bindings=TestTimeAugmentation.max_size = 96",
       "--gin_bindings=build_postprocessor.score_threshold = 0.0"]


@pytest.fixture(scope="module")
def tta_evaluation(trained_run):
    proc = run_module("rethink_tf.evaluate", f"--model_dir={trained_run}", "--tta", *TTA)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return trained_run, proc


def test_evaluate_tta_writes_its_own_results_beside_the_plain_ones(tta_evaluation):
    run, proc = tta_evaluation
    assert os.path.exists(os.path.join(run, "coco_results_tta_ckpt-1.json"))
    assert os.listdir(os.path.join(run, "eval_tta"))
    with open(os.path.join(run, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    tta_records = [r for r in records if r.get("tta")]
    assert tta_records, records
    assert tta_records[-1]["tta"]["scales"] == [48] and tta_records[-1]["tta"]["flip"] is True
    assert "bbox" in json.loads(proc.stdout[proc.stdout.index("{"):])

