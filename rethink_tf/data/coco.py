"""Reading and validating a COCO-format instances json (plus its image folder).

`load_coco(annotation_file, image_dir)` returns a `CocoIndex`: the images, the annotations that are usable
for training grouped by image, the category <-> contiguous label mapping, and counts of what was skipped.

How bad input is handled (each case has a test in tests/data/test_bad_input.py):
- json missing / not json / missing "images", "annotations" or "categories": ValueError naming the file.
- annotation whose category_id is not in "categories", or whose image_id is not in "images": ValueError
  naming the file and the annotation id (start-up, before any TF work).
- bbox with width or height <= 0 (or not 4 numbers): skipped, counted as "degenerate_box".
- bbox partly outside the image: clipped to the image ("clipped_box"); entirely outside: skipped
  ("box_outside_image").
- non-crowd annotation with an empty segmentation (missing, [], or only polygons with < 3 points) in a file
  that has masks: skipped ("empty_segmentation"), since it cannot give a mask target.
- crowd annotations are kept and flagged (the model ignores crowd regions, as COCO tools do).
- images with no annotation, or only crowd ones, are kept for evaluation; training skips them
  (`CocoIndex.training_image_ids`), counted as "images_without_training_instances".
- missing image files: ValueError at start-up listing them (or skipped and counted with
  skip_missing_images=True). Undecodable files: see `decode_image_file` (clear error naming the file) and
  `find_undecodable_images` (optional start-up validation pass).
Counts are logged with absl.logging at load time and kept in `CocoIndex.skipped`.
"""

import collections
import dataclasses
import json
import os
from typing import Dict, List

import numpy as np
from absl import logging
from PIL import Image

# COCO's person keypoint order; used when a keypoint file lacks names.
COCO_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle")


@dataclasses.dataclass
class CocoIndex:
    """Validated contents of one COCO json.

    Attributes:
      annotation_file, image_dir: where it came from.
      images: {image_id: image dict from the json ("file_name", "height", "width", ...)}, all images.
      annotations: {image_id: [annotation dict]} usable annotations (bbox already clipped, key "clipped_bbox").
      categories: list of category dicts sorted by id; label i+1 <-> categories[i].
      skipped: counts of skipped/modified items by reason.
      has_masks, has_keypoints: whether segmentations / keypoints are present.
      keypoint_names: names from the categories' "keypoints" field (or COCO's) when has_keypoints.
    """
    annotation_file: str
    image_dir: str
    images: Dict[int, dict]
    annotations: Dict[int, List[dict]]
    categories: List[dict]
    skipped: Dict[str, int]
    has_masks: bool
    has_keypoints: bool
    keypoint_names: tuple
    raw: dict  # the json, for building pycocotools COCO objects

    @property
    def category_id_to_label(self):
        return {c["id"]: i + 1 for i, c in enumerate(self.categories)}

    @property
    def all_image_ids(self):
        return sorted(self.images)

    @property
    def training_image_ids(self):
        """Images with at least one usable non-crowd annotation (the ones training can learn from)."""
        return sorted(i for i, anns in self.annotations.items()
                      if any(not a.get("iscrowd", 0) for a in anns))

    def image_path(self, image_id):
        return os.path.join(self.image_dir, self.images[image_id]["file_name"])


def _segmentation_is_empty(segm):
    if not segm:
        return True
    if isinstance(segm, list):
        return not any(isinstance(p, list) and len(p) >= 6 for p in segm)
    if isinstance(segm, dict):
        return "counts" not in segm or "size" not in segm
    return True


def _fail(annotation_file, message):
    raise ValueError(f"{annotation_file}: {message}")


_HOW_TO_PROVIDE = (
    "Provide COCO-format data there, e.g. COCO 2017 from cocodataset.org unpacked as "
    "DIR/annotations/instances_{train,val}2017.json, DIR/train2017/, DIR/val2017/, and point the run at it "
    "with --gin_bindings='COCO_DIR = \"DIR\"' (gin_configs/base/data_coco2017.gin), or bind "
    "CocoSource.root / annotation_file / image_dir.")


