"""Shared fixtures for the data tests: real COCO subsets read in place, and tiny synthetic COCO dirs."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
COCO128 = SHARED_DATA / "coco128"
COCO_MINI = SHARED_DATA / "coco_mini"


def require(path):
    if not path.exists():
        pytest.skip(f"real COCO data not found at {path}")
    return path


@pytest.fixture(scope="session")
def coco128_source():
    from rethink_tf.data.sources import CocoSource
    root = require(COCO128)
    return CocoSource(root / "annotations" / "instances_train2017.json", root / "train2017")


def write_tiny_coco(root, images, annotations, categories=None, image_files=True):
    """Writes a COCO dir: root/images/*.jpg (random pixels, sizes from the image entries) + root/ann.json.

    images: list of dicts with id, file_name, height, width. Returns (annotation_file, image_dir).
    """
    root = Path(root)
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    if image_files:
        for im in images:
            pixels = rng.integers(0, 255, (im["height"], im["width"], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(image_dir / im["file_name"])
    if categories is None:
        categories = [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}]
    ann_file = root / "ann.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_file, image_dir


def square_annotation(ann_id, image_id, x, y, w, h, category_id=3, iscrowd=0):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": iscrowd,
            "bbox": [x, y, w, h], "area": w * h,
            "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]}


def pytest_configure(config):
    # pycocotools 2.0.x + numpy 2 warns on every decode; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword")
