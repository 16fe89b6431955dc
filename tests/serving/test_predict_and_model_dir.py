"""predict.py on the SavedModel; rebuilding a run from its directory; clear errors on bad input."""
import json
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools import mask as mask_util

from rethink_tf.utils.visualize import drawing_scale
from serving_fixtures import CATEGORIES, coco_image_paths, write_run


def test_predict_writes_pictures_and_coco_json(exported, tmp_path):
    from rethink_tf import predict
    path = exported
    images = coco_image_paths(2)
    out = tmp_path / "vis"
    predictor = predict.Predictor(path)
    results = predict.predict_files(predictor, images, str(out), min_score=0.2)
    ids = {c["id"] for c in CATEGORIES}
    for image_path in images:
        stem = os.path.splitext(os.path.basename(image_path))[0]
        original = np.asarray(Image.open(image_path).convert("RGB"))
        drawn = np.asarray(Image.open(out / f"{stem}.png"))
        # Drawn enlarged (shorter side < DRAW_MIN_SIDE): compare with the image enlarged the same way.
        scale = drawing_scale(original.shape[:2])
        size = (round(original.shape[1] * scale), round(original.shape[0] * scale))
        assert drawn.shape == (size[1], size[0], 3)
        enlarged = np.asarray(Image.fromarray(original).resize(size, Image.BILINEAR))
        assert np.abs(drawn.astype(int) - enlarged.astype(int)).max() > 100, "nothing drawn"
        with open(out / f"{stem}.json") as f:
            dets = json.load(f)
        assert dets and all(d["image_id"] == int(stem) for d in dets)
        h, w = original.shape[:2]
        for d in dets:
            x, y, bw, bh = d["bbox"]
            assert d["category_id"] in ids and 0 <= d["score"] <= 1
            assert 0 <= x and 0 <= y and x + bw <= w + 0.01 and y + bh <= h + 0.01
            assert list(mask_util.decode(d["segmentation"]).shape) == [h, w]
    with open(out / "detections.json") as f:
        assert json.load(f) == results
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("hello")
    with pytest.raises(ValueError, match="notes.jpg"):
        predict.predict_files(predictor, [str(not_an_image)], str(out))


def test_predict_image_ids():
    from rethink_tf.predict import image_id_for
    assert image_id_for("/a/000000000139.jpg", 5) == 139
    assert image_id_for("/a/cat.png", 5) == 5


def test_missing_pieces_of_a_run_are_named(tmp_path):
    from rethink_tf import export
    from rethink_tf.serving import model_dir as model_dir_lib
    run = str(tmp_path / "run")
    os.makedirs(run)
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        export.export(run, str(tmp_path / "out"))
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "saved_model.pb").write_bytes(b"")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export.export(run, str(existing))
    with pytest.raises(FileNotFoundError, match="ckpt-3"):
        model_dir_lib.resolve_checkpoint(run, os.path.join(run, "ckpt-3"))
    with pytest.raises(FileNotFoundError, match="label_map.json"):
        model_dir_lib.read_label_map(run)
    with pytest.raises(FileNotFoundError, match="config.gin"):
        model_dir_lib.parse_config(run)
    with open(os.path.join(run, "label_map.json"), "w") as f:
        json.dump({"categories": []}, f)
    with pytest.raises(ValueError, match="label_map.json"):
        model_dir_lib.read_label_map(run)


def test_unknown_gin_binding_in_config_is_an_error(tmp_path):
    from rethink_tf.serving import model_dir as model_dir_lib
    from rethink_tf.training.config import ConfigError
    run = str(tmp_path / "run")
    write_run(run)
    with open(os.path.join(run, "config.gin"), "a") as f:
        f.write("build_model.not_a_parameter = 3\n")
    try:
        with pytest.raises(ConfigError, match="not_a_parameter"):
            model_dir_lib.parse_config(run)
    finally:
        gin.clear_config()


