"""Issue 9: the detector is composed from components built by their own gin configurables.

A new box head registers a builder with its own parameters and `build_model` builds it when selected by
name; the old flat `build_model.<arg>` bindings are refused with their new names.
"""
import re

import gin
import keras
import numpy as np
import pytest
from keras import ops

from rethink_tf.modeling import factory
from rethink_tf.modeling.heads import registry as head_registry
from rethink_tf.training import config

from .conftest import TINY, tiny_model


class OneFCHead(keras.layers.Layer):
    """[B, R, S, S, C] -> [B, R, width]: flatten, one fc + ReLU."""

    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.fc = keras.layers.Dense(width, activation="relu", name="fc")

    def call(self, x, training=None):
        s = x.shape
        return self.fc(ops.reshape(x, (s[0], s[1], s[2] * s[3] * s[4])))


@gin.configurable(denylist=["name", "norm", "default_fc_dim"])
def one_fc_box_head_for_tests(name="box_head", norm="gn", default_fc_dim=1024, width=8):
    """A box-head builder as a user would write one: the model's arguments plus its own `width`."""
    return OneFCHead(width, name=name)


@pytest.fixture
def one_fc_registered():
    head_registry.register_head("box", "1fc_test")(one_fc_box_head_for_tests)
    yield
    head_registry._REGISTRY.pop(("box", "1fc_test"))


@pytest.mark.parametrize("roi_heads", ["standard", "cascade"])
def test_a_registered_box_head_gets_its_own_parameters(one_fc_registered, roi_heads):
    model = factory.build_model_from_bindings(3, {**TINY, "one_fc_box_head_for_tests.width": 12},
                                              box_head="1fc_test", roi_heads=roi_heads)
    stages = model.roi_heads.box_stages
    assert len(stages) == (3 if roi_heads == "cascade" else 1)
    assert all(isinstance(s.head, OneFCHead) and s.head.width == 12 for s in stages)
    assert len({s.head.name for s in stages}) == len(stages)  # one head per stage, own variable paths
    if roi_heads == "standard":  # the stage runs its head: 16-channel FPN features pooled 7x7 -> fc 12
        features = {level: ops.zeros((1, 64 // 2 ** level, 64 // 2 ** level, 16)) for level in range(2, 6)}
        logits, _ = stages[0](features, ops.convert_to_tensor([[[0.0, 0.0, 32.0, 32.0]]]))
        assert tuple(logits.shape) == (1, 1, 4) and tuple(stages[0].head.fc.kernel.shape) == (7 * 7 * 16, 12)


def test_unknown_box_head_names_the_binding_and_the_registered_ones():
    expected = "build_model.box_head = '3fc': expected one of ('2fc', '4conv1fc')"
    with pytest.raises(ValueError, match=re.escape(expected)):
        tiny_model(box_head="3fc")


@pytest.fixture
def clean_gin():
    config.import_configurables()
    gin.clear_config()
    yield
    gin.clear_config()


def test_old_flat_bindings_are_refused_with_their_new_names(clean_gin, tmp_path):
    path = tmp_path / "old.gin"
    path.write_text("build_model.norm = 'gn'\nbuild_model.pre_nms_topk_train = 500\n"
                    "build_model.fpn_channels = 64\nbuild_model.box_fc_dim = 128\n")
    with pytest.raises(config.ConfigError) as raised:
        config.parse([str(path)], [])
    message = str(raised.value)
    for old, new in (("pre_nms_topk_train", "build_rpn.pre_nms_topk_train"), ("fpn_channels", "build_fpn.num_channels"),
                     ("box_fc_dim", "conv_fc_box_head.fc_dim")):
        assert f"build_model.{old} -> {new}" in message, message
    assert str(path) in message and "README" in message
    gin.clear_config()
    with pytest.raises(config.ConfigError, match=re.escape("build_model.roi_num_samples -> "
                                                           "roi_sampling.batch_size_per_image")):
        config.parse([], ["build_model.roi_num_samples = 64"])
    gin.clear_config()
    with pytest.raises(config.ConfigError, match="doesn't have a parameter named 'not_a_parameter'"):
        config.parse([], ["build_model.not_a_parameter = 1"])  # not a moved name: gin's own message


def test_every_moved_binding_names_an_existing_parameter(clean_gin):
    """The moved-names table cannot go stale: each new name it gives is a parameter gin accepts."""
    targets = {t for text in factory.MOVED_BINDINGS.values() for t in re.findall(r"\b(\w+\.\w+)\b", text)}
    assert len(targets) >= len(factory.MOVED_BINDINGS)
    with gin.unlock_config():
        for target in sorted(targets):
            gin.bind_parameter(target, None)  # raises for an unknown configurable or parameter
    assert not set(factory.MOVED_BINDINGS) & set(
        __import__("inspect").signature(factory.build_model).parameters)


def test_component_bindings_apply_and_are_recorded(clean_gin):
    """Bindings of each component reach its layer; the run record lists them under the component's name."""
    from rethink_tf.training import run_record
    bindings = {"build_rpn.nms_iou": 0.6, "build_postprocessor.score_threshold": 0.2,
                "standard_roi_heads.fg_iou": 0.55, "build_mask_branch.target_threshold": 0.4}
    with gin.unlock_config():
        for key, value in {**TINY, **bindings}.items():
            gin.bind_parameter(key, value)
    model = factory.build_model(3)
    assert model.rpn.nms_iou == 0.6 and model.postprocessor.score_threshold == 0.2
    assert model.roi_heads.box_stage.fg_iou == 0.55
    assert model.roi_heads.branches["mask"].target_threshold == 0.4
    fields = run_record.describe(model, [1, 2, 3])["fields"]
    assert {k: fields[k] for k in bindings} == bindings
    assert fields["build_backbone.base_width"] == 8 and fields["build_model.num_classes"] == 3
    assert not any(k.startswith("build_model.") and k.split(".")[1] in factory.MOVED_BINDINGS for k in fields)
    np.testing.assert_equal(fields["cascade_roi_heads.stage_ious"], [0.5, 0.6, 0.7])


def test_a_run_directory_from_before_the_move_reads_the_same_configuration(clean_gin, tmp_path):
    """A quickstart run directory written at af9659e, when every model binding was a build_model argument
    (its config.gin and run_config.json, kept in tests/modeling/old_run_af9659e/ since official_runs/quickstart
    was re-run at e6d7b37), parses in the new names, and the rebuilt model's record equals its
    run_config.json field for field (old names mapped to the new ones)."""
    import json
    import pathlib
    import shutil

    from rethink_tf.serving import model_dir
    from rethink_tf.training import run_record
    run = pathlib.Path(__file__).parent / "old_run_af9659e"
    shutil.copy(run / "config.gin", tmp_path / "config.gin")
    recorded = json.loads((run / "run_config.json").read_text())["fields"]
    model_dir.parse_config(str(tmp_path))
    fields = run_record.describe(factory.build_model(3), recorded["label_map.category_ids"])["fields"]
    single = {old: new for old, new in factory.MOVED_BINDINGS.items() if " " not in new}
    single.update(box_fc_dim="conv_fc_box_head.fc_dim", roi_fg_iou="standard_roi_heads.fg_iou",
                  box_coder_weights="standard_roi_heads.box_coder_weights")
    renamed = {}
    for key, value in recorded.items():
        arg = key.split(".", 1)[1]
        renamed[f"{single[arg]}" if key.startswith("build_model.") and arg in single else key] = value
    assert {k: fields[k] for k in renamed} == renamed
    assert fields["fc_box_head.fc_dim"] == recorded["build_model.box_fc_dim"] == 128
