"""TfdsSource: a tensorflow-datasets dataset as a data source (COCO 2017 / PASCAL VOC at scale).

Understood layouts:
- "rethink_coco_instances/..." (this package's builder, rethink_tf/data/tfds_coco.py): boxes, box-cropped
  masks, optional keypoints, original COCO category ids. The supported path to instance masks via tfds.
- tfds "coco/2017" (boxes only: tfds drops the masks): labels 0..79 map to COCO's 80 category ids.
- tfds "voc/2007", "voc/2012" and other detection sets with objects/bbox + objects/label: category ids
  are labels + 1; VOC's `is_difficult` objects become crowd-like in training by default
  (`train_difficult`: "ignore"; "drop" leaves them out as Detectron does, "keep" trains on them as
  detectron2 does; the VOC metric always ignores them). Image ids come from image/id, else from the
  digits of image/filename.

Boxes with zero width or height are dropped (counted in `skipped` by the scan); images with no
non-crowd object are skipped in training and kept for evaluation, as for CocoSource.
"""

import io
import os

import gin
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

from rethink_tf.data import coco as coco_lib
from rethink_tf.data import preprocess
from rethink_tf.data.sources import DataSource, coco_from_dict, select_orientation
from rethink_tf.utils import validate

# COCO's 80 category ids, in the order of tfds coco's 80 labels (and of the categories list).
COCO_CATEGORY_IDS = (list(range(1, 12)) + list(range(13, 26)) + [27, 28] + list(range(31, 45))
                     + list(range(46, 66)) + [67, 70] + list(range(72, 83)) + list(range(84, 91)))


