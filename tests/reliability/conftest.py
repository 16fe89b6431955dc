"""Faults injected for real (issue 8): a tiny COCO dir built from real coco128 images and annotations.

Images are copied into pytest's tmp dir (never into the repository), so a test can break one of them.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[2]
COCO128 = REPO.parent / "shared" / "data" / "coco128"


def coco128_subset(root, num_images=2):
    """Writes root/ann.json + root/images/ with the first `num_images` coco128 images and their annotations.

    Returns (annotation_file, image_dir, dataset dict as written).
    """
    ann_path = COCO128 / "annotations" / "instances_train2017.json"
    if not ann_path.exists():
        pytest.skip(f"real COCO data not found at {COCO128}")
    full = json.loads(ann_path.read_text())
    images = sorted(full["images"], key=lambda im: im["id"])[:num_images]
    ids = {im["id"] for im in images}
    dataset = {"images": images, "categories": full["categories"],
               "annotations": [a for a in full["annotations"] if a["image_id"] in ids]}
    root = Path(root)
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    for im in images:
        shutil.copyfile(COCO128 / "train2017" / im["file_name"], image_dir / im["file_name"])
    ann_file = root / "ann.json"
    ann_file.write_text(json.dumps(dataset))
    return ann_file, image_dir, dataset


def pytest_configure(config):
    # pycocotools 2.0.x + numpy 2 warns on every decode; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword")
