"""The data gin files parse against the real configurables and build the sources they name."""

from pathlib import Path

import gin
import pytest

from rethink_tf.data.sources import CocoSource
from rethink_tf.data.tfds_source import TfdsSource

from .conftest import COCO128, require

REPO = Path(__file__).resolve().parents[2]
DATA_GIN = sorted((REPO / "gin_configs" / "base").glob("data_*.gin"))


@pytest.fixture
def clean_gin():
    from rethink_tf.training.config import import_configurables
    import_configurables()
    gin.clear_config()
    yield
    gin.clear_config()


def test_all_five_data_configs_exist():
    names = {p.name for p in DATA_GIN}
    assert names >= {"data_synthetic.gin", "data_coco128.gin", "data_coco_mini.gin", "data_coco2017.gin",
                     "data_coco2017_tfds.gin"}


@pytest.mark.parametrize("path", DATA_GIN, ids=lambda p: p.name)
def test_parses(clean_gin, path):
    gin.parse_config_file(str(path))
    assert gin.query_parameter("experiment.train_source") is not None


@pytest.mark.parametrize("name,train_count,eval_count", [("data_coco128.gin", 128, 79),
                                                         ("data_coco_mini.gin", 80, 79)])
def test_real_coco_configs_build_their_sources(clean_gin, monkeypatch, name, train_count, eval_count):
    require(COCO128)
    monkeypatch.chdir(REPO)  # the files' paths are relative to the repository root
    gin.parse_config_file(str(REPO / "gin_configs" / "base" / name))
    with gin.config_scope("train"):
        train = CocoSource()
    with gin.config_scope("eval"):
        evaluation = CocoSource()
    assert len(train.image_ids) == train_count and len(evaluation.image_ids) == eval_count
    assert not set(train.image_ids) & set(evaluation.image_ids)


def test_coco2017_configs_resolve_paths_under_the_macro(clean_gin, tmp_path):
    gin.parse_config_file(str(REPO / "gin_configs" / "base" / "data_coco2017.gin"))
    gin.bind_parameter("%COCO_DIR", str(tmp_path))
    with gin.config_scope("train"), pytest.raises(ValueError, match=rf"{tmp_path}/annotations/instances_train2017"):
        CocoSource()
    gin.clear_config()
    gin.parse_config_file(str(REPO / "gin_configs" / "base" / "data_coco2017_tfds.gin"))
    gin.bind_parameter("%TFDS_DIR", str(tmp_path / "tfds"))
    gin.bind_parameter("%COCO_DIR", str(tmp_path / "no_coco"))
    with gin.config_scope("eval"), pytest.raises(Exception, match="no_coco"):
        TfdsSource()


def test_synthetic_config_binds_the_splits(clean_gin):
    gin.parse_config_file(str(REPO / "gin_configs" / "base" / "data_synthetic.gin"))
    assert gin.query_parameter("train/SyntheticShapesSource.split") == "train"
    assert gin.query_parameter("eval/SyntheticShapesSource.split") == "val"
    assert gin.query_parameter("build_dataset.canvas_size") == 128
