"""A keypoint model's SavedModel outputs detection_keypoints [B, D, 17, 3] as the Keras model computes
them (original pixels), and `Detector` returns and draws them."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.data import preprocess

PERSON = [{"id": 1, "name": "person"}]


@pytest.mark.slow  # SavedModel tracing and saving of a second model: ~1-2 min on the loaded 2 cores
def test_saved_model_outputs_keypoints_like_keras(tiny_model, tmp_path):
    from rethink_tf import api
    from rethink_tf.modeling.factory import build_model_from_bindings
    from rethink_tf.serving import saved_model
    _, _, inference = tiny_model  # the serving tests' parsed configuration and preprocessing
    # Seeded: with unseeded random weights a keypoint heatmap's two top cells could tie within float
    # round-off in some runs and the argmax flip between Keras and the SavedModel (seen once: 11 px).
    keras.utils.set_random_seed(0)
    model = build_model_from_bindings(1, {"build_keypoint_branch.num_convs": 1,
                                          "build_keypoint_branch.conv_dim": 16}, mask=False, keypoints=True)
    model.build_networks()
    module = saved_model.build_export_module(model, PERSON, inference)
    assert "detection_keypoints" in module.config()["outputs"]
    export_dir = saved_model.save(module, str(tmp_path / "export"))

    image = np.random.default_rng(0).integers(0, 256, (70, 100, 3)).astype(np.uint8)
    loaded = tf.saved_model.load(export_dir)
    served = {k: v.numpy()[0] for k, v in loaded.signatures["serving_default"](images=tf.constant(image[None])).items()}
    canvas, info = preprocess.resize_and_pad(image, inference.short_side, inference.max_size,
                                             inference.landscape_canvas)
    canvas = preprocess.normalize_image(canvas, inference.pixel_mean, inference.pixel_std, image_info=info)
    keras_out = {k: v.numpy()[0] for k, v in model({"images": canvas[None], "image_info": info[None]},
                                                   training=False).items()}
    num = int(keras_out["num_detections"])
    assert num > 0 and int(served["num_detections"]) == num
    assert served["detection_keypoints"].shape == (keras_out["detection_boxes"].shape[0], 17, 3)
    np.testing.assert_allclose(served["detection_keypoints"][:num], keras_out["detection_keypoints"][:num],
                               atol=0.05)
    assert np.all(served["detection_keypoints"][num:] == 0)

    detector = api.Detector.from_saved_model(export_dir)
    assert detector.has_keypoints
    detections = detector.predict(image)
    assert detections.keypoints.shape == (len(detections), 17, 3)
    drawn = detector.draw(image, detections, score_threshold=0.0)
    assert drawn.dtype == np.uint8 and drawn.ndim == 3
