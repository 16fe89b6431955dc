"""Issue 8.4: a run directory with a config.gin from another run is refused by name.

Fault: the config.gin of a run is replaced by one of another configuration (other anchor sizes, other
eval size) whose variables have the same shapes. Before, export and evaluate rebuilt the other model,
the checkpoint restored into it and they exited 0 (bbox AP 68.3 -> 55.6 on the same images); training
restarted on such a DIR resumed the other run's weights under the new configuration.
"""
import json
import os
import shutil

import pytest

from reliability_helpers import run_module, train_args

FOREIGN = {"build_rpn.anchor_sizes": "(32, 64, 128, 256, 512)", "build_dataset.eval_short_side": "48"}


@pytest.fixture()
def foreign_run(trained_run, tmp_path):
    """A copy of the run whose config.gin is that of another configuration."""
    run = str(tmp_path / "run")
    shutil.copytree(trained_run, run)
    with open(os.path.join(run, "config.gin")) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        key = line.split("=")[0].strip()
        if key in FOREIGN:
            lines[i] = f"{key} = {FOREIGN[key]}"
    with open(os.path.join(run, "config.gin"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return run


def test_the_run_records_what_it_was_trained_with(trained_run):
    from rethink_tf.training import run_record
    with open(os.path.join(trained_run, run_record.RECORD_FILE)) as f:
        recorded = json.load(f)
    fields = recorded["fields"]
    assert fields["build_rpn.anchor_sizes"] == [16, 32, 64, 128, 256]
    assert fields["model.anchor_sizes"] == [[16], [32], [64], [128], [256]]
    assert fields["inference.short_side"] == 64 and fields["build_model.num_classes"] == 3
    assert fields["build_norm.gn_groups"] == 4 and fields["model.detections_per_image"] == 10
    assert run_record.read_checkpoint(os.path.join(trained_run, "ckpt-1")) == recorded
    assert recorded["fingerprint"] == run_record.fingerprint(fields)
    # The resolved inference settings export and evaluate read (rethink_tf.serving.model_dir).
    with open(os.path.join(trained_run, "inference_config.json")) as f:
        inference = json.load(f)
    assert inference["preprocessing"]["short_side"] == 64
    assert inference["eval_pipeline"]["eval_short_side"] == 64
    assert inference["postprocessing"]["detections_per_image"] == 10
    assert inference["masks"] is True and inference["label_map"] == "label_map.json"


def _assert_refused(proc):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "build_rpn.anchor_sizes: run [16, 32, 64, 128, 256] vs config.gin [32, 64, 128, 256, 512]" \
        in proc.stderr, proc.stderr[-2000:]
    assert "inference.short_side: run 64 vs config.gin 48" in proc.stderr


def test_export_refuses_a_foreign_config(foreign_run, tmp_path):
    out = tmp_path / "exported"
    _assert_refused(run_module("rethink_tf.export", f"--model_dir={foreign_run}", f"--export_dir={out}"))
    assert not (out / "saved_model.pb").exists()


def test_evaluate_refuses_a_foreign_config(foreign_run):
    _assert_refused(run_module("rethink_tf.evaluate", f"--model_dir={foreign_run}"))
    assert not os.path.exists(os.path.join(foreign_run, "coco_results_ckpt-1.json"))


def test_train_refuses_to_resume_a_foreign_run_dir(foreign_run, data_dir):
    with open(os.path.join(foreign_run, "config.gin")) as f:
        before = f.read()
    proc = run_module("rethink_tf.train", *train_args(
        foreign_run, data_dir, "build_rpn.anchor_sizes = (32, 64, 128, 256, 512)"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert ("build_rpn.anchor_sizes: run [16, 32, 64, 128, 256] vs this configuration "
            "[32, 64, 128, 256, 512]") in proc.stderr, proc.stderr[-2000:]
    assert "ckpt-2.index" not in os.listdir(foreign_run)
    with open(os.path.join(foreign_run, "config.gin")) as f:
        assert f.read() == before  # nothing of DIR was overwritten


def test_the_run_itself_exports_with_overrides(trained_run, exported_run):
    # exported_run changes build_postprocessor.score_threshold through --gin_bindings: allowed, after the check.
    from rethink_tf.training import run_record
    with open(os.path.join(exported_run, "assets.extra", "export_config.json")) as f:
        exported = json.load(f)
    assert exported["run_fingerprint"] == run_record.read_file(trained_run)["fingerprint"]
    assert exported["gin_bindings"] == ["build_postprocessor.score_threshold = 0.0"]
