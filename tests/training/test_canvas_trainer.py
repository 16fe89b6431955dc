"""The Trainer on aspect-grouped batches: two canvases, one trace each, exact resume of the data."""

from pathlib import Path

import pytest
import tensorflow as tf

import toy_train_script as script
from rethink_tf.training import distribute

COCO128 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco128"
TINY = dict(train_short_side=(64, 64), eval_short_side=64, max_size=96, max_instances=4, mask_crop_size=14)


@pytest.fixture(scope="module")
def dataset_fn():
    if not COCO128.exists():
        pytest.skip(f"real COCO data not found at {COCO128}")
    from rethink_tf.data.input_pipeline import build_dataset
    from rethink_tf.data.sources import CocoSource
    src = CocoSource(COCO128 / "annotations" / "instances_train2017.json", COCO128 / "train2017")
    src._training_image_ids = src.training_image_ids[:30]  # 22 landscape, 8 portrait

    def to_toy_labels(batch):  # the toy detector has 3 classes
        classes = batch["gt_classes"]
        return {**batch, "gt_classes": tf.where(classes > 0, (classes - 1) % 3 + 1, classes)}

    return lambda ctx: build_dataset(src, training=True, global_batch_size=2, input_context=ctx, seed=0,
                                     **TINY).map(to_toy_labels)


def _run(model_dir, dataset_fn, max_steps):
    """Trains up to max_steps more steps; returns ({step: (canvas, image ids)}, the trainer)."""
    trainer = script.make_trainer(str(model_dir), distribute.get_strategy("default"), "gn", dataset_fn, 8, 2,
                                  checkpoint_every=2)
    trainer.restore_or_initialize()
    step_fn = trainer._build_train_step()
    seen = {}

    def logged(batch):
        seen[trainer.step + 1] = (tuple(batch["images"].shape[1:3]), batch["image_id"].numpy().tolist())
        return step_fn(batch)

    trainer._train_step = logged
    trainer.train(max_steps=max_steps)
    return seen, step_fn


def test_trainer_trains_on_both_canvases_and_resumes_the_same_batches(tmp_path, dataset_fn):
    reference, step_fn = _run(tmp_path / "full", dataset_fn, 8)
    assert {canvas for canvas, _ in reference.values()} == {(64, 96), (96, 64)}
    assert step_fn.experimental_get_tracing_count() == 2  # one trace per canvas
    first, _ = _run(tmp_path / "resumed", dataset_fn, 4)
    resumed, _ = _run(tmp_path / "resumed", dataset_fn, 4)
    assert sorted(first) == [1, 2, 3, 4] and sorted(resumed) == [5, 6, 7, 8]
    assert {**first, **resumed} == reference
