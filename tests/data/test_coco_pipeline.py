"""coco128 / coco_mini through the input pipeline, checked against pycocotools (annToMask)."""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools.coco import COCO

from rethink_tf.data import preprocess
from rethink_tf.data.input_pipeline import build_dataset, samples_seen
from rethink_tf.data.masks import paste_box_mask
from rethink_tf.data.sources import CocoSource, write_image_ids

from .conftest import COCO128, COCO_MINI, require

SMALL = dict(train_short_side=(256, 256), eval_short_side=256, max_size=320, canvas_size=320,
             max_instances=64, mask_crop_size=56)


@pytest.fixture(scope="module")
def coco128_gt():
    with open(require(COCO128) / "annotations" / "instances_train2017.json") as f:
        raw = json.load(f)
    gt = COCO()
    gt.dataset = raw
    gt.createIndex()
    return gt


@pytest.fixture(scope="module")
def coco128_first13():
    """coco128 restricted to its 13 smallest image ids: full eval passes stay quick."""
    root = require(COCO128)
    src = CocoSource(root / "annotations" / "instances_train2017.json", root / "train2017")
    src.image_ids = src.image_ids[:13]
    return src


def _iou(a, b):
    union = np.logical_or(a, b).sum()
    return np.logical_and(a, b).sum() / max(union, 1)


def _expected_instances(gt, image_id):
    """Annotations in the pipeline's order: non-crowd first, each group in json order."""
    anns = gt.loadAnns(gt.getAnnIds(imgIds=[image_id]))
    return [a for a in anns if not a["iscrowd"]] + [a for a in anns if a["iscrowd"]]


def _check_batch_against_coco(batch, gt, source, flipped):
    checked = 0
    for b in range(batch["image_id"].shape[0]):
        image_id = int(batch["image_id"][b])
        info = batch["image_info"][b].numpy()
        orig_h, orig_w = info[0].astype(int)
        sh, sw = info[1].astype(int)
        sy, sx = info[2]
        assert (orig_h, orig_w) == (gt.imgs[image_id]["height"], gt.imgs[image_id]["width"])
        assert np.isclose(sh / orig_h, sy) and np.isclose(sw / orig_w, sx)
        anns = _expected_instances(gt, image_id)
        classes = batch["gt_classes"][b].numpy()
        assert (classes > 0).sum() == len(anns) and np.all(classes[len(anns):] == -1)
        for j, a in enumerate(anns):
            assert classes[j] == source.category_id_to_label(a["category_id"])
            assert bool(batch["gt_is_crowd"][b, j]) == bool(a["iscrowd"])
            x, y, w, h = a["bbox"]
            x1 = min(x + w, orig_w)
            y1 = min(y + h, orig_h)
            expected = np.array([y * sy, x * sx, y1 * sy, x1 * sx])
            if flipped:
                expected = np.array([expected[0], sw - expected[3], expected[2], sw - expected[1]])
            np.testing.assert_allclose(batch["gt_boxes"][b, j].numpy(), expected, atol=1e-3)
            if a["area"] < 800:  # tiny instances: a 56x56 crop pasted back is too coarse for an IoU test
                continue
            full = gt.annToMask(a)
            resized = np.asarray(Image.fromarray(full * 255).resize((sw, sh), Image.BILINEAR)) >= 128
            if flipped:
                resized = resized[:, ::-1]
            pasted = paste_box_mask(batch["gt_masks"][b, j].numpy(), expected, sh, sw)
            # Crowd RLE regions are fragmented; at S x S they keep less detail (IoU -> 1 as S grows).
            threshold = 0.7 if a["iscrowd"] else 0.85
            assert _iou(pasted, resized) > threshold, (image_id, a["id"], _iou(pasted, resized))
            checked += 1
    return checked


def test_category_mapping(coco128_source):
    src = coco128_source
    assert src.num_classes == 80
    ids = [c["id"] for c in src.categories]
    assert ids == sorted(ids) and ids[0] == 1 and ids[-1] == 90
    assert src.label_to_category_id(1) == 1 and src.label_to_category_id(80) == 90
    assert src.category_id_to_label(90) == 80 and src.category_id_to_label(13) == 12  # id 12 is unused
    labels = np.arange(1, 81)
    np.testing.assert_array_equal(src.category_id_to_label(src.label_to_category_id(labels)), labels)
    assert src.label_to_category_id_array[0] == 0
    with pytest.raises(ValueError, match="unknown category id"):
        src.category_id_to_label(12)
    with pytest.raises(ValueError):
        src.label_to_category_id(0)