@gin.configurable
class TfdsSource(DataSource):
    """A tfds detection dataset.

    Args:
      name: tfds name with config, e.g. "rethink_coco_instances/2017" (masks), "coco/2017", "voc/2012".
      split: tfds split, e.g. "train", "validation".
      data_dir: tfds data dir (None: tfds default, ~/tensorflow_datasets).
      manual_dir: COCO root for rethink_coco_instances; the dataset is prepared on first use.
      download: let tfds download and prepare public datasets (coco/2017, voc) if not prepared.
      subset_size, subset_seed: deterministic subset as CocoSource (drawn from images with a non-crowd
        object; needs one scan of the split).
      train_difficult: what training does with `is_difficult` objects (tfds voc): "ignore" (crowd-like
        regions), "drop" (left out, Detectron) or "keep" (ordinary objects, detectron2); rethink_tf.data.voc.
    """

    def __init__(self, name="rethink_coco_instances/2017", split="train", *, data_dir=None, manual_dir=None,
                 download=False, subset_size=None, subset_seed=0, train_difficult="ignore"):
        validate.string("TfdsSource.name", name)
        validate.string("TfdsSource.split", split)
        validate.path("TfdsSource.data_dir", data_dir, allow_none=True)
        validate.path("TfdsSource.manual_dir", manual_dir, allow_none=True)
        validate.boolean("TfdsSource.download", download)
        validate.integer("TfdsSource.subset_size", subset_size, minimum=1, allow_none=True)
        validate.integer("TfdsSource.subset_seed", subset_seed)
        validate.one_of("TfdsSource.train_difficult", train_difficult, ("ignore", "drop", "keep"))
        from rethink_tf.data import tfds_coco  # noqa: F401  registers rethink_coco_instances
        self.tfds_name, self.split = name, split
        data_dir = os.path.expanduser(data_dir) if data_dir else None
        manual_dir = os.path.expanduser(manual_dir) if manual_dir else None
        self.builder = tfds.builder(name, data_dir=data_dir)
        if not self.builder.is_prepared():
            if manual_dir is None and not download:
                raise validate.ConfigError(
                    f"tfds dataset {name} is not prepared in {self.builder.data_dir}: pass "
                    "TfdsSource.manual_dir (a local COCO root, for rethink_coco_instances) or "
                    "TfdsSource.download=True (public datasets), or run tfds build first")
            config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
            self.builder.download_and_prepare(download_config=config)
        if split not in self.builder.info.splits:
            raise validate.ConfigError(f"TfdsSource.split: tfds dataset {name} has no split {split!r}; it has "
                             f"{sorted(self.builder.info.splits.keys())}")
        self.name = f"{name.replace('/', '_')}_{split}"
        objects = self.builder.info.features["objects"]
        self._ours = "mask" in objects.keys() and "category_id" in objects.keys()
        metadata = self.builder.info.metadata or {}
        if self._ours:
            self.categories = [dict(c) for c in metadata["categories"]]
            self.keypoint_names = tuple(metadata.get("keypoint_names") or ())
            self.stored_mask_size = int(metadata["mask_size"])
        else:
            names = objects["label"].names
            ids = COCO_CATEGORY_IDS if name.startswith("coco") and len(names) == 80 else range(1, len(names) + 1)
            self.categories = [{"id": int(i), "name": n} for i, n in zip(ids, names)]
            self.keypoint_names = ()
        self.has_masks = self._ours
        self.has_keypoints = "keypoints" in objects.keys()
        self._crowd_key = next((k for k in ("is_crowd", "is_difficult") if k in objects.keys()), None)
        if train_difficult != "ignore" and self._crowd_key != "is_difficult":
            raise validate.ConfigError(f"TfdsSource.train_difficult = {train_difficult!r}: tfds dataset {name} "
                                       "has no is_difficult objects (only voc has)")
        self.train_difficult = train_difficult
        self.subset_size, self.subset_seed = subset_size, subset_seed
        self._scan_result = None

    # --- one pass over the split without decoding images: ids, sizes, boxes (for subsets and coco_gt) ---
    def _scan(self):
        if self._scan_result is not None:
            return self._scan_result
        decoders = {"image": tfds.decode.SkipDecoding()}
        if self._ours:
            decoders["objects"] = {"mask": tfds.decode.SkipDecoding()}
        ds = self.builder.as_dataset(split=self.split, shuffle_files=False, decoders=decoders)
        records, skipped = [], {"degenerate_box": 0}
        for ex in ds.map(self._ids_and_objects, num_parallel_calls=tf.data.AUTOTUNE).as_numpy_iterator():
            width, height = Image.open(io.BytesIO(ex["image"])).size  # header only
            boxes = ex["bbox"] * np.array([height, width, height, width], np.float32)
            ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            skipped["degenerate_box"] += int((~ok).sum())
            records.append(dict(image_id=int(ex["image_id"]), height=height, width=width, boxes=boxes[ok],
                                labels=ex["labels"][ok], crowd=ex["crowd"][ok]))
        logging.info("Scanned tfds %s[%s]: %d images, skipped %s", self.tfds_name, self.split, len(records),
                     skipped)
        self._scan_result = (records, skipped)
        return self._scan_result

    def _image_id(self, ex):
        if "image/id" in ex:
            return tf.cast(ex["image/id"], tf.int64)
        digits = tf.strings.regex_replace(ex["image/filename"], "[^0-9]", "")
        return tf.strings.to_number(digits, tf.int64)

    def _labels(self, objects):
        label = tf.cast(objects["label"], tf.int32)
        return label if self._ours else label + 1

    def _crowd(self, objects):
        if self._crowd_key is None:
            return tf.zeros_like(objects["label"], tf.bool)
        return tf.cast(objects[self._crowd_key], tf.bool)

    def _ids_and_objects(self, ex):
        return {"image_id": self._image_id(ex), "image": ex["image"], "bbox": ex["objects"]["bbox"],
                "labels": self._labels(ex["objects"]), "crowd": self._crowd(ex["objects"])}

    @property
    def image_ids(self):
        records, _ = self._scan()
        if self.subset_size is None:
            return sorted(r["image_id"] for r in records)
        return coco_lib.select_subset(self.training_candidates(), self.subset_size, self.subset_seed)

    def training_candidates(self):
        if self.train_difficult == "keep":  # difficult objects are training targets
            return [r["image_id"] for r in self._scan()[0] if len(r["crowd"])]
        return [r["image_id"] for r in self._scan()[0] if (~r["crowd"]).any()]

    @property
    def training_image_ids(self):
        candidates = set(self.training_candidates())
        return [i for i in self.image_ids if i in candidates]

    def image_sizes(self):
        """{image_id: (height, width)} of the split, from the scan (image headers, no decoding)."""
        return {r["image_id"]: (r["height"], r["width"]) for r in self._scan()[0]}

    def num_examples(self, training):
        if not training and self.subset_size is None:
            return self.builder.info.splits[self.split].num_examples
        return len(self.training_image_ids if training else self.image_ids)

    def coco_gt(self):
        """COCO ground truth. For rethink_coco_instances the original json (full masks) when it is still at
        the recorded path; otherwise built from the tfds boxes (bbox evaluation only)."""
        metadata = self.builder.info.metadata or {}
        ann_file = (metadata.get("annotation_files") or {}).get(self.split)
        ids = set(self.image_ids)
        if self._ours and ann_file and os.path.isfile(ann_file):
            index = coco_lib.load_coco(ann_file, metadata["image_dirs"][self.split])
            anns = [{k: v for k, v in a.items() if k != "clipped_bbox"}
                    for i in sorted(ids) for a in index.annotations.get(i, [])]
            for a in anns:
                a.setdefault("iscrowd", 0)
                a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
            images = [im for im in index.raw["images"] if im["id"] in ids]
            return coco_from_dict({"images": images, "annotations": anns, "categories": index.raw["categories"]})
        label_to_id = self.label_to_category_id_array
        images, anns = [], []
        for r in self._scan()[0]:
            if r["image_id"] not in ids:
                continue
            images.append({"id": r["image_id"], "height": r["height"], "width": r["width"]})
            for (y0, x0, y1, x1), label, crowd in zip(r["boxes"], r["labels"], r["crowd"]):
                w, h = float(x1 - x0), float(y1 - y0)
                anns.append({"id": len(anns) + 1, "image_id": r["image_id"], "bbox": [float(x0), float(y0), w, h],
                             "area": w * h, "iscrowd": int(crowd), "category_id": int(label_to_id[label])})
        return coco_from_dict({"images": images, "annotations": anns, "categories": self.categories})

    def example_dataset(self, *, training, mask_crop_size, input_context=None, seed=None,
                        shuffle_buffer=1000, orientation=None):
        """Decoded examples (see rethink_tf.data.sources). Training: file-level sharding by input_context,
        shuffled files and examples, repeated. Eval: one ordered pass, sharded by example.
        `orientation` filters by image id with the sizes of the scan, before decoding."""
        read_config = tfds.ReadConfig(shuffle_seed=seed, input_context=input_context if training else None)
        # Images are decoded by us (accurate JPEG IDCT), so pixels equal CocoSource's and serving's.
        ds = self.builder.as_dataset(split=self.split, shuffle_files=training, read_config=read_config,
                                     decoders={"image": tfds.decode.SkipDecoding()})
        if self.subset_size is not None:  # before sharding, so shard sizes follow from len(image_ids)
            keys = tf.constant(self.image_ids, tf.int64)
            wanted = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
                keys, tf.ones_like(keys, tf.int32)), default_value=0)
            ds = ds.filter(lambda ex: wanted.lookup(self._image_id(ex)) > 0)
        if orientation is not None:
            ids = select_orientation(self.image_ids, self.image_sizes(), orientation)
            if not ids:
                raise ValueError(f"source {self.name}: no {orientation} images")
            keys = tf.constant(ids, tf.int64)
            kept = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
                keys, tf.ones_like(keys, tf.int32)), default_value=0)
            ds = ds.filter(lambda ex: kept.lookup(self._image_id(ex)) > 0)
        if not training and input_context is not None and input_context.num_input_pipelines > 1:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        ds = ds.map(lambda ex: self._convert(ex, mask_crop_size, training), num_parallel_calls=tf.data.AUTOTUNE)
        if training:
            ds = ds.filter(lambda ex: tf.reduce_any(tf.logical_not(ex["is_crowd"])))
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
        return ds

    def _convert(self, ex, mask_crop_size, training=False):
        image = preprocess.decode_image_bytes(ex["image"])
        shape = tf.shape(image)
        h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
        objects = ex["objects"]
        boxes = tf.cast(objects["bbox"], tf.float32) * tf.stack([h, w, h, w])
        keep = tf.logical_and(boxes[:, 2] > boxes[:, 0], boxes[:, 3] > boxes[:, 1])
        crowd = self._crowd(objects)
        if training and self.train_difficult == "drop":
            keep = tf.logical_and(keep, tf.logical_not(crowd))
        elif training and self.train_difficult == "keep":
            crowd = tf.zeros_like(crowd)
        out = {
            "image_id": self._image_id(ex),
            "image": image,
            "boxes": tf.boolean_mask(boxes, keep),
            "classes": tf.boolean_mask(self._labels(objects), keep),
            "is_crowd": tf.boolean_mask(crowd, keep),
        }
        if self.has_masks:
            masks = tf.boolean_mask(objects["mask"], keep)
            if mask_crop_size != self.stored_mask_size:
                masks = tf.image.resize(tf.cast(masks, tf.float32), [mask_crop_size, mask_crop_size])
                masks = tf.cast(masks >= 0.5, tf.uint8)
            out["masks"] = tf.ensure_shape(masks[..., 0], [None, mask_crop_size, mask_crop_size])
        if self.has_keypoints:
            out["keypoints"] = tf.boolean_mask(objects["keypoints"], keep)
        return out
