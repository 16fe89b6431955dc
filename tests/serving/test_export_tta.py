"""The SavedModel's serving_tta signature (export --tta) against the in-process TTADetector."""
import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.modeling import tta
from rethink_tf.serving import saved_model
from serving_fixtures import CATEGORIES


@pytest.mark.slow
def test_serving_tta_matches_the_detector_and_keeps_the_plain_signatures(tiny_model, tmp_path):
    model, categories, inference = tiny_model
    augmentation = tta.TestTimeAugmentation(scales=(), flip=True)  # 2 variants: a small graph to save
    module = saved_model.build_export_module(model, categories, inference, tta=augmentation)
    assert module.config()["tta"] == augmentation.config()
    export_dir = saved_model.save(module, str(tmp_path / "export"))
    loaded = tf.saved_model.load(export_dir)
    assert set(loaded.signatures) == {"serving_default", "image_bytes", "tf_example", "serving_tta"}

    rng = np.random.default_rng(0)
    landscape = rng.integers(0, 256, (60, 90, 3)).astype(np.uint8)
    portrait = np.ascontiguousarray(landscape.transpose(1, 0, 2))[:, :50]
    detector = tta.TTADetector(model, augmentation, inference)
    ids = np.array([0] + [c["id"] for c in CATEGORIES])
    for image in (landscape, portrait):
        served = {k: v.numpy()[0] for k, v in loaded.signatures["serving_tta"](images=tf.constant(image[None])).items()}
        expected = {k: v.numpy()[0] for k, v in detector.detect(image).items()}
        num = int(expected["num_detections"])
        assert num > 0 and int(served["num_detections"]) == num
        np.testing.assert_array_equal(served["detection_classes"][:num], ids[expected["detection_classes"][:num]])
        np.testing.assert_allclose(served["detection_scores"], expected["detection_scores"], atol=1e-5)
        np.testing.assert_allclose(served["detection_boxes"], expected["detection_boxes"], atol=1e-3)
        np.testing.assert_allclose(served["detection_box_masks"], expected["detection_masks"], atol=1e-4)
        assert served["detection_masks"].shape[1:] == image.shape[:2]
        assert list(served["image_shape"]) == list(image.shape[:2])
