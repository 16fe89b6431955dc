"""One fixed canvas per orientation (aspect grouping): shapes, fill, replicas, eval coverage, resume."""

import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.data import preprocess
from rethink_tf.data.input_pipeline import build_dataset
from rethink_tf.data.sources import CocoSource

from .conftest import COCO128, require

# Small sizes keep the tests fast; landscape canvas 64x96, portrait 96x64.
TINY = dict(train_short_side=(64, 64), eval_short_side=64, max_size=96, max_instances=8, mask_crop_size=14)
LANDSCAPE, PORTRAIT = (64, 96), (96, 64)


@pytest.fixture(scope="module")
def coco128_first13():
    """coco128's 13 smallest image ids: 8 landscape, 5 portrait (ids 36, 49, 64, 72, 73)."""
    root = require(COCO128)
    src = CocoSource(root / "annotations" / "instances_train2017.json", root / "train2017")
    src.image_ids = src.image_ids[:13]
    return src


def _check_one_orientation(batch):
    """Every real image of the batch has the batch canvas's orientation; returns the canvas (H, W)."""
    canvas = tuple(batch["images"].shape[1:3])
    info = batch["image_info"].numpy()
    real = batch["image_id"].numpy() >= 0
    portrait = info[real, 0, 0] > info[real, 0, 1]
    expected = canvas[0] > canvas[1]
    assert np.all(portrait == expected), (canvas, info[real, 0])
    assert np.all(info[real, 1, 0] <= canvas[0]) and np.all(info[real, 1, 1] <= canvas[1])
    return canvas


def test_canvas_rule():
    assert preprocess.canvas_shapes(800, 1333) == ((800, 1344), (1344, 800))
    assert preprocess.canvas_shapes(800, 1333, aspect_grouping=False) == ((1344, 1344), (1344, 1344))
    assert preprocess.canvas_shapes(810, 1333) == ((832, 1344), (1344, 832))
    assert preprocess.canvas_shapes(128, 128) == ((128, 128), (128, 128))  # squares: one canvas


def test_real_pixel_fraction_at_800_1333(coco128_first13):
    """The eval pipeline at short side 800 / max 1333: >= 70 % of canvas pixels are image (square: 47 %)."""
    ds = build_dataset(coco128_first13, training=False, global_batch_size=4, eval_short_side=800,
                       max_size=1333, max_instances=8, mask_crop_size=14)
    real_pixels = canvas_pixels = 0
    canvases = set()
    for batch in ds:
        canvases.add(_check_one_orientation(batch))
        info = batch["image_info"].numpy()
        real = batch["image_id"].numpy() >= 0
        real_pixels += (info[real, 1, 0] * info[real, 1, 1]).sum()
        canvas_pixels += real.sum() * np.prod(batch["images"].shape[1:3])
    assert canvases == {(800, 1344), (1344, 800)}
    assert real_pixels / canvas_pixels >= 0.70, real_pixels / canvas_pixels


def test_training_batches_one_orientation_same_canvas_sequence_on_every_replica():
    root = require(COCO128)
    src = CocoSource(root / "annotations" / "instances_train2017.json", root / "train2017")
    src._training_image_ids = src.training_image_ids[:30]  # 22 landscape, 8 portrait
    sequences, ids = [], []
    for replica in (0, 1):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=replica,
                                         num_replicas_in_sync=2)
        ds = build_dataset(src, training=True, global_batch_size=4, input_context=ctx, seed=5, **TINY)
        batches = list(ds.take(12))
        sequences.append([_check_one_orientation(b) for b in batches])
        ids.append({int(i) for b in batches for i in b["image_id"].numpy()})
    assert sequences[0] == sequences[1]
    assert set(sequences[0]) == {LANDSCAPE, PORTRAIT}
    assert not ids[0] & ids[1]  # the replicas read disjoint shards


def test_eval_covers_every_image_once_one_orientation_per_batch(coco128_first13):
    shards, sequences = [], []
    for replica in (0, 1):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=replica,
                                         num_replicas_in_sync=2)
        ds = build_dataset(coco128_first13, training=False, global_batch_size=4, input_context=ctx, **TINY)
        batches = list(ds)
        assert all(len(b["image_id"]) == 2 for b in batches)
        sequences.append([_check_one_orientation(b) for b in batches])
        shards.append(np.concatenate([b["image_id"].numpy() for b in batches]))
    # 8 landscape -> 4 per replica -> 2 batches of 2; 5 portrait -> 3 and 2 -> 2 batches each.
    assert sequences[0] == sequences[1] == [LANDSCAPE] * 2 + [PORTRAIT] * 2
    real = np.concatenate(shards)
    real = real[real >= 0]
    assert len(real) == len(set(real)) == 13
    assert sorted(real) == sorted(coco128_first13.image_ids)


def test_training_iterator_state_saves_and_restores(tmp_path):
    root = require(COCO128)
    src = CocoSource(root / "annotations" / "instances_train2017.json", root / "train2017")
    src._training_image_ids = src.training_image_ids[:13]
    ds = build_dataset(src, training=True, global_batch_size=2, seed=1, **TINY)
    options = tf.data.Options()  # decoding runs in tf.numpy_function, as in the Trainer
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    iterator = iter(ds.with_options(options))
    for _ in range(3):
        next(iterator)
    checkpoint = tf.train.Checkpoint(it=iterator)
    path = checkpoint.save(str(tmp_path / "data"))

    def take(n):
        out = []
        for _ in range(n):
            b = next(iterator)
            out.append((tuple(b["images"].shape[1:3]), b["image_id"].numpy().tolist(),
                        float(b["image_info"][0, 1, 0])))
        return out

    expected = take(10)
    checkpoint.restore(path)
    assert take(10) == expected
    assert {canvas for canvas, _, _ in expected} == {LANDSCAPE, PORTRAIT}
