"""VOCdevkit sources: ids, boxes, difficult objects in training and evaluation, combined sources, bad input."""

import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.data import voc
from rethink_tf.data.input_pipeline import build_dataset
from rethink_tf.data.sources import CocoSource
from rethink_tf.evaluation import voc_evaluator
from rethink_tf.utils.validate import InputError

from .voc_util import VOC2007_IMAGES, write_tiny_devkit, write_voc_year, write_xml

TINY = dict(train_short_side=(96, 96), eval_short_side=96, max_size=128, max_instances=8, mask_crop_size=8)


@pytest.fixture(scope="module")
def devkit(tmp_path_factory):
    return write_tiny_devkit(tmp_path_factory.mktemp("VOCdevkit"))


def test_reads_a_devkit_split(devkit):
    source = voc.VocSource(devkit, 2007, "trainval")
    assert source.name == "voc2007_trainval" and source.num_classes == 20
    assert [c["name"] for c in source.categories][:3] == ["aeroplane", "bicycle", "bird"]
    assert source.label_to_category_id(20) == 20 and source.categories[19]["name"] == "tvmonitor"
    assert source.image_ids == [5, 7, 9, 12]
    height, width = source.image_sizes()[5]  # the XML's size, checked against the JPEG's header
    assert not source.has_masks and height >= 300 and width >= 300
    # 000005: XML chair (11, 21, 110, 180) -> continuous (10, 20, 110, 180), yxyx (20, 10, 180, 110).
    image, boxes, classes, is_crowd, _, _ = source.load_example(5, 8)
    assert image.shape == (height, width, 3)
    np.testing.assert_array_equal(boxes, [[20, 10, 180, 110]])  # the difficult chair is dropped (default)
    np.testing.assert_array_equal(classes, [voc.VOC_CLASSES.index("chair") + 1])
    assert not is_crowd.any()
    # 000012 has only a difficult object: not a training image by default, still evaluated.
    assert source.training_image_ids == [5, 7, 9]


def test_coco_gt_keeps_difficult_objects_flagged(devkit):
    gt = voc.VocSource(devkit, 2007, "trainval").coco_gt()
    anns = [a for a in gt.dataset["annotations"] if a["image_id"] == 5]
    assert [a["bbox"] for a in anns] == [[10.0, 20.0, 100.0, 160.0], [149.0, 29.0, 101.0, 171.0]]
    assert [(a["iscrowd"], a["difficult"]) for a in anns] == [(0, 0), (1, 1)]
    # Back in the devkit's frame the boxes are the XML's corners.
    np.testing.assert_array_equal(voc_evaluator.to_devkit_boxes([a["bbox"] for a in anns]),
                                  [[11, 21, 110, 180], [150, 30, 250, 200]])


@pytest.mark.parametrize("mode,trainable,crowd", [("drop", [5, 7, 9], None), ("ignore", [5, 7, 9], [False, True]),
                                                  ("keep", [5, 7, 9, 12], [False, False])])
def test_train_difficult_modes(devkit, mode, trainable, crowd):
    source = voc.VocSource(devkit, 2007, "trainval", train_difficult=mode)
    assert source.training_image_ids == trainable
    _, boxes, _, is_crowd, _, _ = source.load_example(5, 8)
    if crowd is None:
        assert len(boxes) == 1
    else:
        assert is_crowd.tolist() == crowd


