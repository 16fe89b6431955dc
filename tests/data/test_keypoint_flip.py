"""Flipped image <-> flipped keypoints: after the input pipeline's horizontal flip, each keypoint slot
points at the pixel of its left/right partner (a person's left eye becomes the mirror image's right eye)."""
import json

import numpy as np
from PIL import Image

from rethink_tf.data.input_pipeline import build_dataset
from rethink_tf.data.sources import CocoSource

NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear"]
PIXELS = [(30, 20), (22, 12), (40, 12), (10, 25), (50, 26)]  # (column, row) of each keypoint, distinct colours


def test_flipped_keypoints_land_on_their_partners_pixels(tmp_path):
    image = np.zeros((64, 64, 3), np.uint8)
    for k, (c, r) in enumerate(PIXELS):
        image[r, c] = (40 * (k + 1), 255 - 40 * k, 20 * k)
    (tmp_path / "images").mkdir()
    Image.fromarray(image).save(tmp_path / "images" / "a.png")
    keypoints = [v for c, r in PIXELS for v in (c + 0.5, r + 0.5, 2)]  # pixel centres, continuous coords
    ann = {"images": [{"id": 1, "file_name": "a.png", "height": 64, "width": 64}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [5, 5, 50, 40],
                            "area": 2000, "keypoints": keypoints, "num_keypoints": 5}],
           "categories": [{"id": 1, "name": "person", "keypoints": NAMES}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    source = CocoSource(tmp_path / "ann.json", tmp_path / "images")
    assert source.keypoint_names == tuple(NAMES)
    common = dict(training=True, global_batch_size=1, train_short_side=(64, 64), max_size=64, canvas_size=64,
                  max_instances=2, mask_crop_size=8, seed=0)
    plain = next(iter(build_dataset(source, flip_prob=0.0, **common)))
    flipped = next(iter(build_dataset(source, flip_prob=1.0, **common)))
    np.testing.assert_array_equal(flipped["images"][0].numpy(), plain["images"][0].numpy()[:, ::-1])

    def colour_at(batch, k):
        x, y, v = batch["gt_keypoints"][0, 0, k].numpy()
        assert v == 2
        return batch["images"][0, int(np.floor(y)), int(np.floor(x))].numpy()

    partner = [0, 2, 1, 4, 3]
    for k in range(len(NAMES)):
        np.testing.assert_array_equal(colour_at(flipped, k), colour_at(plain, partner[k]))
        assert not np.array_equal(colour_at(flipped, k), colour_at(plain, k)) or partner[k] == k
