"""`python -m rethink_tf.import_weights --source=torchvision --arch=maskrcnn_resnet50_fpn|fasterrcnn_resnet50_fpn`
writes a model directory that `rethink_tf.serving.model_dir.load_model` (what `rethink_tf.export` uses)
restores, with torchvision's conventions, the COCO label map and the state dict's values. (Slow: full-size
models; the export of such a directory was run by hand: `python -m rethink_tf.export --model_dir=DIR
--export_dir=DIR/saved_model`, 97 s under load.)"""
import json

import numpy as np
import pytest

from tests.interop.test_import_cli import _run

torch = pytest.importorskip("torch", reason="torch is in the `interop` extra (pip install -e '.[interop]')")
torchvision = pytest.importorskip("torchvision", reason="torchvision is in the `interop` extra")


@pytest.mark.slow
def test_maskrcnn_state_dict_becomes_a_model_directory(tmp_path):
    from rethink_tf import import_weights
    from rethink_tf.serving import model_dir
    torch.manual_seed(0)
    tv = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    torch.save(tv.state_dict(), tmp_path / "mrcnn.pth")
    out = tmp_path / "run"
    report = import_weights.import_detector("maskrcnn_resnet50_fpn", str(tmp_path / "mrcnn.pth"), str(out))
    assert not report.missing and all(k.endswith("num_batches_tracked") for k in report.unused)

    model, categories, pre, _ = model_dir.load_model(str(out))
    assert len(categories) == 90 and categories[0] == {"id": 1, "name": "person"}
    assert categories[11] == {"id": 12, "name": "N/A"} and categories[89] == {"id": 90, "name": "toothbrush"}
    assert (pre.short_side, pre.max_size, pre.pixel_std) == (800, 1333, (58.395, 57.12, 57.375))
    assert model.rpn.round_anchors and model.postprocessor.mask_paste == "torchvision" and model.has_masks
    assert model.roi_heads.box_stage.pooler.level_mapping == "torchvision"
    fc7 = tv.state_dict()["roi_heads.box_head.fc7.weight"].numpy()
    np.testing.assert_array_equal(np.asarray(model.roi_heads.box_stage.head.fcs[1].kernel), fc7.T)
    logits = tv.state_dict()["roi_heads.mask_predictor.mask_fcn_logits.bias"].numpy()
    np.testing.assert_array_equal(np.asarray(model.roi_heads.branches["mask"].head.predictor.bias), logits[1:])
    record = json.loads((out / "inference_config.json").read_text())
    assert record["masks"] is True and record["postprocessing"]["score_threshold"] == 0.05

    faster = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    torch.save(faster.state_dict(), tmp_path / "frcnn.pth")
    report = import_weights.import_detector("fasterrcnn_resnet50_fpn", str(tmp_path / "frcnn.pth"),
                                            str(tmp_path / "faster"))
    assert not report.missing
    model, categories, _, _ = model_dir.load_model(str(tmp_path / "faster"))
    assert not model.has_masks and len(categories) == 90
    np.testing.assert_array_equal(np.asarray(model.roi_heads.box_stage.predictor.cls.bias),
                                  faster.state_dict()["roi_heads.box_predictor.cls_score.bias"].numpy())


@pytest.mark.slow
def test_cli_fasterrcnn_names_the_tensor_that_does_not_fit(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    state["rpn.head.cls_logits.weight"] = state["rpn.head.cls_logits.weight"][:2]
    torch.save(state, tmp_path / "bad.pth")
    done = _run("--source=torchvision", "--arch=fasterrcnn_resnet50_fpn", f"--input={tmp_path / 'bad.pth'}",
                f"--output={tmp_path / 'run'}")
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "'rpn.head.cls_logits.weight'" in lines[0], done.stderr[-2000:]
    done = _run("--source=keras", "--arch=fasterrcnn_resnet50_fpn", f"--input={tmp_path / 'bad.pth'}",
                f"--output={tmp_path / 'run'}")
    assert done.returncode == 2 and "use --source=torchvision" in done.stderr
