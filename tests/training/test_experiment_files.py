"""Files an experiment writes for evaluate/export: config.gin (re-parseable) and label_map.json."""

import json
import os

import gin
import numpy as np
import pytest

from rethink_tf.training import config, experiment


class _Source:
    name = "fake"
    categories = [{"id": 3, "name": "car"}, {"id": 90, "name": "toothbrush"}]
    label_to_category_id_array = np.array([0, 3, 90])


def test_label_map_and_checkpoint_step(tmp_path):
    path = experiment.write_label_map(str(tmp_path), _Source())
    with open(path) as f:
        record = json.load(f)
    assert record["label_to_category_id"] == [0, 3, 90]
    assert record["categories"][1] == {"id": 90, "name": "toothbrush"}
    assert experiment.step_of_checkpoint("/a/b/ckpt-1200") == 1200
    with pytest.raises(ValueError, match="ckpt-"):
        experiment.step_of_checkpoint("/a/b/model.weights")


def test_config_gin_is_reparseable_with_operative_section(tmp_path):
    gin_file = tmp_path / "exp.gin"
    gin_file.write_text("paper_schedule.schedule_multiplier = 3\nexperiment.global_batch_size = 8\n")
    try:
        config.parse([str(gin_file)], ["paper_schedule.decay_factor = 0.02"], finalize=False)
        from rethink_tf.training.schedule import paper_schedule
        assert paper_schedule(global_batch_size=16).decay_factor == 0.02
        path = experiment.write_config(str(tmp_path / "run"), operative=True)
        text = open(path).read()
        assert "paper_schedule.schedule_multiplier = 3" in text
        assert "# paper_schedule.warmup_factor" in text  # operative defaults recorded as comments
        gin.clear_config()
        config.parse([path], [], finalize=False)
        assert paper_schedule(global_batch_size=16).total_steps == 270_000
        assert gin.query_parameter("experiment.global_batch_size") == 8
    finally:
        gin.clear_config()
    assert os.path.basename(path) == "config.gin"
