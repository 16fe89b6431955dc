"""Each kind of bad COCO input: handled as COCO tools do, skipped and counted, or a clear start-up error."""

import json

import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.data.input_pipeline import build_dataset
from rethink_tf.data.sources import CocoSource

from .conftest import square_annotation, write_tiny_coco

TINY = dict(train_short_side=(64, 64), eval_short_side=64, max_size=96, canvas_size=96, max_instances=8,
            mask_crop_size=16)


def _images(n, h=48, w=64):
    return [{"id": i + 1, "file_name": f"im{i + 1}.jpg", "height": h, "width": w} for i in range(n)]


def test_unknown_category_fails_naming_file_and_annotation(tmp_path):
    ann_file, image_dir = write_tiny_coco(tmp_path, _images(1), [
        square_annotation(1, 1, 5, 5, 10, 10), square_annotation(77, 1, 5, 5, 10, 10, category_id=4)])
    with pytest.raises(ValueError, match=r"ann\.json.*annotation id 77 has category_id 4 absent"):
        CocoSource(ann_file, image_dir)


def test_annotation_of_unknown_image_fails(tmp_path):
    ann_file, image_dir = write_tiny_coco(tmp_path, _images(1), [square_annotation(5, 9, 5, 5, 10, 10)])
    with pytest.raises(ValueError, match=r"annotation id 5 refers to image_id 9"):
        CocoSource(ann_file, image_dir)


@pytest.mark.parametrize("content,match", [
    ("{not json", "not valid json"),
    (json.dumps({"images": [], "annotations": []}), 'missing or non-list "categories"'),
    (json.dumps([1, 2]), "top level"),
])
def test_malformed_json_fails_naming_file(tmp_path, content, match):
    (tmp_path / "images").mkdir()
    ann_file = tmp_path / "broken.json"
    ann_file.write_text(content)
    with pytest.raises(ValueError, match=rf"broken\.json.*{match}"):
        CocoSource(ann_file, tmp_path / "images")


def test_missing_annotation_file_or_image_dir(tmp_path):
    with pytest.raises(ValueError, match="annotation file not found"):
        CocoSource(tmp_path / "nope.json", tmp_path)
    ann_file, _ = write_tiny_coco(tmp_path, _images(1), [])
    with pytest.raises(ValueError, match="image directory not found"):
        CocoSource(ann_file, tmp_path / "no_images")


def test_degenerate_outside_and_clipped_boxes(tmp_path):
    anns = [
        square_annotation(1, 1, 5, 5, 10, 10),       # fine
        square_annotation(2, 1, 5, 5, 0, 10),        # zero width
        square_annotation(3, 1, 5, 5, 10, -3),       # negative height
        square_annotation(4, 1, 100, 5, 10, 10),     # entirely right of the 64-wide image
        square_annotation(5, 1, 50, 40, 30, 30),     # partly outside: clipped to x 50..64, y 40..48
    ]
    anns[2]["bbox"] = [5, 5, 10, -3]
    ann_file, image_dir = write_tiny_coco(tmp_path, _images(1), anns)
    src = CocoSource(ann_file, image_dir)
    assert src.index.skipped["degenerate_box"] == 2
    assert src.index.skipped["box_outside_image"] == 1
    assert src.index.skipped["clipped_box"] == 1
    batch = next(iter(build_dataset(src, training=False, global_batch_size=1, **TINY)))
    sy, sx = 64 / 48, 85 / 64  # 48x64 -> 64x85 (rounded)
    assert (batch["gt_classes"][0].numpy() > 0).sum() == 2
    np.testing.assert_allclose(batch["gt_boxes"][0, 1].numpy(), np.array([40 * sy, 50 * sx, 48 * sy, 64 * sx]),
                               atol=1e-4)
    # the clipped instance's mask covers its (clipped) box entirely: the polygon extends past the image
    assert batch["gt_masks"][0, 1].numpy().all()
    assert [a["id"] for a in src.coco_gt().dataset["annotations"]] == [1, 5]