def test_combined_voc2007_trainval_and_voc2012_train(devkit):
    combined = voc.CombinedSource([voc.VocSource(devkit, 2007, "trainval"), voc.VocSource(devkit, 2012, "train")])
    assert combined.name == "voc2007_trainval+voc2012_train"
    assert combined.image_ids == [5, 7, 9, 12, 2008000008, 2008000015]
    assert combined.training_image_ids == [5, 7, 9, 2008000008, 2008000015]
    assert combined.num_examples(True) == 5 and len(combined.image_sizes()) == 6
    assert combined.label_to_category_id_array.tolist() == list(range(21))
    seen = set()
    for batch in build_dataset(combined, training=True, global_batch_size=2, seed=0, **TINY).take(8):
        seen.update(int(i) for i in batch["image_id"].numpy())
    assert seen == set(combined.training_image_ids)  # both years, every training image, none else
    # Evaluation: one pass, source after source, sharded once over the concatenation (pipeline 1 of 2
    # gets every other image of the whole list).
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
    shard = combined.example_dataset(training=False, mask_crop_size=8, input_context=context)
    assert [int(ex["image_id"]) for ex in shard] == combined.image_ids[1::2]
    sizes = combined.image_sizes()
    portrait = [i for i in combined.image_ids if sizes[i][0] > sizes[i][1]]
    found = combined.example_dataset(training=False, mask_crop_size=8, orientation="portrait")
    assert portrait and [int(ex["image_id"]) for ex in found] == portrait
    gt = combined.coco_gt()
    assert len(gt.getImgIds()) == 6 and len({a["id"] for a in gt.dataset["annotations"]}) == 10


def test_combined_refuses_shared_ids_and_other_categories(devkit, tmp_path):
    trainval, train = voc.VocSource(devkit, 2007, "trainval"), voc.VocSource(devkit, 2007, "train")
    with pytest.raises(InputError, match="voc2007_train and voc2007_trainval share 2 image id"):
        voc.CombinedSource([trainval, train])
    ann = tmp_path / "a.json"
    ann.write_text('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "aeroplane"}]}')
    with pytest.raises(InputError, match="has other categories than voc2007_trainval"):
        voc.CombinedSource([trainval, CocoSource(ann, tmp_path)])
    with pytest.raises(InputError, match="CombinedSource.sources"):
        voc.CombinedSource([])


def test_ground_truth_as_detections_scores_100(devkit):
    """VOC2012 val through VocEvaluator: every non-difficult box found once -> mAP 100, the difficult
    person (2008_000023) neither helps nor hurts, whether or not it is detected."""
    source = voc.VocSource(devkit, 2012, "val")
    gt = source.coco_gt()
    for with_difficult in (False, True):
        evaluator = voc_evaluator.VocEvaluator(gt, source.label_to_category_id_array)
        for image_id in source.image_ids:
            anns = [a for a in gt.dataset["annotations"] if with_difficult or not a["difficult"]
                    if a["image_id"] == image_id]
            n = len(anns)
            det = {"detection_boxes": np.array([[[a["bbox"][1], a["bbox"][0], a["bbox"][1] + a["bbox"][3],
                                                  a["bbox"][0] + a["bbox"][2]] for a in anns]], np.float32),
                   "detection_scores": np.full((1, n), 0.9, np.float32),
                   "detection_classes": np.array([[source.category_id_to_label(a["category_id"]) for a in anns]]),
                   "num_detections": np.array([n])}
            evaluator.update(det, np.array([image_id]), np.zeros((1, 4, 2)))
        assert evaluator.evaluate()["voc"] == {"mAP": 100.0, "mAP_07": 100.0}


def _devkit_with(tmp_path, objects=None, xml=None):
    write_voc_year(tmp_path, 2012, {"2008_000001": objects or [("dog", (1, 1, 50, 50), False)]},
                   {"val": ["2008_000001"]})
    path = tmp_path / "VOC2012" / "Annotations" / "2008_000001.xml"
    if xml is not None:
        path.write_text(xml)
    return path