def test_inference_config_follows_eval_scope_then_defaults():
    from rethink_tf.serving import model_dir as model_dir_lib
    from rethink_tf.training import config
    try:
        gin.clear_config()
        config.parse([], ["eval/build_dataset.eval_short_side = 512",
                          "train/build_dataset.eval_short_side = 300",
                          "build_dataset.max_size = 600", "build_dataset.divide_by_std = True"],
                     finalize=False)
        got = model_dir_lib.inference_config()
        assert (got.short_side, got.max_size) == (512, 600)
        assert (got.landscape_canvas, got.portrait_canvas) == ((512, 608), (608, 512))
        assert got.pixel_std is not None
        gin.clear_config()
        got = model_dir_lib.inference_config()
        assert (got.short_side, got.max_size, got.pixel_std) == (800, 1333, None)
        assert (got.landscape_canvas, got.portrait_canvas) == ((800, 1344), (1344, 800))
        config.parse([], ["build_dataset.aspect_grouping = False"], finalize=False)
        got = model_dir_lib.inference_config()
        assert (got.landscape_canvas, got.portrait_canvas) == ((1344, 1344), (1344, 1344))
    finally:
        gin.clear_config()


def test_model_restored_from_trainer_checkpoint_equals_trained_model(tiny_model, tmp_path):
    from rethink_tf.serving import model_dir as model_dir_lib
    model, _, _ = tiny_model
    run = str(tmp_path / "run")
    checkpoint = write_run(run, model)
    try:
        restored, categories, inference, path = model_dir_lib.load_model(run)
    finally:
        gin.clear_config()
    assert path == checkpoint and categories == CATEGORIES and inference.landscape_canvas == (96, 128)
    original = {v.path: v.numpy() for v in model.variables}
    assert len(restored.variables) == len(original)
    for v in restored.variables:
        np.testing.assert_array_equal(v.numpy(), original[v.path], err_msg=v.path)


def test_checkpoint_of_another_configuration_is_refused(tiny_model, tmp_path):
    from rethink_tf.serving import model_dir as model_dir_lib
    model, _, _ = tiny_model
    run = str(tmp_path / "run")
    write_run(run, model)
    try:  # a wider FPN than the checkpointed one
        with pytest.raises(model_dir_lib.IncompleteCheckpointError, match="fpn"):
            model_dir_lib.load_model(run, extra_bindings=["build_fpn.num_channels = 64"])
    finally:
        gin.clear_config()


def test_inference_config_file_is_read_instead_of_gin(tmp_path):
    """DIR/inference_config.json, written at train time, is what export and evaluate use later, even
    when the gin configuration parsed then says otherwise; older DIRs fall back to config.gin."""
    from rethink_tf.modeling.factory import build_model
    from rethink_tf.serving import model_dir as model_dir_lib
    from rethink_tf.training import config
    from rethink_tf.utils.validate import InputError
    run = str(tmp_path)
    try:
        gin.clear_config()
        config.parse([], ["eval/build_dataset.eval_short_side = 96", "build_dataset.max_size = 160",
                          "build_postprocessor.detections_per_image = 7"], finalize=False)
        model_dir_lib.write_inference_config(run, build_model(num_classes=2, mask=False))
        gin.clear_config()
        config.parse([], ["eval/build_dataset.eval_short_side = 512"], finalize=False)
        got = model_dir_lib.preprocessing_config(run)
        assert (got.short_side, got.max_size) == (96, 160)
        assert (got.landscape_canvas, got.portrait_canvas) == ((96, 160), (160, 96))
        record = model_dir_lib.read_inference_config(run)
        assert record["postprocessing"]["detections_per_image"] == 7 and record["masks"] is False
        assert model_dir_lib.mask_threshold(run) == 0.5
        gin.clear_config()
        config.parse([], model_dir_lib.eval_pipeline_bindings(run), finalize=False)
        assert gin.query_parameter("eval/build_dataset.eval_short_side") == 96
        assert gin.query_parameter("eval/build_dataset.max_size") == 160
        # A DIR written before the file existed: derived from the parsed configuration.
        older = str(tmp_path / "older")
        os.makedirs(older)
        assert model_dir_lib.preprocessing_config(older) == model_dir_lib.inference_config()
        assert model_dir_lib.eval_pipeline_bindings(older) == []
        with open(os.path.join(run, "inference_config.json"), "w") as f:
            json.dump({"version": 1}, f)
        with pytest.raises(InputError, match="inference_config.json: field 'preprocessing'"):
            model_dir_lib.preprocessing_config(run)
    finally:
        gin.clear_config()
