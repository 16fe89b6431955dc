"""rethink_tf.Detector: the Keras run directory and its SavedModel give the same detections on a real
COCO image, whatever form the image comes in; bad input is named."""
import gin
import numpy as np
import pytest
from PIL import Image

from rethink_tf import Detector, api
from rethink_tf.training import config
from rethink_tf.utils import visualize
from serving_fixtures import CATEGORIES, TINY_BINDINGS, coco_image_paths


@pytest.fixture(scope="module")
def keras_detector(tiny_run):
    try:
        return Detector.from_run_dir(tiny_run)
    finally:  # from_run_dir parses the run's config.gin; leave gin as the other fixtures expect it
        gin.clear_config()
        config.parse([], TINY_BINDINGS, finalize=False)


@pytest.fixture(scope="module")
def detectors(keras_detector, exported):
    """Both paths. Loading the SavedModel and its first call take ~30 s here: slow tests only."""
    return keras_detector, Detector.from_saved_model(exported)


@pytest.fixture(scope="module")
def coco_image():
    return coco_image_paths(1)[0]


def _mask_iou(a, b):
    union = np.logical_or(a, b).sum((1, 2))
    return np.logical_and(a, b).sum((1, 2)) / np.maximum(union, 1)


@pytest.mark.slow
def test_run_dir_and_saved_model_give_the_same_detections(detectors, coco_image):
    keras_detector, saved_detector = detectors
    assert keras_detector.categories == saved_detector.categories == CATEGORIES
    assert keras_detector.has_masks and saved_detector.has_masks
    ours, theirs = keras_detector.predict(coco_image), saved_detector.predict(coco_image)
    height, width = np.asarray(Image.open(coco_image)).shape[:2]
    assert ours.image_size == theirs.image_size == (height, width)
    assert len(ours) == len(theirs) > 10
    # Category ids and names of the dataset, not contiguous labels.
    assert set(ours.category_ids.tolist()) <= {c["id"] for c in CATEGORIES}
    names = {c["id"]: c["name"] for c in CATEGORIES}
    assert list(ours.category_names) == [names[i] for i in ours.category_ids.tolist()]
    np.testing.assert_array_equal(ours.category_ids, theirs.category_ids)
    assert ours.category_names == theirs.category_names
    np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-5)
    np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=1e-3)
    # xyxy in original pixels, inside the image.
    assert (ours.boxes[:, 2] >= ours.boxes[:, 0]).all() and (ours.boxes[:, 3] >= ours.boxes[:, 1]).all()
    assert ours.boxes[:, 2].max() <= width and ours.boxes[:, 3].max() <= height
    assert ours.boxes.max() > 0.3 * min(height, width), "boxes not in original-image pixels"
    # Full-image masks: the SavedModel's pasted masks, equal up to float rounding at the threshold.
    assert ours.masks.shape == theirs.masks.shape == (len(ours), height, width)
    assert ours.masks.dtype == np.bool_ and ours.masks.any(axis=(1, 2)).mean() > 0.5
    assert _mask_iou(ours.masks, theirs.masks).min() > 0.99
    assert ours.keypoints is None and theirs.keypoints is None


