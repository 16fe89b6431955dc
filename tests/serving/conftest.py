"""Shared fixtures: a tiny Mask R-CNN built through the real gin factory, and its SavedModel.

The model is untrained (random weights): the serving tests compare the SavedModel with the
in-process Keras model, which does not need a trained detector. score_threshold = 0 keeps the
detections non-empty.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rethink_tf.training import config  # noqa: E402
from serving_fixtures import CATEGORIES, TINY_BINDINGS, export_run, write_run  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model():
    """(model, categories, InferenceConfig) built from TINY_BINDINGS through config parsing."""
    from rethink_tf.serving import model_dir
    gin.clear_config()
    config.parse([], TINY_BINDINGS, finalize=False)
    from rethink_tf.modeling.factory import build_model
    model = build_model(num_classes=len(CATEGORIES))
    model.build_networks()
    # The predictors' small init (std 0.01 / 0.001) makes every score ~1/(K+1) and every mask
    # probability ~0.5: widen them so scores are well separated and masks have real shapes.
    rng = np.random.default_rng(0)
    widened = 0
    for v in model.variables:
        if v.path in ("mask_head/predictor/kernel", "box_predictor/cls_logits/kernel"):
            v.assign(rng.normal(0.0, 0.3, v.shape).astype(np.float32))
            widened += 1
    assert widened == 2, "predictor variable names changed: update this fixture"
    inference = model_dir.inference_config()
    yield model, CATEGORIES, inference
    gin.clear_config()


@pytest.fixture(scope="session")
def tiny_run(tiny_model, tmp_path_factory):
    """A run directory as rethink_tf.train leaves it: config.gin, label_map.json,
    inference_config.json and a trainer checkpoint of the tiny model."""
    from rethink_tf.serving import model_dir
    model, _, _ = tiny_model
    run = str(tmp_path_factory.mktemp("run"))
    write_run(run, model)
    # The inference config is read from gin, which tests/conftest.py clears after each module: parse
    # the tiny bindings again (the first module to need this run may come after another module).
    gin.clear_config()
    config.parse([], TINY_BINDINGS, finalize=False)
    model_dir.write_inference_config(run, model)
    return run


@pytest.fixture(scope="session")
def exported(tiny_run, tmp_path_factory):
    """SavedModel path, written the way users do: `tiny_run` exported by `rethink_tf.export.export`,
    which rebuilds the model from config.gin and restores the checkpoint."""
    return export_run(tiny_run, str(tmp_path_factory.mktemp("export") / "saved_model"))