class DataNotFoundError(FileNotFoundError, ValueError):
    """A dataset file or folder is missing; the message says where it was looked for and how to provide it."""


def load_coco(annotation_file, image_dir, *, skip_missing_images=False):
    """Loads and validates a COCO instances (or person_keypoints) json; see the module docstring.

    Args:
      annotation_file: path to the json.
      image_dir: folder holding the images named by "file_name".
      skip_missing_images: if False (default) missing image files fail at start-up; if True they are
        dropped (with their annotations) and counted as "missing_image_file".
    Returns:
      CocoIndex.
    """
    annotation_file = os.fspath(annotation_file)
    image_dir = os.fspath(image_dir)
    if not os.path.isfile(annotation_file):
        raise DataNotFoundError(f"COCO annotation file not found: {annotation_file}. {_HOW_TO_PROVIDE}")
    if not os.path.isdir(image_dir):
        raise DataNotFoundError(f"COCO image directory not found: {image_dir} (for {annotation_file}). "
                                f"{_HOW_TO_PROVIDE}")
    try:
        with open(annotation_file) as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{annotation_file}: not valid json ({e})") from e
    if not isinstance(raw, dict):
        _fail(annotation_file, "top level must be a json object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(raw.get(key), list):
            _fail(annotation_file, f'missing or non-list "{key}"')
    if not raw["categories"]:
        _fail(annotation_file, '"categories" is empty')

    skipped = collections.Counter()
    images = {}
    for im in raw["images"]:
        for key in ("id", "file_name", "height", "width"):
            if key not in im:
                _fail(annotation_file, f'image entry {im.get("id", im)} lacks "{key}"')
        if im["height"] <= 0 or im["width"] <= 0:
            _fail(annotation_file, f'image id {im["id"]} has non-positive height/width')
        if im["id"] in images:
            _fail(annotation_file, f'duplicate image id {im["id"]}')
        images[im["id"]] = im

    missing = [i for i, im in images.items() if not os.path.isfile(os.path.join(image_dir, im["file_name"]))]
    if missing:
        names = ", ".join(os.path.join(image_dir, images[i]["file_name"]) for i in missing[:5])
        if not skip_missing_images:
            raise ValueError(
                f"{annotation_file}: {len(missing)} image file(s) missing, e.g. {names} "
                "(pass skip_missing_images=True to CocoSource to skip them)")
        for i in missing:
            del images[i]
        skipped["missing_image_file"] = len(missing)

    categories = sorted(raw["categories"], key=lambda c: c["id"])
    category_ids = {c["id"] for c in categories}
    if len(category_ids) != len(categories):
        _fail(annotation_file, "duplicate category ids in categories")

    has_masks = any(not _segmentation_is_empty(a.get("segmentation")) for a in raw["annotations"])
    has_keypoints = any("keypoints" in a for a in raw["annotations"])
    keypoint_names = ()
    if has_keypoints:
        names = next((c["keypoints"] for c in categories if c.get("keypoints")), COCO_KEYPOINT_NAMES)
        keypoint_names = tuple(names)

    annotations = collections.defaultdict(list)
    seen_ids = set()
    raw_image_ids = {im["id"] for im in raw["images"]}
    for a in raw["annotations"]:
        ann_id = a.get("id")
        if ann_id is None:
            _fail(annotation_file, f"annotation without id: {str(a)[:200]}")
        if ann_id in seen_ids:
            _fail(annotation_file, f"duplicate annotation id {ann_id}")
        seen_ids.add(ann_id)
        if a.get("category_id") not in category_ids:
            _fail(annotation_file, f"annotation id {ann_id} has category_id {a.get('category_id')} "
                                   f"absent from categories {sorted(category_ids)}")
        if a.get("image_id") not in raw_image_ids:
            _fail(annotation_file, f"annotation id {ann_id} refers to image_id {a.get('image_id')} "
                                   "absent from images")
        if a["image_id"] not in images:  # its image file is missing and skipped
            continue
        bbox = a.get("bbox")
        if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) for v in bbox)
                or not (bbox[2] > 0 and bbox[3] > 0)):
            skipped["degenerate_box"] += 1
            continue
        im = images[a["image_id"]]
        x0, y0 = max(bbox[0], 0.0), max(bbox[1], 0.0)
        x1, y1 = min(bbox[0] + bbox[2], im["width"]), min(bbox[1] + bbox[3], im["height"])
        if x1 <= x0 or y1 <= y0:
            skipped["box_outside_image"] += 1
            continue
        if (x0, y0, x1, y1) != (bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]):
            skipped["clipped_box"] += 1
        if has_masks and not a.get("iscrowd", 0) and _segmentation_is_empty(a.get("segmentation")):
            skipped["empty_segmentation"] += 1
            continue
        if has_keypoints and "keypoints" in a and len(a["keypoints"]) != 3 * len(keypoint_names):
            _fail(annotation_file, f"annotation id {ann_id} has {len(a['keypoints'])} keypoint values, "
                                   f"expected {3 * len(keypoint_names)}")
        a = dict(a, clipped_bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)])
        annotations[a["image_id"]].append(a)

    index = CocoIndex(annotation_file, image_dir, images, dict(annotations), categories, {},
                      has_masks, has_keypoints, keypoint_names, raw)
    num_untrainable = len(images) - len(index.training_image_ids)
    if num_untrainable:
        skipped["images_without_training_instances"] = num_untrainable
    index.skipped = dict(skipped)
    log = logging.warning if index.skipped else logging.info
    log("Loaded %s: %d images, %d usable annotations, %d categories; skipped/modified: %s",
        annotation_file, len(images), sum(len(v) for v in annotations.values()), len(categories),
        index.skipped or "none")
    return index


