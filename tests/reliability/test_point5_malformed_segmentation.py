"""Issue 8.5: segmentations pycocotools cannot take are found at load time, repaired or skipped, counted.

Before: a first polygon of 4 numbers before a valid one loaded silently, trained, and crashed the first
evaluation inside pycocotools (`TypeError: Argument 'bb' has incorrect type`).
"""

import json
import math

import pytest
from pycocotools import mask as mask_utils

from rethink_tf.data.sources import CocoSource, coco_from_dict
from rethink_tf.evaluation.coco_evaluator import coco_metrics, encode_mask

from .coco_faults import coco128_subset

# pycocotools 2.0.x + numpy 2 warns on every decode; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def _break_segmentations(dataset):
    """Injects the faults; returns {annotation id: what was done}."""
    by_id = {a["id"]: a for a in dataset["annotations"]}
    valid = by_id[1038967]["segmentation"][0]
    x, y = valid[0], valid[1]
    by_id[1038967]["segmentation"] = [[x, y, x + 5, y], valid]           # 4 numbers first: read as a box
    by_id[1039564]["segmentation"] = [[x, y, math.nan, y, x, y + 9]]      # NaN only: nothing usable
    by_id[1058555]["segmentation"].append(["a", "b", "c", "d", "e", "f"])  # non-numeric after a valid one
    by_id[1913551]["segmentation"].append(valid[:7])                       # odd length after a valid one
    by_id[598548]["segmentation"] = {"size": [100, 100], "counts": [5000, 5000]}  # RLE of another size
    by_id[599491]["area"] = "big"                                          # COCOeval compares it with floats
    return {1038967: "repaired", 1039564: "skipped", 1058555: "repaired", 1913551: "repaired",
            598548: "skipped", 599491: "area"}


def test_malformed_segmentations_found_at_load_and_evaluation_runs(tmp_path, caplog):
    ann_file, image_dir, dataset = coco128_subset(tmp_path, num_images=2)
    faults = _break_segmentations(dataset)
    ann_file.write_text(json.dumps(dataset))
    # the fault is real: pycocotools cannot evaluate this json as written
    with pytest.raises(TypeError, match="'bb' has incorrect type"):
        raw = coco_from_dict(json.loads(ann_file.read_text()))
        raw.annToRLE(raw.anns[1038967])

    with caplog.at_level("WARNING"):
        source = CocoSource(ann_file, image_dir)
    # evaluation sees the repaired annotations: pycocotools evaluates a detection without crashing
    gt = source.coco_gt()
    target = next(a for a in dataset["annotations"] if a["id"] == 1038967)
    valid_mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(target["segmentation"][1:], 480, 640)))
    result = {"image_id": 9, "category_id": target["category_id"], "bbox": target["bbox"], "score": 0.9,
              "segmentation": encode_mask(valid_mask)}
    metrics = coco_metrics(gt, [result], "segm")
    assert metrics["AP50"] > 0
    assert coco_metrics(gt, [result], "bbox")["AP50"] > 0
    kept = {a["id"] for a in gt.dataset["annotations"]}
    assert not kept & {i for i, what in faults.items() if what == "skipped"}
    assert {i for i, what in faults.items() if what == "repaired"} <= kept
    for a in gt.dataset["annotations"]:
        assert gt.annToMask(a).any(), a["id"]

    assert source.index.skipped["repaired_segmentation"] == 3
    assert source.index.skipped["invalid_segmentation"] == 2
    warning = next(r.getMessage() for r in caplog.records if "pycocotools cannot take" in r.getMessage())
    assert source.index.skipped["invalid_area"] == 1
    assert str(ann_file) in warning and "3 repaired" in warning and "2 skipped" in warning
    assert "6 annotation(s)" in warning
    assert sum(f"annotation id {ann_id}:" in warning for ann_id in faults) == 5  # a few examples, named

    # training sees the same repaired polygons: the repaired annotation's mask is the valid polygon's
    _, _, _, _, masks, _ = source.load_example(9, mask_crop_size=28)
    row = [a["id"] for a in source.index.annotations[9]].index(1038967)
    assert masks[row].mean() > 0.2
