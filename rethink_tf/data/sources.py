"""Data sources: where images and annotations come from, in one decoded-example format.

Every source exposes: `.name`, `.categories` (label i+1 <-> categories[i]),
`.num_classes`, `.label_to_category_id(label)` (also `.label_to_category_id_array`),
`.category_id_to_label(category_id)`, `.image_ids` (ids it yields, after subsetting), `.coco_gt()`,
`.has_masks`, `.has_keypoints`, `.image_sizes()` ({image_id: (height, width)} from the annotations,
without decoding, or None when unknown), and `example_dataset(..., orientation=None)`, a tf.data.Dataset
of decoded examples (orientation "landscape": only images with h <= w, "portrait": only h > w; what
the input pipeline's per-orientation canvases need):

    image_id  int64 []
    image     uint8 [h, w, 3] RGB, original size
    boxes     float32 [n, 4] yxyx, original image pixels
    classes   int32 [n] contiguous labels 1..K
    is_crowd  bool [n]
    masks     uint8 [n, S, S] box-cropped masks (only if has_masks)
    keypoints float32 [n, K_pts, 3] (x, y, visibility) original pixels (only if has_keypoints)

`rethink_tf.data.input_pipeline.build_dataset` turns those into fixed-shape batches.
"""

import contextlib
import io
import json
import os

import gin
import numpy as np
import tensorflow as tf
from absl import logging
from pycocotools.coco import COCO

from rethink_tf.data import coco as coco_lib
from rethink_tf.data import masks as mask_lib
from rethink_tf.utils import validate


def coco_from_dict(dataset):
    """A pycocotools COCO object built from an in-memory dict (no printing)."""
    gt = COCO()
    gt.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


class DataSource:
    """Shared category bookkeeping; subclasses set name, categories, image_ids, has_masks, has_keypoints."""

    name: str
    categories: list
    image_ids: list
    has_masks: bool
    has_keypoints: bool
    keypoint_names: tuple = ()

    @property
    def num_classes(self):
        return len(self.categories)

    @property
    def label_to_category_id_array(self):
        """int64 [K + 1]: entry l is the dataset category id of label l; entry 0 (background) is 0."""
        return np.array([0] + [c["id"] for c in self.categories], np.int64)

    def label_to_category_id(self, label):
        """Contiguous label(s) 1..K -> dataset category id(s); accepts an int or an integer array."""
        label = np.asarray(label)
        if np.any((label < 1) | (label > self.num_classes)):
            raise ValueError(f"labels must be in 1..{self.num_classes}, got {label}")
        ids = self.label_to_category_id_array[label]
        return int(ids) if ids.ndim == 0 else ids

    def category_id_to_label(self, category_id):
        """Dataset category id(s) -> contiguous label(s) 1..K."""
        lookup = {c["id"]: i + 1 for i, c in enumerate(self.categories)}
        arr = np.asarray(category_id)
        try:
            out = np.vectorize(lookup.__getitem__, otypes=[np.int64])(arr)
        except KeyError as e:
            raise ValueError(f"{self.name}: unknown category id {e}") from None
        return int(out) if out.ndim == 0 else out

    def num_examples(self, training):
        return len(self.training_image_ids if training else self.image_ids)

    @property
    def training_image_ids(self):
        return self.image_ids

    def image_sizes(self):
        """{image_id: (height, width)} of the images the source yields (no decoding); None: unknown."""
        return None

    def example_dataset(self, *, training, mask_crop_size, input_context=None, seed=None,
                        shuffle_buffer=1000, orientation=None):
        raise NotImplementedError(f"{type(self).__name__} must implement example_dataset")


ORIENTATIONS = (None, "landscape", "portrait")


def select_orientation(image_ids, sizes, orientation):
    """The ids of `image_ids` (order kept) whose image has `orientation`: "landscape" (h <= w),
    "portrait" (h > w) or None (all)."""
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    if orientation is None:
        return list(image_ids)
    from rethink_tf.data.preprocess import is_portrait
    want = orientation == "portrait"
    return [i for i in image_ids if is_portrait(*sizes[i]) == want]