def test_empty_segmentation_skipped(tmp_path):
    anns = [square_annotation(1, 1, 5, 5, 10, 10), square_annotation(2, 1, 20, 5, 10, 10),
            square_annotation(3, 1, 30, 5, 10, 10)]
    anns[1]["segmentation"] = []
    anns[2]["segmentation"] = [[1, 2, 3, 4]]  # a polygon needs at least 3 points
    ann_file, image_dir = write_tiny_coco(tmp_path, _images(1), anns)
    src = CocoSource(ann_file, image_dir)
    assert src.has_masks and src.index.skipped["empty_segmentation"] == 1
    assert src.index.skipped["invalid_segmentation"] == 1
    assert [a["id"] for a in src.index.annotations[1]] == [1]


def test_boxes_only_json_has_no_masks(tmp_path):
    anns = [square_annotation(1, 1, 5, 5, 10, 10)]
    del anns[0]["segmentation"]
    ann_file, image_dir = write_tiny_coco(tmp_path, _images(1), anns)
    src = CocoSource(ann_file, image_dir)
    assert not src.has_masks
    batch = next(iter(build_dataset(src, training=True, global_batch_size=1, seed=0, **TINY)))
    assert "gt_masks" not in batch and batch["gt_classes"][0, 0] == 1


def test_crowd_only_and_unannotated_images(tmp_path):
    anns = [square_annotation(1, 1, 5, 5, 10, 10),
            square_annotation(2, 2, 5, 5, 20, 20, iscrowd=1),  # image 2: crowd only
            square_annotation(3, 1, 20, 20, 20, 20, category_id=7, iscrowd=1)]
    # uncompressed (column-major) RLE of rows 5..24 x columns 5..24 of the 48x64 image
    counts = [5 * 48 + 5] + [20, 28] * 19 + [20]
    anns[1]["segmentation"] = {"size": [48, 64], "counts": counts + [48 * 64 - sum(counts)]}
    ann_file, image_dir = write_tiny_coco(tmp_path, _images(3), anns)  # image 3: no annotation
    src = CocoSource(ann_file, image_dir)
    assert src.image_ids == [1, 2, 3] and src.training_image_ids == [1]
    assert src.index.skipped["images_without_training_instances"] == 2
    train = next(iter(build_dataset(src, training=True, global_batch_size=2, seed=0, **TINY)))
    assert train["image_id"].numpy().tolist() == [1, 1]
    # crowd regions are kept, flagged, and sorted after the real instances
    np.testing.assert_array_equal(train["gt_is_crowd"][0, :3].numpy(), [False, True, False])
    np.testing.assert_array_equal(train["gt_classes"][0, :3].numpy(), [1, 2, -1])
    evaluation = list(build_dataset(src, training=False, global_batch_size=2, **TINY))
    ids = np.concatenate([b["image_id"].numpy() for b in evaluation]).tolist()
    assert ids == [1, 2, 3, -1]
    crowd = evaluation[0]["gt_masks"][1, 0].numpy()
    assert crowd.all()  # the RLE fills its box
    assert len(src.coco_gt().getImgIds()) == 3


def test_missing_image_file_fails_at_startup_or_is_skipped(tmp_path):
    ann_file, image_dir = write_tiny_coco(tmp_path, _images(3), [square_annotation(1, 2, 5, 5, 10, 10),
                                                                 square_annotation(2, 1, 5, 5, 10, 10)])
    (image_dir / "im2.jpg").unlink()
    with pytest.raises(ValueError, match=r"1 bad image file\(s\) in .*: missing: .*im2\.jpg \(image id 2\)"):
        CocoSource(ann_file, image_dir)
    src = CocoSource(ann_file, image_dir, skip_missing_images=True)
    assert src.image_ids == [1, 3] and src.index.skipped["missing_image_file"] == 1
    assert [a["id"] for a in src.coco_gt().dataset["annotations"]] == [2]


