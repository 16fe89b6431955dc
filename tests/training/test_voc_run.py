"""PASCAL VOC end to end on a tiny VOCdevkit: train (base/data_voc.gin, a very narrow Faster R-CNN, 2 steps)
and evaluate report the VOC metric in metrics.jsonl, TensorBoard and the evaluation report."""

import json
import os
import subprocess
import sys

import pytest

from tests.data.voc_util import write_tiny_devkit

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY_VOC_RUN = """
include 'base/data_voc.gin'
build_model.mask = False
build_dataset.train_short_side = (64, 64)
build_dataset.eval_short_side = 64
build_dataset.max_size = 64
build_dataset.canvas_size = 64
build_dataset.max_instances = 8
build_backbone.base_width = 8
build_backbone.blocks_per_stage = (1, 1, 1, 1)
build_fpn.num_channels = 16
build_rpn.anchor_sizes = (16, 32, 64, 128, 256)
conv_fc_box_head.num_convs = 1
conv_fc_box_head.conv_dim = 16
conv_fc_box_head.fc_dim = 32
build_rpn.batch_size_per_image = 64
build_rpn.pre_nms_topk_train = 100
build_rpn.post_nms_topk_train = 50
build_rpn.pre_nms_topk_test = 100
build_rpn.post_nms_topk_test = 50
roi_sampling.batch_size_per_image = 16
build_postprocessor.detections_per_image = 10
build_norm.gn_groups = 4
experiment.global_batch_size = 2
experiment.eval_batch_size = 2
experiment.images_to_draw = 0
paper_schedule.base_lr = 0.01
paper_schedule.total_steps = 2
paper_schedule.boundaries = (1,)
paper_schedule.warmup_steps_at_batch_16 = 1
paper_schedule.scale_warmup_with_batch = False
Trainer.checkpoint_every = 2
Trainer.eval_every = 2
"""


def _run(module, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_tiny_voc_run_reports_voc_map(tmp_path):
    from rethink_tf.training import summaries

    devkit = write_tiny_devkit(tmp_path / "VOCdevkit")
    gin_file = tmp_path / "tiny_voc.gin"
    gin_file.write_text(TINY_VOC_RUN)
    run = tmp_path / "run"
    _run("rethink_tf.train", f"--gin_file={gin_file}", f"--model_dir={run}", f"--gin_bindings=VOC_DIR = '{devkit}'")
    _run("rethink_tf.evaluate", f"--model_dir={run}")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and [r["step"] for r in records] == [2, 2]  # trainer's eval, then evaluate's
    for r in records:
        assert r["eval_source"] == "voc2012_val" and r["num_eval_images"] == 2 and "bbox" not in r
        assert set(r["voc"]) == {"mAP", "mAP_07"} and all(0 <= v <= 100 for v in r["voc"].values())
    assert records[0]["voc"] == records[1]["voc"]  # same checkpoint, same numbers
    assert [s for s, _ in summaries.read_scalars(str(run / "eval"))["voc/mAP"]] == [2, 2]
    report = (run / "coco_eval.txt").read_text()
    assert "VOC AP at IoU 0.5" in report and "tvmonitor" in report
    label_map = json.loads((run / "label_map.json").read_text())
    assert label_map["source"] == "voc2007_trainval+voc2012_train" and len(label_map["categories"]) == 20