def test_path_bytes_array_and_tensor_give_the_same_result(keras_detector, coco_image):
    import tensorflow as tf
    with open(coco_image, "rb") as f:
        encoded = f.read()
    by_path, by_bytes = keras_detector.predict([coco_image, encoded])
    np.testing.assert_array_equal(by_bytes.boxes, by_path.boxes)
    np.testing.assert_array_equal(by_bytes.category_ids, by_path.category_ids)
    np.testing.assert_array_equal(by_bytes.masks, by_path.masks)
    # Every form goes through load_image to the same uint8 RGB array (predict = model(load_image)).
    pixels = api.load_image(coco_image)
    np.testing.assert_array_equal(pixels, np.asarray(Image.open(coco_image).convert("RGB")))
    np.testing.assert_array_equal(api.load_image(encoded), pixels)
    np.testing.assert_array_equal(api.load_image(tf.constant(pixels)), pixels)
    by_array = keras_detector.predict(pixels)
    np.testing.assert_array_equal(by_array.boxes, by_path.boxes)
    # Gray copied to R, G, B; alpha dropped.
    gray = pixels[..., 1]
    np.testing.assert_array_equal(api.load_image(gray), np.repeat(gray[..., None], 3, -1))
    np.testing.assert_array_equal(api.load_image(gray[..., None]), np.repeat(gray[..., None], 3, -1))
    rgba = np.concatenate([pixels, np.full(pixels.shape[:2] + (1,), 7, np.uint8)], -1)
    np.testing.assert_array_equal(api.load_image(rgba), pixels)


def test_draw_gives_a_picture_of_the_detections(keras_detector, coco_image):
    detections = keras_detector.predict(coco_image)
    shown = detections.above(0.4)
    assert 0 < len(shown) < len(detections) and (shown.scores >= 0.4).all()
    picture = keras_detector.draw(coco_image, detections, score_threshold=0.4)
    height, width = detections.image_size
    scale = visualize.drawing_scale((height, width))
    assert picture.shape == (round(height * scale), round(width * scale), 3)
    # The best detection's box outline is drawn in its category's color.
    color = np.asarray(visualize.color_for_class(detections.category_ids[0]), np.uint8)
    assert (picture == color).all(-1).sum() > 50
    with pytest.raises(ValueError, match="detections are for"):
        keras_detector.draw(np.zeros((100, 100, 3), np.uint8), detections)


def _check_bad_input_is_named(detector, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("hello")
    with pytest.raises(ValueError, match="notes.jpg: not an encoded image"):
        detector.predict(str(notes))
    with pytest.raises(FileNotFoundError, match="gone.png"):
        detector.predict(str(tmp_path / "gone.png"))
    with pytest.raises(ValueError, match="uint8"):
        detector.predict(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"image is 4x64 px"):
        detector.predict(np.zeros((4, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"images\[0\]"):
        detector.predict(np.zeros((2, 64, 64, 2), np.uint8))


def test_bad_input_is_named(keras_detector, tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_run"):
        Detector.from_run_dir(str(tmp_path / "no_such_run"))
    with pytest.raises(FileNotFoundError, match="no_such_export.*saved_model.pb"):
        Detector.from_saved_model(str(tmp_path / "no_such_export"))
    _check_bad_input_is_named(keras_detector, tmp_path)


@pytest.mark.slow
def test_bad_input_is_named_by_the_saved_model_path(detectors, tmp_path):
    _check_bad_input_is_named(detectors[1], tmp_path)


def test_readme_python_api_block_runs(keras_detector, tiny_run, coco_image, tmp_path, monkeypatch,
                                      capsys):
    """The README's "Python API" block, on the tiny run (from_run_dir itself is tested above: here it
    hands back the module's detector instead of rebuilding the same model)."""
    import os
    import re
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
    match = re.search(r"<!-- python-api-begin -->\s*```python\n(.*?)```\s*<!-- python-api-end -->",
                      open(readme).read(), re.S)
    assert match, "README.md lost its python-api block"
    block = match.group(1)
    for old, new in (("runs/quickstart", tiny_run), ("photo.jpg", coco_image),
                     ("photo_detections.png", str(tmp_path / "drawn.png"))):
        assert old in block, old
        block = block.replace(old, new)
    monkeypatch.setattr(Detector, "from_run_dir",
                        classmethod(lambda cls, path: keras_detector if path == tiny_run else None))
    exec(compile(block, "README.md python-api block", "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"^(person|dog|bottle) \d\.\d\d at \[", printed, re.M)
    assert Image.open(tmp_path / "drawn.png").size[1] >= visualize.DRAW_MIN_SIDE