def _shard(ds, input_context, num_ids=None, training=False):
    """Shards by input pipeline. In training, a list shorter than the number of pipelines (e.g. the
    few portrait images of a small set) is not sharded: every pipeline draws from all of it."""
    if input_context is not None and input_context.num_input_pipelines > 1:
        if training and num_ids is not None and num_ids < input_context.num_input_pipelines:
            return ds
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return ds


@gin.configurable
class CocoSource(DataSource):
    """Any COCO-format directory: an instances (or person_keypoints) json plus an image folder.

    Args:
      annotation_file: path of the json.
      image_dir: folder of the images.
      root: optional directory that relative annotation_file / image_dir are joined to (lets one gin
        macro hold a dataset's location); "~" is expanded.
      name: label for logs and file names (default: the json's base name).
      subset_size: keep a deterministic random subset of this many images (None: all). The subset is drawn
        from the images that have at least one usable non-crowd annotation, so N images means N training
        images (the paper's 35k/10k/3.5k/1k regimes). Smaller subsets with the same seed are nested.
      subset_seed: seed of the subset.
      skip_missing_images: skip (with a warning, counted by reason) images whose file is missing, empty,
        not an image or of another size than the json says, instead of failing at start-up with an
        `ImageFileError` listing them. Both read only each file's header (`coco.check_image_file`).
      validate_images: also fully decode every image at start-up and fail listing the undecodable ones
        (slow on big sets). Without it, a file whose header is good but whose pixel data is corrupt
        fails when first read, with an error naming the file.
      use_keypoints: read keypoints when the json has them.
      min_keypoints_per_image: train only on images whose non-crowd instances have at least this many
        labeled keypoints in total (0: no filter; 1: Detectron's keypoint training, which keeps only
        images with visible keypoints, and detectron2's MIN_KEYPOINTS_PER_IMAGE); a subset is drawn
        among those images. Without a subset, evaluation (`image_ids`) still covers every image.
    """

    def __init__(self, annotation_file, image_dir, *, root=None, name=None, subset_size=None, subset_seed=0,
                 skip_missing_images=False, validate_images=False, use_keypoints=True, min_keypoints_per_image=0):
        validate.path("CocoSource.annotation_file", annotation_file)
        validate.path("CocoSource.image_dir", image_dir)
        validate.path("CocoSource.root", root, allow_none=True)
        validate.string("CocoSource.name", name, allow_none=True)
        validate.integer("CocoSource.subset_size", subset_size, minimum=1, allow_none=True)
        validate.integer("CocoSource.subset_seed", subset_seed)
        for flag in ("skip_missing_images", "validate_images", "use_keypoints"):
            validate.boolean(f"CocoSource.{flag}", locals()[flag])
        validate.integer("CocoSource.min_keypoints_per_image", min_keypoints_per_image, minimum=0)
        if root is not None:
            root = os.path.expanduser(os.fspath(root))
            annotation_file = os.path.join(root, os.fspath(annotation_file))
            image_dir = os.path.join(root, os.fspath(image_dir))
        self.index = coco_lib.load_coco(annotation_file, image_dir, skip_missing_images=skip_missing_images)
        self.name = name or os.path.splitext(os.path.basename(os.fspath(annotation_file)))[0]
        self.categories = [{"id": c["id"], "name": c["name"]} for c in self.index.categories]
        self.has_masks = self.index.has_masks
        self.has_keypoints = self.index.has_keypoints and use_keypoints
        self.keypoint_names = self.index.keypoint_names if self.has_keypoints else ()
        self.subset_size, self.subset_seed = subset_size, subset_seed
        pool = self.index.training_image_ids
        if min_keypoints_per_image:
            if not self.has_keypoints:
                raise validate.ConfigError(f"CocoSource.min_keypoints_per_image = {min_keypoints_per_image} but "
                                           f"{annotation_file} has no keypoints (or use_keypoints is False)")
            pool = [i for i in pool if self._labeled_keypoints(i) >= min_keypoints_per_image]
        if subset_size is None:
            self.image_ids = self.index.all_image_ids
        else:
            self.image_ids = coco_lib.select_subset(pool, subset_size, subset_seed)
        if validate_images:
            bad = coco_lib.find_undecodable_images(self.index, self.image_ids)
            if bad:
                raise validate.InputError(f"{len(bad)} undecodable image(s) in {image_dir}: "
                                 + "; ".join(msg for _, msg in bad[:5]))
        trainable = set(pool)
        self._training_image_ids = [i for i in self.image_ids if i in trainable]
        self._label_of = self.index.category_id_to_label

    def _labeled_keypoints(self, image_id):
        return sum(int(np.sum(np.asarray(a["keypoints"][2::3]) > 0))
                   for a in self.index.annotations.get(image_id, []) if not a.get("iscrowd") and a.get("keypoints"))

    @property
    def training_image_ids(self):
        """The yielded ids that have a usable non-crowd annotation (training skips the others)."""
        return self._training_image_ids

    def instances_per_image(self):
        """{image_id: number of usable annotations, crowd included} over `image_ids`."""
        return {i: len(self.index.annotations.get(i, [])) for i in self.image_ids}

    def coco_gt(self):
        """pycocotools COCO of the validated annotations of `image_ids` (original coordinates and ids)."""
        ids = set(self.image_ids)
        anns = []
        for i in self.image_ids:
            for a in self.index.annotations.get(i, []):
                a = {k: v for k, v in a.items() if k != "clipped_bbox"}
                a.setdefault("iscrowd", 0)
                a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
                anns.append(a)
        dataset = {k: v for k, v in self.index.raw.items() if k not in ("images", "annotations")}
        dataset["images"] = [im for im in self.index.raw["images"] if im["id"] in ids]
        dataset["annotations"] = anns
        return coco_from_dict(dataset)

    def image_sizes(self):
        """{image_id: (height, width)} from the json, for every image of the index."""
        return {i: (im["height"], im["width"]) for i, im in self.index.images.items()}

    def load_example(self, image_id, mask_crop_size):
        """Decodes one image and its annotations into numpy arrays (the decoded-example format)."""
        image_id = int(image_id)
        im = self.index.images[image_id]
        height, width = im["height"], im["width"]
        image = coco_lib.decode_image_file(self.index.image_path(image_id), image_id, (height, width))
        anns = self.index.annotations.get(image_id, [])
        n = len(anns)
        boxes = np.zeros((n, 4), np.float32)
        classes = np.zeros((n,), np.int32)
        is_crowd = np.zeros((n,), bool)
        masks = np.zeros((n, mask_crop_size, mask_crop_size), np.uint8)
        num_kp = len(self.keypoint_names)
        keypoints = np.zeros((n, num_kp, 3), np.float32)
        for j, a in enumerate(anns):
            x, y, w, h = a["clipped_bbox"]
            boxes[j] = (y, x, y + h, x + w)
            classes[j] = self._label_of[a["category_id"]]
            is_crowd[j] = bool(a.get("iscrowd", 0))
            if self.has_masks and a.get("segmentation"):
                masks[j] = mask_lib.annotation_box_mask(a["segmentation"], a["clipped_bbox"], height, width,
                                                        mask_crop_size)
            if num_kp and "keypoints" in a:
                keypoints[j] = np.asarray(a["keypoints"], np.float32).reshape(num_kp, 3)
        return image, boxes, classes, is_crowd, masks, keypoints

    def example_dataset(self, *, training, mask_crop_size, input_context=None, seed=None,
                        shuffle_buffer=1000, orientation=None):
        """Decoded examples; training: sharded, shuffled every epoch, repeated. Eval: one ordered pass.

        `orientation` keeps only landscape (h <= w) or portrait (h > w) images, chosen from the json's
        sizes before anything is decoded. Decoding (PIL + pycocotools) runs in Python via
        tf.numpy_function, in parallel map calls.
        """
        ids = self.training_image_ids if training else self.image_ids
        if not ids:
            raise validate.InputError(f"source {self.name}: no images to {'train on' if training else 'evaluate'}")
        ids = select_orientation(ids, self.image_sizes() if orientation else None, orientation)
        if not ids:
            raise validate.InputError(f"source {self.name}: no {orientation} images")
        ds = _shard(tf.data.Dataset.from_tensor_slices(np.asarray(ids, np.int64)), input_context, len(ids),
                    training)
        if training:
            ds = ds.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True).repeat()
        num_kp = len(self.keypoint_names)

        def load(image_id):
            outs = tf.numpy_function(
                lambda i: self.load_example(i, mask_crop_size), [image_id],
                [tf.uint8, tf.float32, tf.int32, tf.bool, tf.uint8, tf.float32], stateful=False)
            image, boxes, classes, is_crowd, masks, keypoints = outs
            example = {
                "image_id": image_id,
                "image": tf.ensure_shape(image, [None, None, 3]),
                "boxes": tf.ensure_shape(boxes, [None, 4]),
                "classes": tf.ensure_shape(classes, [None]),
                "is_crowd": tf.ensure_shape(is_crowd, [None]),
            }
            if self.has_masks:
                example["masks"] = tf.ensure_shape(masks, [None, mask_crop_size, mask_crop_size])
            if self.has_keypoints:
                example["keypoints"] = tf.ensure_shape(keypoints, [None, num_kp, 3])
            return example

        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def _cache_root():
    return os.environ.get("RETHINK_TF_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "rethink_tf")


@gin.configurable
class SyntheticShapesSource(CocoSource):
    """The embedded default dataset: procedurally generated shapes, made on first use and cached.

    Images and a COCO json are written under `<data_dir>/synthetic_shapes/<version>/` (data_dir default:
    $RETHINK_TF_DATA_DIR or ~/.cache/rethink_tf). See rethink_tf/data/synthetic_shapes.py for the content.

    Args:
      split: "train" or "val".
      data_dir: cache root (None: env var / default).
      num_train_images, num_val_images: split sizes.
      image_size: side of the square images in pixels.
      subset_size, subset_seed: as CocoSource.
    """

    def __init__(self, split="train", *, data_dir=None, num_train_images=2000, num_val_images=500,
                 image_size=128, subset_size=None, subset_seed=0):
        from rethink_tf.data import synthetic_shapes  # local: keeps module import light
        validate.one_of("SyntheticShapesSource.split", split, ("train", "val"))
        validate.path("SyntheticShapesSource.data_dir", data_dir, allow_none=True)
        for name, value in (("num_train_images", num_train_images), ("num_val_images", num_val_images)):
            validate.integer(f"SyntheticShapesSource.{name}", value, minimum=1)
        validate.integer("SyntheticShapesSource.image_size", image_size, minimum=32)
        validate.integer("SyntheticShapesSource.subset_size", subset_size, minimum=1, allow_none=True)
        validate.integer("SyntheticShapesSource.subset_seed", subset_seed)
        root = synthetic_shapes.ensure_generated(
            data_dir or _cache_root(), num_train_images=num_train_images, num_val_images=num_val_images,
            image_size=image_size)
        super().__init__(os.path.join(root, "annotations", f"instances_{split}.json"),
                         os.path.join(root, split), name=f"synthetic_shapes_{split}",
                         subset_size=subset_size, subset_seed=subset_seed)


def write_image_ids(source, model_dir):
    """Writes the source's image ids (after subsetting) to `<model_dir>/image_ids_<source.name>.json`.

    The file records the source name, subset settings and the sorted ids, so a run's data can be
    reproduced. Returns the path written.
    """
    os.makedirs(model_dir, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in source.name)
    path = os.path.join(model_dir, f"image_ids_{safe}.json")
    record = {
        "source": source.name,
        "subset_size": getattr(source, "subset_size", None),
        "subset_seed": getattr(source, "subset_seed", None),
        "num_images": len(source.image_ids),
        "image_ids": [int(i) for i in source.image_ids],
    }
    with open(path, "w") as f:
        json.dump(record, f)
    logging.info("Wrote %d image ids of %s to %s", len(source.image_ids), source.name, path)
    return path
