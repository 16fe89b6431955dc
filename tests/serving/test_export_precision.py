"""`export --mixed_precision=mixed_bfloat16`: the SavedModel computes in bfloat16 with the same signature
(float32 boxes, scores and masks), the process's dtype policy is left as it was, and a bad value is
refused naming the flag."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from rethink_tf.utils import validate
from serving_fixtures import export_run


def _dtypes_in_functions(path):
    """Every dtype attribute value in the SavedModel's function library (DataType enum ints)."""
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    found = set()
    for function in proto.meta_graphs[0].graph_def.library.function:
        for node in function.node_def:
            for value in node.attr.values():
                if value.type:
                    found.add(value.type)
    return found


@pytest.fixture(scope="module")
def bf16_export(tiny_run, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("export_bf16") / "saved_model")
    before = keras.mixed_precision.global_policy().name
    export_run(tiny_run, path, mixed_precision="mixed_bfloat16")
    assert keras.mixed_precision.global_policy().name == before  # restored after the export
    return path


def test_bfloat16_export_computes_in_bfloat16_with_the_float32_signature(bf16_export, exported):
    assert tf.bfloat16.as_datatype_enum in _dtypes_in_functions(bf16_export)
    assert tf.bfloat16.as_datatype_enum not in _dtypes_in_functions(exported)
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (1, 96, 128, 3), np.uint8))
    ours = tf.saved_model.load(bf16_export).signatures["serving_default"](images=image)
    reference = tf.saved_model.load(exported).signatures["serving_default"](images=image)
    assert {k: v.dtype for k, v in ours.items()} == {k: v.dtype for k, v in reference.items()}
    assert {k: v.shape[2:] for k, v in ours.items()} == {k: v.shape[2:] for k, v in reference.items()}
    with open(os.path.join(bf16_export, "assets.extra", "export_config.json")) as f:
        assert json.load(f)["mixed_precision"] == "mixed_bfloat16"


def test_an_unknown_precision_is_refused_naming_the_flag(tiny_run, tmp_path):
    with pytest.raises(validate.ConfigError, match="--mixed_precision"):
        export_run(tiny_run, str(tmp_path / "out"), mixed_precision="mixed_float16")
    assert not os.path.exists(tmp_path / "out")


def test_inference_policy_restores_the_previous_policy_on_error():
    from rethink_tf.utils import precision
    before = keras.mixed_precision.global_policy().name
    with pytest.raises(RuntimeError):
        with precision.inference_policy("mixed_bfloat16"):
            assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
            raise RuntimeError("inside")
    assert keras.mixed_precision.global_policy().name == before
