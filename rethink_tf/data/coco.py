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
- non-crowd annotation with an empty segmentation (missing or []) in a file that has masks: skipped
  ("empty_segmentation"), since it cannot give a mask target.
- segmentation shapes pycocotools cannot take (it raises, or decodes garbage, inside `annToRLE` /
  `frPyObjects` at the first evaluation): see `check_segmentation`. As detectron2's `load_coco_json` does,
  the bad polygons of an annotation are dropped and the good ones kept ("repaired_segmentation"); an
  annotation left without a usable polygon, or with a bad RLE, is skipped ("invalid_segmentation"), crowd
  regions included. One warning names the file, the counts and a few annotation ids with the reason.
  The repaired annotations are what both training (`CocoSource.load_example`) and evaluation
  (`CocoSource.coco_gt`) see.
- bbox with a non-finite value: skipped as "degenerate_box". An "area" that is not a finite number >= 0
  (COCOeval compares it with its area ranges) is dropped and recomputed from the box ("invalid_area").
- crowd annotations are kept and flagged (the model ignores crowd regions, as COCO tools do).
- images with no annotation, or only crowd ones, are kept for evaluation; training skips them
  (`CocoIndex.training_image_ids`), counted as "images_without_training_instances".
- image files missing, empty (0 bytes), without a readable image header, or whose header size differs
  from the json's height/width: `ImageFileError` at start-up listing them (or skipped and counted by reason
  with skip_missing_images=True); see `check_image_files`. Only the header is read (PIL's lazy open),
  so this costs well under a millisecond per file. A file with a good header but corrupt pixel data still
  fails when first read, with an error naming the file (`decode_image_file`), unless the optional full
  decode pass `find_undecodable_images` (CocoSource.validate_images) ran.
Counts are logged with absl.logging at load time and kept in `CocoIndex.skipped`.
"""

import collections
import dataclasses
import json
import math
import numbers
import os
from typing import Dict, List

import numpy as np
from absl import logging
from PIL import Image

from rethink_tf.utils.validate import ConfigError, InputError

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


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _polygon_problem(polygon):
    """Why pycocotools cannot rasterize one polygon, or None if it can."""
    if not isinstance(polygon, (list, tuple)):
        return f"polygon is a {type(polygon).__name__}, not a list of numbers"
    if not all(_is_number(v) for v in polygon):
        return "polygon with a non-numeric or non-finite coordinate"
    if len(polygon) < 6:
        return f"polygon with {len(polygon)} numbers (< 6, fewer than 3 points)"
    if len(polygon) % 2:
        return f"polygon with an odd number of values ({len(polygon)})"
    return None


def _rle_problem(rle, height, width):
    """Why pycocotools cannot take an RLE dict for an image of height x width, or None if it can."""
    if "counts" not in rle or "size" not in rle:
        return "RLE without counts or size"
    size = rle["size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or [v for v in size] != [height, width]):
        return f"RLE size {size!r} is not the image's [height, width] [{height}, {width}]"
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        return None if counts else "RLE with empty counts"
    if not isinstance(counts, list):
        return f"RLE counts is a {type(counts).__name__}, not a list or a string"
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in counts):
        return "RLE counts with a negative or non-integer value"
    if sum(counts) != height * width:
        return f"RLE counts sum to {sum(counts)}, not height * width = {height * width}"
    return None


def check_segmentation(segm, height, width):
    """Checks one COCO segmentation against what pycocotools' `annToRLE` / `frPyObjects` can take.

    pycocotools takes a list of polygons (each a flat list of >= 6 finite numbers, even length) or an RLE
    dict ({"size": [height, width], "counts": list of non-negative ints summing to height*width, or a
    compressed string}). Anything else raises inside pycocotools (a first polygon of 4 numbers is even
    read as a box: `TypeError: Argument 'bb' has incorrect type`) or silently decodes garbage.

    Args:
      segm: the annotation's "segmentation" (anything found in a json).
      height, width: the image's size from the json.
    Returns:
      (segmentation to use or None if there is none usable, problem message or None). When some polygons
      are bad and others good, the returned segmentation holds only the good ones.
    """
    if isinstance(segm, dict):
        problem = _rle_problem(segm, height, width)
        return (None, problem) if problem else (segm, None)
    if not isinstance(segm, list):
        return None, f"segmentation is a {type(segm).__name__}, not polygons or RLE"
    problems = [_polygon_problem(p) for p in segm]
    good = [p for p, problem in zip(segm, problems) if problem is None]
    first = next((problem for problem in problems if problem), None)
    if not good:
        return None, first or "no polygon"
    return (good if first else segm), first


class CocoFormatError(InputError):
    """The annotation json is malformed; the message names the file (and the annotation id)."""


def _fail(annotation_file, message):
    raise CocoFormatError(f"{annotation_file}: {message}")


_HOW_TO_PROVIDE = (
    "Provide COCO-format data there, e.g. COCO 2017 from cocodataset.org unpacked as "
    "DIR/annotations/instances_{train,val}2017.json, DIR/train2017/, DIR/val2017/, and point the run at it "
    "with --gin_bindings='COCO_DIR = \"DIR\"' (gin_configs/base/data_coco2017.gin), or bind "
    "CocoSource.root / annotation_file / image_dir.")


class DataNotFoundError(FileNotFoundError, ValueError):
    """A dataset file or folder is missing; the message says where it was looked for and how to provide it."""


class ImageFileError(InputError):
    """Image files are missing, empty or not images; the message lists them (file names and count)."""


# Leading bytes of the formats the pipeline decodes (PIL here, tf.io.decode_image when serving).
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def check_image_file(path, height, width):
    """Cheap start-up check of one image file: exists, non-empty, image header with the json's size.

    Reads the first bytes (JPEG / PNG / GIF / BMP signature) and the header through PIL's lazy
    `Image.open`, which decodes no pixel data: tens of microseconds per file.
    Returns:
      None if the file looks good, else (reason, message) with reason one of "missing_image_file",
      "empty_image_file", "unreadable_image_file", "image_size_mismatch".
    """
    try:
        size = os.stat(path).st_size
    except OSError:
        return "missing_image_file", "missing"
    if size == 0:
        return "empty_image_file", "empty (0 bytes)"
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if not head.startswith(_IMAGE_SIGNATURES):
                return "unreadable_image_file", f"not a JPEG/PNG/GIF/BMP file (starts with {head[:4]!r})"
            f.seek(0)
            with Image.open(f) as im:
                w, h = im.size
    except Exception as e:  # PIL raises several types for a truncated or corrupt header
        return "unreadable_image_file", f"unreadable image header ({type(e).__name__}: {e})"
    if (h, w) != (height, width):
        return "image_size_mismatch", f"image is {h}x{w} but the annotation json says {height}x{width}"
    return None


def check_image_files(images, image_dir):
    """`check_image_file` over {image_id: image dict}; returns {image_id: (reason, message)} of the bad."""
    bad = {}
    for i, im in images.items():
        problem = check_image_file(os.path.join(image_dir, im["file_name"]), im["height"], im["width"])
        if problem:
            bad[i] = problem
    return bad


def load_coco(annotation_file, image_dir, *, skip_missing_images=False, raw=None):
    """Loads and validates a COCO instances (or person_keypoints) json; see the module docstring.

    Args:
      annotation_file: path to the json (with `raw`: only the name errors and logs give the data).
      image_dir: folder holding the images named by "file_name".
      skip_missing_images: if False (default) missing, empty or unreadable image files (see
        `check_image_file`) fail at start-up with an `ImageFileError` listing them; if True they are
        dropped (with their annotations), counted by reason and named in one warning.
      raw: the json's content already in memory (e.g. converted from VOC XML by rethink_tf.data.voc).
    Returns:
      CocoIndex.
    """
    annotation_file = os.fspath(annotation_file)
    image_dir = os.fspath(image_dir)
    if raw is None and not os.path.isfile(annotation_file):
        raise DataNotFoundError(f"COCO annotation file not found: {annotation_file}. {_HOW_TO_PROVIDE}")
    if not os.path.isdir(image_dir):
        raise DataNotFoundError(f"COCO image directory not found: {image_dir} (for {annotation_file}). "
                                f"{_HOW_TO_PROVIDE}")
    try:
        if raw is None:
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
    images_raw = {im.get("id"): im for im in raw["images"] if isinstance(im, dict)}
    for im in raw["images"]:
        for key in ("id", "file_name", "height", "width"):
            if key not in im:
                _fail(annotation_file, f'image entry {im.get("id", im)} lacks "{key}"')
        if im["height"] <= 0 or im["width"] <= 0:
            _fail(annotation_file, f'image id {im["id"]} has non-positive height/width')
        if im["id"] in images:
            _fail(annotation_file, f'duplicate image id {im["id"]}')
        images[im["id"]] = im

    bad_files = check_image_files(images, image_dir)
    if bad_files:
        if not skip_missing_images:
            raise ImageFileError(
                f"{annotation_file}: {len(bad_files)} bad image file(s) in {image_dir}: "
                + "; ".join(f"{problem}: {os.path.join(image_dir, images[i]['file_name'])} (image id {i})"
                            for i, (_, problem) in list(bad_files.items())[:10])
                + (" ..." if len(bad_files) > 10 else "")
                + " (CocoSource.skip_missing_images = True skips them with a warning)")
        for i, (reason, _) in bad_files.items():
            del images[i]
            skipped[reason] += 1
        logging.warning("%s: skipped %d bad image file(s), e.g. %s", annotation_file, len(bad_files),
                        "; ".join(f"{images_raw[i]['file_name']}: {p}" for i, (_, p) in list(bad_files.items())[:5]))

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
    segmentation_problems = []  # (annotation id, problem)
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
                or not all(_is_number(v) for v in bbox)
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
        segm = a.get("segmentation")
        if has_masks:
            # pycocotools evaluates every GT mask, crowd regions included: no segmentation -> no annotation.
            if not segm:
                skipped["empty_segmentation"] += 1
                continue
            usable, problem = check_segmentation(segm, im["height"], im["width"])
            if problem:
                segmentation_problems.append((ann_id, problem))
                if usable is None:
                    skipped["invalid_segmentation"] += 1
                    continue
                skipped["repaired_segmentation"] += 1
                a = dict(a, segmentation=usable)
        if has_keypoints and "keypoints" in a and len(a["keypoints"]) != 3 * len(keypoint_names):
            _fail(annotation_file, f"annotation id {ann_id} has {len(a['keypoints'])} keypoint values, "
                                   f"expected {3 * len(keypoint_names)}")
        if "area" in a and not (_is_number(a["area"]) and a["area"] >= 0):
            segmentation_problems.append((ann_id, f"area {a['area']!r} is not a number >= 0"))
            skipped["invalid_area"] += 1
            a = {k: v for k, v in a.items() if k != "area"}  # CocoSource.coco_gt recomputes it from the box
        a = dict(a, clipped_bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)])
        annotations[a["image_id"]].append(a)

    if segmentation_problems:
        logging.warning(
            "%s: %d annotation(s) have segmentations or areas pycocotools cannot take: %d repaired (bad "
            "polygons dropped), %d skipped (nothing usable left), %d areas recomputed from the box; e.g. %s",
            annotation_file, len(segmentation_problems), skipped["repaired_segmentation"],
            skipped["invalid_segmentation"], skipped["invalid_area"],
            "; ".join(f"annotation id {i}: {p}" for i, p in segmentation_problems[:5]))
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
        raise ConfigError(f"subset_size must be a positive int or None, got {subset_size!r}")
    if subset_size > len(ids):
        raise ConfigError(f"subset_size={subset_size} exceeds the {len(ids)} available images")
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
