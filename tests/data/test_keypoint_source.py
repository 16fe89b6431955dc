"""CocoSource.min_keypoints_per_image: keypoint training uses only images with labeled keypoints."""
import json

import numpy as np
import pytest

from rethink_tf.data.sources import CocoSource
from rethink_tf.utils.validate import ConfigError

from .conftest import COCO_MINI, require


def test_training_ids_need_labeled_keypoints_and_subsets_are_drawn_among_them():
    root = require(COCO_MINI)
    ann = root / "annotations" / "person_keypoints_train2017.json"
    raw = json.loads(ann.read_text())
    labeled = {}
    for a in raw["annotations"]:
        if not a["iscrowd"]:
            labeled[a["image_id"]] = labeled.get(a["image_id"], 0) + int(np.sum(np.asarray(a["keypoints"][2::3]) > 0))
    everything = CocoSource(ann, root / "train2017")
    source = CocoSource(ann, root / "train2017", min_keypoints_per_image=1)
    assert source.image_ids == everything.image_ids  # evaluation still covers every image
    assert set(source.training_image_ids) == {i for i in everything.training_image_ids if labeled.get(i, 0) >= 1}
    assert 0 < len(source.training_image_ids) < len(everything.training_image_ids)
    many = CocoSource(ann, root / "train2017", min_keypoints_per_image=30)
    assert all(labeled[i] >= 30 for i in many.training_image_ids)
    subset = CocoSource(ann, root / "train2017", min_keypoints_per_image=1, subset_size=5)
    assert len(subset.image_ids) == 5 and subset.training_image_ids == subset.image_ids
    assert all(labeled[i] >= 1 for i in subset.image_ids)


def test_keypoint_filter_on_a_source_without_keypoints_names_the_binding():
    root = require(COCO_MINI)
    with pytest.raises(ConfigError, match="CocoSource.min_keypoints_per_image"):
        CocoSource(root / "annotations" / "instances_train2017.json", root / "train2017", min_keypoints_per_image=1)
