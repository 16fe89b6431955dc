"""Issue 8.8: a 0-byte (or otherwise unreadable) image file is found at start-up, not mid-run.

Before: the file failed only when first read, mid-run, inside a 114-line TF traceback.
"""

import json
import time

import pytest

from rethink_tf.data import coco as coco_lib
from rethink_tf.data.sources import CocoSource

from .coco_faults import COCO128, coco128_subset, run_train


def test_zero_byte_image_fails_at_source_construction(tmp_path, caplog):
    ann_file, image_dir, dataset = coco128_subset(tmp_path, num_images=3)
    empty, not_image = dataset["images"][1]["file_name"], dataset["images"][2]["file_name"]
    (image_dir / empty).write_bytes(b"")
    (image_dir / not_image).write_text("<html>404</html>")
    with pytest.raises(ValueError, match=rf"2 bad image file\(s\) in {image_dir}: "
                                                     rf"empty \(0 bytes\): .*{empty} .*; not a JPEG/PNG/GIF/BMP "
                                                     rf"file .*{not_image}"):
        CocoSource(ann_file, image_dir)
    with caplog.at_level("WARNING"):
        source = CocoSource(ann_file, image_dir, skip_missing_images=True)  # the documented switch
    assert source.image_ids == [dataset["images"][0]["id"]]
    assert source.index.skipped["empty_image_file"] == 1 and source.index.skipped["unreadable_image_file"] == 1
    assert f"{empty}: empty (0 bytes)" in caplog.text


def test_header_check_is_cheap():
    """128 coco128 files: well under a second (the check reads only each file's header)."""
    if not COCO128.exists():
        pytest.skip(f"real COCO data not found at {COCO128}")
    images = {im["id"]: im for im in json.loads(
        (COCO128 / "annotations" / "instances_train2017.json").read_text())["images"]}
    start = time.perf_counter()
    assert coco_lib.check_image_files(images, COCO128 / "train2017") == {}
    assert time.perf_counter() - start < 1.0


def test_zero_byte_image_through_the_train_cli(tmp_path):
    """The real CLI stops at start-up with one line naming the file, exit 2, no Python traceback."""
    data = tmp_path / "data"
    ann_file, image_dir, dataset = coco128_subset(data, num_images=2)
    empty = dataset["images"][1]["file_name"]
    (image_dir / empty).write_bytes(b"")
    proc = run_train(tmp_path, data)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"empty (0 bytes): {image_dir / empty}" in proc.stderr
    assert not (tmp_path / "run" / "checkpoint").exists()