def select_subset(image_ids, subset_size, subset_seed):
    """Deterministic subset of `subset_size` ids, sorted; None keeps all.

    The ids are sorted, permuted with numpy's PCG64 seeded by `subset_seed`, and the first `subset_size` are
    kept, so with one seed smaller subsets are nested in larger ones (1k in 3.5k in 10k in 35k).
    """
    ids = sorted(image_ids)
    if subset_size is None:
        return ids
    if not isinstance(subset_size, int) or subset_size <= 0:
        raise ValueError(f"subset_size must be a positive int or None, got {subset_size!r}")
    if subset_size > len(ids):
        raise ValueError(f"subset_size={subset_size} exceeds the {len(ids)} available images")
    order = np.random.default_rng(subset_seed).permutation(len(ids))
    return sorted(ids[i] for i in order[:subset_size])


def flip_permutation(keypoint_names):
    """Index permutation swapping left_* and right_* keypoints (others map to themselves)."""
    names = list(keypoint_names)
    perm = []
    for n in names:
        if n.startswith("left_") and "right_" + n[5:] in names:
            perm.append(names.index("right_" + n[5:]))
        elif n.startswith("right_") and "left_" + n[6:] in names:
            perm.append(names.index("left_" + n[6:]))
        else:
            perm.append(names.index(n))
    return perm


def decode_image_file(path, image_id=None, expected_hw=None):
    """Decodes an image file to uint8 RGB [h, w, 3] with PIL.

    Raises ValueError naming the file (and image id) if the file cannot be decoded or its size differs
    from the json's (height, width).
    """
    where = f"{path}" + (f" (image id {image_id})" if image_id is not None else "")
    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
    except Exception as e:  # PIL raises several types for corrupt data
        raise ValueError(f"cannot decode image file {where}: {type(e).__name__}: {e}") from e
    if expected_hw is not None and tuple(array.shape[:2]) != tuple(expected_hw):
        raise ValueError(f"image file {where} is {array.shape[0]}x{array.shape[1]} but the annotation "
                         f"json says {expected_hw[0]}x{expected_hw[1]}")
    return array


def find_undecodable_images(index, image_ids=None):
    """Validation pass: fully decodes the images; returns [(image_id, error message)] for the bad ones."""
    bad = []
    for i in (image_ids if image_ids is not None else index.all_image_ids):
        im = index.images[i]
        try:
            decode_image_file(index.image_path(i), i, (im["height"], im["width"]))
        except ValueError as e:
            bad.append((i, str(e)))
    return bad
