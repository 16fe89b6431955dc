"""A batch through a SavedModel exported with batch_images gives each image what a call with that image
alone gives.

Batches of two or more images run the model once per canvas on the images of that canvas (one
batched call) instead of once per image; a single image keeps its static-shape call. Both are the
same arithmetic up to float32 rounding (oneDNN blocks a batched convolution differently), so the
comparison allows 1e-4 px on boxes, 1e-5 on probabilities and 0.001 % of the pasted mask pixels (those
at the threshold); labels and counts must be equal.
"""
import os

import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.data import preprocess
from serving_fixtures import coco_image_paths


# An export of its own (~20 s idle, ~50 s on the loaded 2 cores) and first calls of two signatures.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loaded(tiny_model, tmp_path_factory):
    """The tiny model's SavedModel with batch_images, loaded."""
    from rethink_tf.serving import saved_model
    model, categories, inference = tiny_model
    module = saved_model.build_export_module(model, categories, inference, batch_images=True)
    assert module.config()["batch_images"]
    return tf.saved_model.load(saved_model.save(module, str(tmp_path_factory.mktemp("batched") / "export")))


@pytest.fixture(scope="module")
def coco_images():
    """{file name: uint8 [h, w, 3]} of the first 13 coco128 training images (landscape and portrait),
    shrunk 4x (the tiny model's canvas is 96x128: full-size pasted masks would only cost time)."""
    return {os.path.basename(p): preprocess.decode_image_bytes(tf.io.read_file(p)).numpy()[::4, ::4]
            for p in coco_image_paths(13)}


def numpy(outputs):
    return {k: v.numpy() for k, v in outputs.items()}


def assert_same_detections(batch, b, single, what):
    """Image b of the batch's outputs against the single-image call's outputs (batch of one)."""
    for key in ("detection_classes", "num_detections", "image_shape"):
        np.testing.assert_array_equal(batch[key][b], single[key][0], err_msg=f"{what}: {key}")
    num = int(single["num_detections"][0])
    assert num > 0, what
    np.testing.assert_allclose(batch["detection_boxes"][b], single["detection_boxes"][0], atol=1e-4,
                               err_msg=f"{what}: detection_boxes")
    for key in ("detection_scores", "detection_box_masks"):
        np.testing.assert_allclose(batch[key][b], single[key][0], atol=1e-5, err_msg=f"{what}: {key}")
    h, w = single["image_shape"][0]
    pasted = batch["detection_masks"][b]
    # A pixel whose mask probability sits within rounding of the threshold may flip: allow 0.001 %.
    flipped = int(np.sum(pasted[:, :h, :w] != single["detection_masks"][0]))
    assert flipped <= 1e-5 * pasted[:, :h, :w].size, f"{what}: {flipped} pasted mask pixels differ"
    assert not pasted[:, h:].any() and not pasted[:, :, w:].any(), what


def test_batch_of_equal_size_images_equals_one_by_one(loaded, coco_images):
    names = ["000000000009.jpg", "000000000025.jpg", "000000000030.jpg"]
    images = np.stack([coco_images[n][:100, :150] for n in names])  # three 100x150 crops
    serve = loaded.signatures["serving_default"]
    batch = numpy(serve(images=tf.constant(images)))
    assert batch["detection_masks"].shape == (3, 100, 100, 150)
    singles = [numpy(serve(images=tf.constant(image[None]))) for image in images]
    for b, single in enumerate(singles):
        assert_same_detections(batch, b, single, f"serving_default image {b}")
    # The images differ, so a mix-up of the batch order cannot pass.
    assert not np.array_equal(singles[0]["detection_boxes"], singles[1]["detection_boxes"])


def test_mixed_orientations_batch_per_canvas_and_keep_input_order(loaded, coco_images):
    """image_bytes of different sizes: portrait and landscape images interleaved go through their
    own canvas's batched call and come back in input order."""
    names = ["000000000036.jpg", "000000000009.jpg", "000000000072.jpg", "000000000025.jpg"]  # P L P L
    assert [preprocess.is_portrait(*coco_images[n].shape[:2]) for n in names] == [True, False] * 2
    encoded = {n: tf.io.encode_png(coco_images[n]).numpy() for n in names}
    serve = loaded.signatures["image_bytes"]
    batch = numpy(serve(image_bytes=tf.constant([encoded[n] for n in names])))
    for b, name in enumerate(names):
        single = numpy(serve(image_bytes=tf.constant([encoded[name]])))
        assert_same_detections(batch, b, single, f"image_bytes {name}")


def test_empty_batch_gives_empty_outputs(loaded):
    outputs = numpy(loaded.signatures["serving_default"](images=tf.zeros([0, 50, 60, 3], tf.uint8)))
    assert outputs["detection_boxes"].shape == (0, 100, 4)
    assert outputs["detection_masks"].shape == (0, 100, 0, 0)
    assert outputs["num_detections"].shape == (0,)