@pytest.mark.parametrize("training", [False, True])
def test_boxes_and_masks_match_pycocotools(coco128_source, coco128_gt, training):
    # training with flip_prob=1: every image flipped, scale fixed at 256 so the expectation is exact.
    ds = build_dataset(coco128_source, training=training, global_batch_size=4, flip_prob=1.0, seed=7,
                       **SMALL)
    checked = 0
    for batch in ds.take(3):  # one canvas per orientation (landscape 256x320, portrait 320x256)
        portrait = batch["image_info"][0, 0, 0] > batch["image_info"][0, 0, 1]
        assert batch["images"].shape == ((4, 320, 256, 3) if portrait else (4, 256, 320, 3))
        assert batch["gt_masks"].shape == (4, 64, 56, 56) and batch["gt_masks"].dtype == tf.uint8
        checked += _check_batch_against_coco(batch, coco128_gt, coco128_source, flipped=training)
    assert checked >= 10


def test_image_pixels_resized_flipped_and_normalized(coco128_source):
    ds = build_dataset(coco128_source, training=True, global_batch_size=1, flip_prob=1.0, seed=1, **SMALL)
    batch = next(iter(ds))
    image_id = int(batch["image_id"][0])
    info = batch["image_info"][0].numpy()
    sh, sw = info[1].astype(int)
    original = np.asarray(Image.open(COCO128 / "train2017" / f"{image_id:012d}.jpg").convert("RGB"))
    expected = tf.image.resize(original.astype(np.float32), (sh, sw)).numpy()[:, ::-1]
    got = batch["images"][0].numpy()
    np.testing.assert_allclose(got[:sh, :sw] + np.array(preprocess.PIXEL_MEAN), expected, atol=1e-3)
    assert np.all(got[sh:] == 0) and np.all(got[:, sw:] == 0)


def test_crowd_rle_masks(coco128_source, coco128_gt):
    crowd_images = sorted({a["image_id"] for a in coco128_gt.dataset["annotations"] if a["iscrowd"]})
    assert crowd_images
    src = CocoSource(COCO128 / "annotations" / "instances_train2017.json", COCO128 / "train2017")
    src.image_ids = crowd_images[:3]
    ds = build_dataset(src, training=False, global_batch_size=3, **SMALL)
    batch = next(iter(ds))
    assert batch["gt_is_crowd"].numpy().any()
    assert _check_batch_against_coco(batch, coco128_gt, src, flipped=False) > 0


def test_keypoints_flip_with_left_right_swap():
    root = require(COCO_MINI)
    src = CocoSource(root / "annotations" / "person_keypoints_val2017.json", root / "val2017")
    assert src.has_keypoints and src.num_classes == 1 and len(src.keypoint_names) == 17
    with open(root / "annotations" / "person_keypoints_val2017.json") as f:
        raw = json.load(f)
    by_image = {}
    for a in raw["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    src.image_ids = [i for i in src.image_ids if any(a["num_keypoints"] > 5 and not a["iscrowd"]
                                                     for a in by_image.get(i, []))][:2]
    flipped = next(iter(build_dataset(src, training=True, global_batch_size=2, flip_prob=1.0, seed=0,
                                      **SMALL)))
    names = src.keypoint_names
    swap = [names.index(n.replace("left_", "right_")) if n.startswith("left_")
            else names.index(n.replace("right_", "left_")) if n.startswith("right_") else k
            for k, n in enumerate(names)]
    for b in range(2):
        image_id = int(flipped["image_id"][b])
        sy, sx = flipped["image_info"][b, 2].numpy()
        sw = flipped["image_info"][b, 1, 1].numpy()
        anns = [a for a in by_image[image_id] if not a["iscrowd"]] + \
               [a for a in by_image[image_id] if a["iscrowd"]]
        for j, a in enumerate(anns):
            kp = np.array(a["keypoints"], np.float32).reshape(17, 3)
            expected = np.zeros_like(kp)
            vis = kp[:, 2] > 0
            expected[:, 0] = np.where(vis, sw - kp[:, 0] * sx, 0)
            expected[:, 1] = np.where(vis, kp[:, 1] * sy, 0)
            expected[:, 2] = kp[:, 2]
            np.testing.assert_allclose(flipped["gt_keypoints"][b, j].numpy(), expected[swap], atol=1e-3)


