"""TF Serving's REST request for the exported SavedModel: the body matches the signature (input name,
dtype, shape) and running the signature on the decoded body gives the response the server returns."""

import base64
import json

import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.serving import rest
from rethink_tf.utils.validate import InputError
from serving_fixtures import coco_image_paths


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported)


@pytest.fixture(scope="module")
def files():
    return [open(p, "rb").read() for p in coco_image_paths(2)]


def test_request_bodies_match_the_signatures(loaded, files):
    body = json.loads(json.dumps(rest.image_bytes_request(files)))  # what goes over the wire
    assert body["signature_name"] == "image_bytes" and list(body["instances"][0]) == ["b64"]
    signature = loaded.signatures[body["signature_name"]]
    # The signature's one input is what the body fills: its name, dtype and batch shape.
    (name, spec), = signature.structured_input_signature[1].items()
    assert (name, spec.dtype, spec.shape.as_list()) == ("image_bytes", tf.string, [None])
    inputs = rest.decode_request(body, signature)
    assert list(inputs) == ["image_bytes"] and inputs[name].dtype == tf.string and inputs[name].shape == (2,)
    assert inputs[name].numpy().tolist() == files

    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    body = rest.pixels_request([image])
    signature = loaded.signatures[body["signature_name"]]
    (name, spec), = signature.structured_input_signature[1].items()
    assert (name, spec.dtype, spec.shape.rank) == ("images", tf.uint8, 4)
    inputs = rest.decode_request(body, signature)
    assert inputs["images"].dtype == tf.uint8 and inputs["images"].shape == (1, 40, 56, 3)
    np.testing.assert_array_equal(inputs["images"][0], image)


@pytest.mark.slow
def test_response_is_the_signature_run_on_the_request(loaded, files):
    body = rest.image_bytes_request(files)
    signature = loaded.signatures["image_bytes"]
    response = json.loads(json.dumps(rest.predict_response(signature, body)))
    direct = {k: v.numpy() for k, v in signature(image_bytes=tf.constant(files)).items()}
    assert len(response["predictions"]) == 2
    for i, prediction in enumerate(response["predictions"]):
        assert set(prediction) == set(signature.structured_outputs)
        for key, value in direct.items():
            np.testing.assert_array_equal(np.asarray(prediction[key]), value[i], err_msg=key)
    # Masks are pasted at the largest image size of the request; each image's own size is image_shape.
    shapes = [p["image_shape"] for p in response["predictions"]]
    assert shapes == [list(tf.io.decode_jpeg(f).shape[:2]) for f in files]
    assert np.asarray(response["predictions"][0]["detection_masks"]).shape[1:] == tuple(np.max(shapes, 0))


def test_bad_bodies_are_named(loaded):
    signature = loaded.signatures["image_bytes"]
    with pytest.raises(InputError, match="b64"):
        rest.decode_request({"instances": ["not base64-wrapped"]}, signature)
    with pytest.raises(InputError, match="'image_bytes'"):
        rest.decode_request({"instances": [{"images": [1, 2]}]}, signature)
    with pytest.raises(InputError, match="instances"):
        rest.decode_request({"inputs": []}, signature)
    with pytest.raises(InputError, match="invalid base64"):
        rest.decode_request({"instances": [{"b64": "***"}]}, signature)
    with pytest.raises(InputError, match="expects shape"):
        rest.decode_request({"instances": [[1, 2, 3]]}, loaded.signatures["serving_default"])
    assert rest.predict_url("quickstart") == "http://localhost:8501/v1/models/quickstart:predict"
    assert base64.b64decode(rest.image_bytes_request([b"\x89PNG"])["instances"][0]["b64"]) == b"\x89PNG"
