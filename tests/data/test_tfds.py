"""The tfds builder over a local COCO dir (masks kept) and TfdsSource, against CocoSource on the same data."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from rethink_tf.data.input_pipeline import build_dataset
from rethink_tf.data.sources import CocoSource
from rethink_tf.data.tfds_source import TfdsSource
from rethink_tf.data.voc import VOC_CLASSES

from .conftest import square_annotation, write_tiny_coco

TINY = dict(train_short_side=(64, 64), eval_short_side=64, max_size=96, canvas_size=96, max_instances=8,
            mask_crop_size=16)
CATEGORIES = [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}]


def _triangle(ann_id, image_id, x, y, s, category_id):
    a = square_annotation(ann_id, image_id, x, y, s, s, category_id)
    a["segmentation"] = [[x, y, x + s, y, x, y + s]]
    return a


def _make_coco_root(root):
    """root/annotations/instances_{train,val}2017.json + images: polygons, a crowd RLE, an empty image."""
    def images(prefix, n):
        return [{"id": prefix + i, "file_name": f"{prefix + i}.jpg", "height": 48, "width": 64} for i in range(n)]
    crowd = square_annotation(9, 101, 30, 10, 20, 20, category_id=7, iscrowd=1)
    counts = [30 * 48 + 10] + [20, 28] * 19 + [20]  # rows 10..29 of columns 30..49, its box
    crowd["segmentation"] = {"size": [48, 64], "counts": counts + [48 * 64 - sum(counts)]}
    train = [_triangle(1, 100, 4, 4, 30, 3), square_annotation(2, 100, 20, 10, 30, 25, 7),
             _triangle(3, 101, 10, 20, 20, 7), crowd, square_annotation(4, 102, 1, 2, 40, 40, 3)]
    val = [square_annotation(5, 200, 5, 5, 20, 20, 3)]
    for split, anns, ims in (("train2017", train, images(100, 4)), ("val2017", val, images(200, 2))):
        ann_file, image_dir = write_tiny_coco(root / "tmp" / split, ims, anns, CATEGORIES)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        ann_file.rename(root / "annotations" / f"instances_{split}.json")
        image_dir.rename(root / split)
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("tfds")
    coco_root = _make_coco_root(base / "coco")
    source = TfdsSource("rethink_coco_instances/2017", "train", data_dir=str(base / "tfds"),
                        manual_dir=str(coco_root))
    return base, coco_root, source


def _by_id(ds):
    out = {}
    for batch in ds:
        for b, image_id in enumerate(batch["image_id"].numpy()):
            out[int(image_id)] = {k: v[b].numpy() for k, v in batch.items()}
    return out


def test_builder_keeps_masks_and_matches_coco_source(prepared):
    base, coco_root, source = prepared
    assert source.has_masks and not source.has_keypoints
    assert source.categories == CATEGORIES and source.label_to_category_id(2) == 7
    assert source.image_ids == [100, 101, 102, 103] and source.training_image_ids == [100, 101, 102]
    coco = CocoSource(coco_root / "annotations" / "instances_train2017.json", coco_root / "train2017")
    from_tfds = _by_id(build_dataset(source, training=False, global_batch_size=2, **TINY))
    from_coco = _by_id(build_dataset(coco, training=False, global_batch_size=2, **TINY))
    assert set(from_tfds) == set(from_coco) == {100, 101, 102, 103}
    for image_id in from_coco:
        a, b = from_tfds[image_id], from_coco[image_id]
        np.testing.assert_array_equal(a["gt_classes"], b["gt_classes"])
        np.testing.assert_array_equal(a["gt_is_crowd"], b["gt_is_crowd"])
        np.testing.assert_allclose(a["gt_boxes"], b["gt_boxes"], atol=1e-3)
        np.testing.assert_allclose(a["images"], b["images"], atol=1e-3)
        # masks stored at 112 and resized to 16 vs rasterized at 16: nearly the same pixels
        valid = a["gt_classes"] > 0
        if valid.any():
            assert np.mean(a["gt_masks"][valid] == b["gt_masks"][valid]) > 0.95
    assert from_tfds[101]["gt_is_crowd"][1] and from_tfds[101]["gt_masks"][1].all()
    gt = source.coco_gt()  # the original json is still there: full masks for segm evaluation
    assert sorted(gt.getAnnIds()) == [1, 2, 3, 4, 9] and gt.anns[1]["segmentation"]


def test_training_subset_and_validation_split(prepared):
    base, coco_root, _ = prepared
    source = TfdsSource("rethink_coco_instances/2017", "train", data_dir=str(base / "tfds"),
                        subset_size=2, subset_seed=1)
    assert len(source.image_ids) == 2 and set(source.image_ids) <= {100, 101, 102}
    ds = build_dataset(source, training=True, global_batch_size=2, seed=0, **dict(TINY, mask_crop_size=112))
    seen = set()
    for batch in ds.take(6):
        seen.update(batch["image_id"].numpy().tolist())
        assert batch["gt_masks"].shape == (2, 8, 112, 112)
    assert seen == set(source.image_ids)
    # eval of a subset, sharded over 2 input pipelines: each shard padded to the same number of batches
    shards = []
    for pipeline_id in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                         num_replicas_in_sync=2)
        ds = build_dataset(source, training=False, global_batch_size=2, input_context=ctx, **TINY)
        shards.append(np.concatenate([b["image_id"].numpy() for b in ds]).tolist())
    assert len(shards[0]) == len(shards[1]) == 1
    assert sorted(shards[0] + shards[1]) == sorted(source.image_ids)
    val = TfdsSource("rethink_coco_instances/2017", "validation", data_dir=str(base / "tfds"))
    ids = np.concatenate([b["image_id"].numpy() for b in build_dataset(val, training=False, global_batch_size=4,
                                                                        **TINY)])
    assert sorted(ids.tolist()) == [-1, -1, 200, 201]


def test_unprepared_or_bad_split_is_a_clear_error(prepared, tmp_path):
    base, _, _ = prepared
    with pytest.raises(ValueError, match="not prepared.*manual_dir"):
        TfdsSource("rethink_coco_instances/2017", "train", data_dir=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="no split 'test'"):
        TfdsSource("rethink_coco_instances/2017", "test", data_dir=str(base / "tfds"))


def test_builder_names_undecodable_image(tmp_path):
    root = _make_coco_root(tmp_path / "coco")
    (root / "val2017" / "201.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"not a JPEG/PNG/GIF/BMP file .*201\.jpg \(image id 201\)"):
        TfdsSource("rethink_coco_instances/2017", "validation", data_dir=str(tmp_path / "tfds"),
                   manual_dir=str(root))


# --- tfds layouts without masks: coco/2017 (80 labels, is_crowd, image/id) and voc (is_difficult,
# ids from file names). Two tiny builders with the same feature layouts stand in for the real ones,
# which cannot be downloaded here.
_TINY_IMAGES = {}


class CocoBoxesForTest(tfds.core.GeneratorBasedBuilder):
    """Same features as tfds coco/2017 (boxes only), 80 labels."""
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(encoding_format="jpeg"),
            "image/filename": tfds.features.Text(),
            "image/id": tf.int64,
            "objects": tfds.features.Sequence({
                "area": tf.int64, "bbox": tfds.features.BBoxFeature(), "id": tf.int64, "is_crowd": tf.bool,
                "label": tfds.features.ClassLabel(names=[f"class{i}" for i in range(80)])}),
        }))

    def _split_generators(self, dl_manager):
        return {"validation": self._generate_examples()}

    def _generate_examples(self):
        boxes = [[(0.1, 0.1, 0.5, 0.6, 0, False), (0.2, 0.3, 0.2, 0.9, 5, False)],  # 2nd: zero height
                 [(0.0, 0.0, 1.0, 1.0, 79, True)]]
        for k, (path, objs) in enumerate(zip(_TINY_IMAGES["paths"], boxes)):
            yield k, {"image": path, "image/filename": os.path.basename(path), "image/id": 1000 + k,
                      "objects": [{"area": 1, "bbox": tfds.features.BBox(*b[:4]), "id": j, "is_crowd": b[5],
                                   "label": b[4]} for j, b in enumerate(objs)]}


class VocBoxesForTest(tfds.core.GeneratorBasedBuilder):
    """Same features as tfds voc (is_difficult, no image id), 20 labels."""
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(encoding_format="jpeg"),
            "image/filename": tfds.features.Text(),
            "objects": tfds.features.Sequence({
                "bbox": tfds.features.BBoxFeature(), "is_difficult": tf.bool, "is_truncated": tf.bool,
                "label": tfds.features.ClassLabel(names=list(VOC_CLASSES))}),
        }))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for k, path in enumerate(_TINY_IMAGES["paths"]):
            yield k, {"image": path, "image/filename": f"2008_00000{k}.jpg",
                      "objects": [{"bbox": tfds.features.BBox(0.1, 0.2, 0.6, 0.7), "is_difficult": False,
                                   "is_truncated": False, "label": 19},
                                  {"bbox": tfds.features.BBox(0.5, 0.5, 0.9, 0.9), "is_difficult": True,
                                   "is_truncated": False, "label": 3}]}


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    ann_file, image_dir = write_tiny_coco(tmp_path_factory.mktemp("imgs"), [
        {"id": 1, "file_name": "a.jpg", "height": 48, "width": 64},
        {"id": 2, "file_name": "b.jpg", "height": 40, "width": 40}], [], CATEGORIES)
    _TINY_IMAGES["paths"] = [str(image_dir / "a.jpg"), str(image_dir / "b.jpg")]
    return tmp_path_factory.mktemp("tfds_boxes")


def test_coco_boxes_layout_maps_labels_to_coco_ids(tiny_images):
    source = TfdsSource("coco_boxes_for_test", "validation", data_dir=str(tiny_images), download=True)
    assert not source.has_masks and source.num_classes == 80
    assert source.label_to_category_id(1) == 1 and source.label_to_category_id(80) == 90
    assert source.image_ids == [1000, 1001]
    batches = list(build_dataset(source, training=False, global_batch_size=2, **TINY))
    by_id = {int(i): b for b, i in enumerate(batches[0]["image_id"].numpy())}
    b = batches[0]
    assert "gt_masks" not in b
    first = by_id[1000]
    np.testing.assert_array_equal(b["gt_classes"][first, :2].numpy(), [1, -1])  # zero-height box dropped
    sy, sx = b["image_info"][first, 2].numpy()
    np.testing.assert_allclose(b["gt_boxes"][first, 0].numpy(),
                               [0.1 * 48 * sy, 0.1 * 64 * sx, 0.5 * 48 * sy, 0.6 * 64 * sx], atol=1e-3)
    assert b["gt_is_crowd"][by_id[1001], 0] and b["gt_classes"][by_id[1001], 0] == 80
    assert source._scan()[1]["degenerate_box"] == 1
    gt = source.coco_gt()
    assert sorted(a["category_id"] for a in gt.dataset["annotations"]) == [1, 90]
    assert gt.imgs[1000]["height"] == 48 and gt.imgs[1000]["width"] == 64


def test_voc_layout_ids_from_filenames_and_difficult_as_crowd(tiny_images):
    source = TfdsSource("voc_boxes_for_test", "train", data_dir=str(tiny_images), download=True)
    assert source.image_ids == [2008000000, 2008000001]
    assert source.label_to_category_id(20) == 20
    batch = next(iter(build_dataset(source, training=True, global_batch_size=2, seed=0, **TINY)))
    np.testing.assert_array_equal(batch["gt_classes"][:, :3].numpy(), [[20, 4, -1]] * 2)
    np.testing.assert_array_equal(batch["gt_is_crowd"][:, :2].numpy(), [[False, True]] * 2)


@pytest.mark.parametrize("mode,classes,crowd", [("drop", [20, -1], [False, False]), ("keep", [20, 4], [False, False])])
def test_voc_train_difficult_modes(tiny_images, mode, classes, crowd):
    """Detectron leaves difficult objects out of training, detectron2 trains on them; evaluation keeps them
    flagged either way."""
    source = TfdsSource("voc_boxes_for_test", "train", data_dir=str(tiny_images), download=True,
                        train_difficult=mode)
    batch = next(iter(build_dataset(source, training=True, global_batch_size=2, seed=0, **TINY)))
    np.testing.assert_array_equal(batch["gt_classes"][:, :2].numpy(), [classes] * 2)
    np.testing.assert_array_equal(batch["gt_is_crowd"][:, :2].numpy(), [crowd] * 2)
    assert sorted(a["iscrowd"] for a in source.coco_gt().dataset["annotations"]) == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="TfdsSource.train_difficult"):
        TfdsSource("coco_boxes_for_test", "validation", data_dir=str(tiny_images), download=True,
                   train_difficult=mode)


def test_tfds_voc_combines_with_a_vocdevkit_split(tiny_images, tmp_path):
    """tfds voc labels + 1 are VocSource's category ids: both train as one source (the devkit's VOC2012
    val stands in for a second tfds split here)."""
    from rethink_tf.data.voc import CombinedSource, VocSource

    from .voc_util import write_tiny_devkit

    tfds_voc = TfdsSource("voc_boxes_for_test", "train", data_dir=str(tiny_images), download=True)
    combined = CombinedSource([tfds_voc, VocSource(write_tiny_devkit(tmp_path), 2012, "val")])
    assert combined.categories == tfds_voc.categories
    assert combined.training_image_ids == [2008000000, 2008000001, 2008000019, 2008000023]
    batches = build_dataset(combined, training=True, global_batch_size=2, seed=0, aspect_grouping=False, **TINY)
    seen = {int(i) for b in batches.take(6) for i in b["image_id"].numpy()}
    assert seen == set(combined.training_image_ids)
