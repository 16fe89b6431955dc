"""TF Serving's REST API for the exported SavedModel: request bodies, and the response run locally.

TensorFlow Serving (`tensorflow_model_server --rest_api_port=8501 --model_name=NAME
--model_base_path=/models/NAME`, the SavedModel in /models/NAME/1/) answers
`POST http://HOST:8501/v1/models/NAME:predict` with JSON bodies in the "row" format:

    {"signature_name": "image_bytes", "instances": [{"b64": "<base64 of a JPEG / PNG file>"}, ...]}
    -> {"predictions": [{"detection_boxes": [[y0, x0, y1, x1], ...], "detection_scores": [...],
                         "detection_classes": [...], "num_detections": n, "image_shape": [h, w],
                         "detection_masks": [...], "detection_box_masks": [...]}, ...]}

one prediction per instance, each output without its batch dimension. Binary strings travel as
{"b64": ...} objects; numbers as JSON numbers. `image_bytes` takes files of any sizes in one request;
`serving_default` takes uint8 pixel arrays [H, W, 3], all of one size within a request.

Without a model server, `decode_request` reads a body the way the server does (checking it against the
signature's input names, dtypes and shapes) and `predict_response` runs the signature on it and returns
the JSON TF Serving would send.
"""

from __future__ import annotations

import base64

import numpy as np
import tensorflow as tf

from rethink_tf.utils.validate import InputError


def predict_url(model_name: str, host: str = "localhost", port: int = 8501, version: int | None = None) -> str:
    """The predict endpoint of TF Serving's REST API for `model_name` (optionally one version)."""
    path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version is not None else "")
    return f"http://{host}:{port}{path}:predict"


def image_bytes_request(encoded_images, signature_name: str = "image_bytes") -> dict:
    """The request body (a JSON-able dict) that sends encoded image files (bytes each) to the
    `image_bytes` signature, one instance per image."""
    instances = []
    for i, data in enumerate(encoded_images):
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise InputError(f"image_bytes_request: image {i} is not non-empty bytes (got {type(data).__name__})")
        instances.append({"b64": base64.b64encode(bytes(data)).decode("ascii")})
    return {"signature_name": signature_name, "instances": instances}


def pixels_request(images, signature_name: str = "serving_default") -> dict:
    """The request body that sends uint8 RGB arrays [H, W, 3] (all of one size) to `serving_default`."""
    arrays = [np.asarray(image) for image in images]
    if any(a.dtype != np.uint8 or a.ndim != 3 for a in arrays) or len({a.shape for a in arrays}) > 1:
        raise InputError("pixels_request: the images must be uint8 [H, W, C] arrays of one size "
                         f"(got {[(a.dtype.name, a.shape) for a in arrays]})")
    return {"signature_name": signature_name, "instances": [a.tolist() for a in arrays]}


def _signature_input(signature):
    """(name, tf.TensorSpec) of a one-input signature (a ConcreteFunction of a loaded SavedModel)."""
    specs = signature.structured_input_signature[1]
    if len(specs) != 1:
        raise InputError(f"expected a signature with one input, got inputs {sorted(specs)}")
    (name, spec), = specs.items()
    return name, spec


def _decode_value(value, dtype: tf.DType, where: str):
    if dtype == tf.string:
        if not (isinstance(value, dict) and set(value) == {"b64"}):
            raise InputError(f"{where}: a string input travels as {{\"b64\": ...}}, got {str(value)[:60]!r}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError) as e:
            raise InputError(f"{where}: invalid base64 ({e})") from e
    return value


def decode_request(body: dict, signature) -> dict[str, tf.Tensor]:
    """The signature's input tensors from a row-format request body, as TF Serving builds them.

    Checks the body's signature name is given, that each instance matches the input's dtype (strings as
    {"b64"}) and that the batch matches the input's shape. Raises InputError naming the field.
    """
    if not isinstance(body, dict) or "instances" not in body:
        raise InputError("request body: expected a JSON object with \"instances\" (TF Serving's row format)")
    name, spec = _signature_input(signature)
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise InputError(f"request body: \"instances\" must be a non-empty list, got {str(instances)[:60]}")
    instances = list(instances)
    for i, instance in enumerate(instances):
        if isinstance(instance, dict) and "b64" not in instance:  # named-input form {"<input name>": value}
            if set(instance) != {name}:
                raise InputError(f"request body: instances[{i}] names inputs {sorted(instance)}, the "
                                 f"signature's input is {name!r}")
            instances[i] = instance[name]
    values = [_decode_value(v, spec.dtype, f"instances[{i}]") for i, v in enumerate(instances)]
    try:
        tensor = tf.constant(np.asarray(values, dtype=object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype))
    except (ValueError, TypeError, OverflowError) as e:
        raise InputError(f"request body: instances do not form a {spec.dtype.name} batch for input {name!r} "
                         f"of shape {spec.shape} ({e})") from e
    if not spec.shape.is_compatible_with(tensor.shape):
        raise InputError(f"request body: input {name!r} expects shape {spec.shape}, the instances form "
                         f"{tensor.shape}")
    return {name: tensor}


def _json_value(array: np.ndarray):
    if array.dtype.kind in ("S", "O"):
        return [_json_value(a) for a in array] if array.ndim else {"b64": base64.b64encode(array.item()).decode()}
    return array.tolist()


def predict_response(signature, body: dict) -> dict:
    """Runs `signature` on a request body and returns the row-format response TF Serving returns:
    {"predictions": [{output name: value of that instance}, ...]}."""
    outputs = {k: v.numpy() for k, v in signature(**decode_request(body, signature)).items()}
    batch = len(body["instances"])
    return {"predictions": [{k: _json_value(v[i]) for k, v in sorted(outputs.items())} for i in range(batch)]}
