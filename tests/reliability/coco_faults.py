"""Faults injected for real (issue 8): tiny COCO dirs built from real coco128 images and annotations.

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


def run_train(tmp_path, data_root, *bindings, flags=(), model_dir=None, timeout=300):
    """Runs `python -m rethink_tf.train` (coco128_overfit.gin on the COCO dir from `coco128_subset`).

    Returns the subprocess.CompletedProcess (text stdout / stderr).
    """
    import subprocess
    import sys
    data = [f'CocoSource.root = "{data_root}"', 'CocoSource.annotation_file = "ann.json"',
            'CocoSource.image_dir = "images"', "CocoSource.subset_size = None"]
    return subprocess.run(
        [sys.executable, "-m", "rethink_tf.train", "--gin_file=gin_configs/coco128_overfit.gin",
         *[f"--gin_bindings={b}" for b in (*data, *bindings)],
         f"--model_dir={model_dir or tmp_path / 'run'}", *flags],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True, text=True, timeout=timeout)