def test_eval_pass_is_complete_ordered_and_padded(coco128_first13):
    ds = build_dataset(coco128_first13, training=False, global_batch_size=5, **SMALL)
    ids = np.concatenate([b["image_id"].numpy() for b in ds])
    # 8 landscape images -> 2 batches of 5, the second with 2 padding entries; 5 portrait -> 1 batch.
    portrait = [36, 49, 64, 72, 73]
    landscape = [i for i in sorted(coco128_first13.image_ids) if i not in portrait]
    np.testing.assert_array_equal(ids, landscape + [-1, -1] + portrait)


def test_eval_sharding_with_input_context(coco128_first13):
    shards = []
    for pipeline_id in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                         num_replicas_in_sync=2)
        ds = build_dataset(coco128_first13, training=False, global_batch_size=6, input_context=ctx, **SMALL)
        batches = [b["image_id"].numpy() for b in ds]
        assert all(len(b) == 3 for b in batches)  # per-replica batch
        shards.append(np.concatenate(batches))
    # landscape: 4 + 4 images -> 2 batches of 3 each; portrait: 3 + 2 -> 1 batch of 3 each.
    assert len(shards[0]) == len(shards[1]) == 9
    real = np.concatenate(shards)
    real = real[real >= 0]
    np.testing.assert_array_equal(np.sort(real), sorted(coco128_first13.image_ids))


def test_training_is_seeded_and_skips_unannotated(coco128_source):
    def first_ids(seed):
        ds = build_dataset(coco128_source, training=True, global_batch_size=3, seed=seed, **SMALL)
        return next(iter(ds))["image_id"].numpy().tolist()
    assert first_ids(3) == first_ids(3)
    assert first_ids(3) != first_ids(4)
    assert len(coco128_source.training_image_ids) == 126  # two coco128 images have no annotation
    assert coco128_source.index.skipped["images_without_training_instances"] == 2


def test_samples_seen_counts(coco128_first13):
    ds = build_dataset(coco128_first13, training=False, global_batch_size=5, **SMALL)
    last = list(ds)[1]  # the last landscape batch: 3 images, 2 padding entries
    counts = {k: int(v) for k, v in samples_seen(last).items()}
    real = last["image_id"].numpy() >= 0
    assert counts["images"] == real.sum() == 3
    cls = last["gt_classes"].numpy()
    crowd = last["gt_is_crowd"].numpy()
    assert counts["instances"] == ((cls > 0) & ~crowd & real[:, None]).sum()
    info = last["image_info"].numpy()
    assert counts["pixels"] == int((info[real, 1, 0] * info[real, 1, 1]).sum())


def test_subsets_deterministic_nested_and_written(tmp_path):
    root = require(COCO128)
    args = (root / "annotations" / "instances_train2017.json", root / "train2017")
    a = CocoSource(*args, subset_size=40, subset_seed=5)
    b = CocoSource(*args, subset_size=40, subset_seed=5)
    c = CocoSource(*args, subset_size=40, subset_seed=6)
    small = CocoSource(*args, subset_size=10, subset_seed=5)
    assert a.image_ids == b.image_ids and len(a.image_ids) == 40
    assert a.image_ids != c.image_ids
    assert set(small.image_ids) <= set(a.image_ids)
    assert set(a.image_ids) <= set(a.index.training_image_ids)
    assert a.coco_gt().getImgIds() == sorted(a.image_ids)
    path = write_image_ids(a, tmp_path / "model")
    record = json.loads(open(path).read())
    assert record["image_ids"] == a.image_ids and record["subset_seed"] == 5 and record["num_images"] == 40
    with pytest.raises(ValueError, match="exceeds"):
        CocoSource(*args, subset_size=1000)