@pytest.mark.parametrize("case,pattern", [
    ("no_split", r"VOC split file not found: .*VOC2012/ImageSets/Main/train\.txt"),
    ("no_xml", r"VOC annotation file not found: .*2008_000001\.xml"),
    ("bad_xml", r"2008_000001\.xml: not valid XML"),
    ("bad_class", r"2008_000001\.xml: object 0 has class 'unicorn'"),
    ("bad_number", r"2008_000001\.xml: object 0 \(dog\) <bndbox> <xmax> is 'ten'"),
    ("no_size", r"2008_000001\.xml: no <size>"),
    ("no_jpeg", r"missing.*2008_000001\.jpg"),
    ("no_year", r"VOC directory not found: .*VOC2007"),
])
def test_bad_input_names_the_file(tmp_path, case, pattern):
    path = _devkit_with(tmp_path)
    split, year = "val", 2012
    if case == "no_split":
        split = "train"
    elif case == "no_xml":
        path.unlink()
    elif case == "bad_xml":
        path.write_text("<annotation><size>")
    elif case == "bad_class":
        write_xml(path, 480, 640, [("unicorn", (1, 1, 5, 5), False)])
    elif case == "bad_number":
        path.write_text(path.read_text().replace("<xmax>50</xmax>", "<xmax>ten</xmax>"))
    elif case == "no_size":
        path.write_text("<annotation><object><name>dog</name></object></annotation>")
    elif case == "no_jpeg":
        (tmp_path / "VOC2012" / "JPEGImages" / "2008_000001.jpg").unlink()
    elif case == "no_year":
        year = 2007
    with pytest.raises((InputError, OSError), match=pattern):  # both are one-line user errors in the CLIs
        voc.VocSource(tmp_path, year, split)


def test_bad_bindings_are_named(tmp_path):
    with pytest.raises(InputError, match="VocSource.train_difficult"):
        voc.VocSource(tmp_path, 2012, "val", train_difficult="sometimes")
    with pytest.raises(InputError, match="VocSource.year"):
        voc.VocSource(tmp_path, 2010, "val")
    with pytest.raises(RuntimeError, match="VocSource.*root"):  # gin's check of a required binding
        voc.VocSource()


def test_image_ids_are_the_file_ids_digits():
    assert voc.image_id_of("000005") == 5 and voc.image_id_of("2008_000008") == 2008000008
    assert set(VOC2007_IMAGES)  # the fixture's ids are what the tests above expect


def test_data_voc_gin_builds_the_papers_splits(devkit):
    """base/data_voc.gin on the tiny devkit: VOC2007 trainval + VOC2012 train for training, VOC2012 val
    for the VOC metric; base/data_voc_tfds.gin names the same splits in tfds."""
    from pathlib import Path

    import gin

    from rethink_tf.training import config, experiment

    gin_dir = Path(__file__).resolve().parents[2] / "gin_configs" / "base"
    config.import_configurables()
    gin.clear_config()
    try:
        gin.parse_config_file(str(gin_dir / "data_voc.gin"))
        gin.bind_parameter("%VOC_DIR", str(devkit))
        train = gin.query_parameter("experiment.train_source").scoped_configurable_fn()
        evaluation = gin.query_parameter("experiment.eval_source").scoped_configurable_fn()
        assert train.name == "voc2007_trainval+voc2012_train" and evaluation.name == "voc2012_val"
        assert isinstance(experiment.build_evaluator(evaluation), voc_evaluator.VocEvaluator)
        gin.clear_config()
        gin.parse_config_file(str(gin_dir / "data_voc_tfds.gin"))
        assert gin.query_parameter("voc2007_val/TfdsSource.split") == "validation"
        assert gin.query_parameter("eval/TfdsSource.name") == "voc/2012"
        assert gin.query_parameter("build_evaluator.metric") == "voc"
        gin.clear_config()  # the README's way to a paper config through tfds: a second --gin_file
        config.parse([str(gin_dir.parent / "voc_scratch_144k.gin"), str(gin_dir / "data_voc_tfds.gin")], [],
                     finalize=False)
        sources = gin.query_parameter("train/CombinedSource.sources")
        assert [r.configurable.name for r in sources] == ["TfdsSource"] * 3
        assert gin.query_parameter("build_backbone.depth") == 101
    finally:
        gin.clear_config()
    with pytest.raises(InputError, match="build_evaluator.metric"):
        experiment.build_evaluator(evaluation, metric="pascal")
