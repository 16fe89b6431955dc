"""The data gin files parse against the real configurables and build the sources they name."""

from pathlib import Path

import gin
import pytest

from rethink_tf.data.sources import CocoSource
from rethink_tf.data.tfds_source import TfdsSource

from .conftest import COCO128, require

REPO = Path(__file__).resolve().parents[2]
CLASSIFICATION_GIN = {"data_imagenet.gin", "data_imagenet_folders.gin", "data_synthetic_classification.gin"}
DATA_GIN = sorted(p for p in (REPO / "gin_configs" / "base").glob("data_*.gin") if p.name not in CLASSIFICATION_GIN)


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


@gin.configurable("probe_classification")
def _probe(source=gin.REQUIRED):
    return source


def _classification_source(monkeypatch, tmp_path, name, **bindings):
    """Parses a classification data file with `bindings` and builds %CLASSIFICATION_SOURCE, as a task does."""
    gin.parse_config_file(str(REPO / "gin_configs" / "base" / name))
    for key, value in bindings.items():
        gin.bind_parameter(key, value)
    from rethink_tf.data import classification
    gin.parse_config("probe_classification.source = %CLASSIFICATION_SOURCE")
    return _probe(), classification


def test_classification_configs_exist_and_parse(clean_gin):
    for name in sorted(CLASSIFICATION_GIN):
        gin.clear_config()
        gin.parse_config_file(str(REPO / "gin_configs" / "base" / name))
        size = gin.query_parameter("classification_dataset.image_size")
        assert size == (64 if "synthetic" in name else 224)
        assert gin.query_parameter("classification_dataset.eval_resize_size") == (73 if size == 64 else 256)


def test_synthetic_classification_config_builds_the_source_and_batches(clean_gin, monkeypatch, tmp_path):
    source, classification = _classification_source(
        monkeypatch, tmp_path, "data_synthetic_classification.gin",
        **{"SyntheticClassificationSource.data_dir": str(tmp_path), "SyntheticClassificationSource.train_per_class": 1,
           "SyntheticClassificationSource.val_per_class": 1})
    assert source.num_classes == 10 and source.num_examples("val") == 10
    batch = next(iter(classification.classification_dataset(source, "train", True, 4, seed=0)))
    assert batch["images"].shape == (4, 64, 64, 3)


def test_imagenet_configs_name_their_directories(clean_gin, monkeypatch, tmp_path):
    from rethink_tf.utils.validate import ConfigError, InputError
    with pytest.raises(ConfigError, match=f"{tmp_path}/tars.*ILSVRC2012_img_train.tar"):
        _classification_source(monkeypatch, tmp_path, "data_imagenet.gin",
                               **{"%IMAGENET_MANUAL_DIR": str(tmp_path / "tars"),
                                  "%IMAGENET_TFDS_DIR": str(tmp_path / "tfds")})
    gin.clear_config()
    with pytest.raises(InputError, match=f"{tmp_path}/imagenet/train"):
        _classification_source(monkeypatch, tmp_path, "data_imagenet_folders.gin",
                               **{"%IMAGENET_DIR": str(tmp_path / "imagenet")})
