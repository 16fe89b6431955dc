"""The embedded default dataset: deterministic, cached, COCO-valid, with real occlusion."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from rethink_tf.data import synthetic_shapes
from rethink_tf.data.input_pipeline import build_dataset
from rethink_tf.data.sources import SyntheticShapesSource

SIZES = dict(num_train_images=48, num_val_images=16, image_size=128)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def train_source(cache_dir):
    return SyntheticShapesSource("train", data_dir=str(cache_dir), **SIZES)


def test_generation_is_deterministic_and_cached(train_source, cache_dir, tmp_path, monkeypatch):
    other = synthetic_shapes.ensure_generated(tmp_path, **SIZES)
    mine = synthetic_shapes.ensure_generated(cache_dir, **SIZES)
    assert _load_json(mine, "train") == _load_json(other, "train")
    first = (tmp_path / "synthetic_shapes").glob("*/train/000001.jpg")
    assert next(first).read_bytes() == next((cache_dir / "synthetic_shapes").glob("*/train/000001.jpg")).read_bytes()
    # cached: a second use does not regenerate (the generator is not called)
    monkeypatch.setattr(synthetic_shapes, "generate_split", lambda *a, **k: pytest.fail("regenerated"))
    assert synthetic_shapes.ensure_generated(cache_dir, **SIZES) == mine
    # the env var picks the cache root
    monkeypatch.setenv("RETHINK_TF_DATA_DIR", str(cache_dir))
    assert SyntheticShapesSource("val", **SIZES).index.annotation_file.startswith(str(cache_dir))


def _load_json(root, split):
    with open(f"{root}/annotations/instances_{split}.json") as f:
        return json.load(f)


def test_content_is_a_real_detection_problem(train_source):
    data = train_source.index.raw
    assert [c["name"] for c in data["categories"]] == ["circle", "square", "triangle"]
    per_image = np.bincount([a["image_id"] for a in data["annotations"]], minlength=49)[1:]
    assert per_image.min() >= 1 and per_image.max() <= 8 and per_image.max() >= 5
    assert set(a["category_id"] for a in data["annotations"]) == {1, 2, 3}
    areas = np.array([a["area"] for a in data["annotations"]])
    assert areas.min() >= 40 and areas.max() / areas.min() > 20  # varied sizes
    overlapping_boxes = 0
    for image_id in range(1, 49):
        anns = [a for a in data["annotations"] if a["image_id"] == image_id]
        masks = np.stack([mask_utils.decode(a["segmentation"]) for a in anns])
        # exact, occlusion-aware masks: no pixel belongs to two instances, area = mask pixels
        assert masks.sum(0).max() <= 1
        np.testing.assert_array_equal(masks.sum((1, 2)), [a["area"] for a in anns])
        boxes = mask_utils.toBbox([a["segmentation"] for a in anns])
        iou = mask_utils.iou(boxes.tolist(), boxes.tolist(), [0] * len(anns))
        overlapping_boxes += int(((iou > 0.05).sum() - len(anns)) > 0)
    assert overlapping_boxes >= 10  # overlapping boxes with disjoint masks: occlusion is in the masks
    # textured backgrounds: the pixels outside all instances are not flat
    for image_id in (1, 2, 3):
        image = np.asarray(Image.open(train_source.index.image_path(image_id))).astype(np.float32)
        anns = [a for a in data["annotations"] if a["image_id"] == image_id]
        background = np.stack([mask_utils.decode(a["segmentation"]) for a in anns]).sum(0) == 0
        assert image[background].std(axis=0).max() > 3


def test_splits_differ_and_coco_scores_gt_perfectly(train_source, cache_dir):
    val = SyntheticShapesSource("val", data_dir=str(cache_dir), **SIZES)
    assert len(val.image_ids) == 16 and len(train_source.image_ids) == 48
    assert val.index.raw["annotations"][0]["bbox"] != train_source.index.raw["annotations"][0]["bbox"]
    gt = val.coco_gt()
    detections = [dict(image_id=a["image_id"], category_id=a["category_id"], bbox=a["bbox"],
                       segmentation=a["segmentation"], score=1.0) for a in gt.dataset["annotations"]]
    for iou_type in ("bbox", "segm"):
        ev = COCOeval(gt, gt.loadRes(detections), iou_type)
        ev.evaluate(), ev.accumulate()
        ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0)


def test_pipeline_batches_at_canvas_128(train_source):
    ds = build_dataset(train_source, training=True, global_batch_size=4, seed=0,
                       train_short_side=(96, 128), short_side_step=8, eval_short_side=128, max_size=128,
                       max_instances=16, mask_crop_size=28)
    batch = next(iter(ds))
    assert batch["images"].shape == (4, 128, 128, 3)
    assert batch["gt_masks"].shape == (4, 16, 28, 28)
    assert set(np.unique(batch["gt_classes"].numpy())) <= {-1, 1, 2, 3}
    info = batch["image_info"].numpy()
    assert np.all(info[:, 1] >= 96) and np.all(info[:, 1] <= 128)
    # every instance's box-cropped mask is mostly on (shapes fill a good part of their visible box)
    valid = batch["gt_classes"].numpy() > 0
    assert batch["gt_masks"].numpy()[valid].mean((1, 2)).min() > 0.2