def test_undecodable_image(tmp_path):
    ann_file, image_dir = write_tiny_coco(tmp_path, _images(2), [square_annotation(1, 2, 5, 5, 10, 10)])
    (image_dir / "im2.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(ValueError, match=r"not a JPEG/PNG/GIF/BMP file .*im2\.jpg \(image id 2\)"):
        CocoSource(ann_file, image_dir)  # the start-up header check
    # a good header over corrupt pixel data passes the header check; the full decode pass finds it,
    # and without that pass the first read names the file
    good = (image_dir / "im1.jpg").read_bytes()
    (image_dir / "im2.jpg").write_bytes(good[:len(good) // 3])
    with pytest.raises(ValueError, match=r"undecodable.*cannot decode image file .*im2\.jpg \(image id 2\)"):
        CocoSource(ann_file, image_dir, validate_images=True)
    src = CocoSource(ann_file, image_dir)
    with pytest.raises(tf.errors.OpError, match=r"cannot decode image file .*im2\.jpg \(image id 2\)"):
        list(build_dataset(src, training=False, global_batch_size=2, **TINY))


def test_image_size_mismatch_names_file(tmp_path):
    images = _images(1)
    ann_file, image_dir = write_tiny_coco(tmp_path, images, [square_annotation(1, 1, 5, 5, 10, 10)])
    images[0]["height"] = 50
    ann_file.write_text(json.dumps({"images": images, "annotations": [square_annotation(1, 1, 5, 5, 10, 10)],
                                    "categories": [{"id": 3, "name": "a"}]}))
    with pytest.raises(ValueError, match=r"image is 48x64 but the annotation json says 50x64: .*im1\.jpg "
                                         r"\(image id 1\)"):
        CocoSource(ann_file, image_dir)


@pytest.mark.parametrize("binding,value,match", [
    ("canvas_size", 100, "multiple of 32"),
    ("max_size", 200, "exceeds canvas_size"),
    ("train_short_side", (80, 60), "low <= high"),
    ("flip_prob", 1.5, r"\[0, 1\]"),
])
def test_bad_pipeline_settings_name_the_binding(tmp_path, binding, value, match):
    ann_file, image_dir = write_tiny_coco(tmp_path, _images(1), [square_annotation(1, 1, 5, 5, 10, 10)])
    src = CocoSource(ann_file, image_dir)
    settings = dict(TINY, **{binding: value})
    with pytest.raises(ValueError, match=rf"build_dataset\.{binding}=.*{match}"):
        build_dataset(src, training=True, global_batch_size=1, **settings)


def test_no_trainable_images_is_a_clear_error(tmp_path):
    ann_file, image_dir = write_tiny_coco(tmp_path, _images(1), [])
    src = CocoSource(ann_file, image_dir)
    with pytest.raises(ValueError, match="no images to train on"):
        build_dataset(src, training=True, global_batch_size=1, **TINY)


def test_more_instances_than_slots_is_logged_and_keeps_real_objects(tmp_path, caplog):
    anns = [square_annotation(1, 1, 1, 1, 5, 5, iscrowd=1)] + \
           [square_annotation(k, 1, 4 * k, 4, 4, 4) for k in range(2, 12)]
    ann_file, image_dir = write_tiny_coco(tmp_path, _images(1), anns)
    src = CocoSource(ann_file, image_dir)
    with caplog.at_level("WARNING"):
        ds = build_dataset(src, training=False, global_batch_size=1, **TINY)  # max_instances 8
    assert "1 image(s) have more than build_dataset.max_instances=8 instances (up to 11)" in caplog.text
    batch = next(iter(ds))
    assert not batch["gt_is_crowd"][0].numpy().any()  # the crowd region went first
    np.testing.assert_array_equal(batch["gt_classes"][0].numpy(), [1] * 8)
