"""PASCAL VOC from a VOCdevkit directory, and several sources combined into one.

`VocSource(root, year, split)` reads the devkit layout

    root/VOC2007/ImageSets/Main/{train,val,trainval,test}.txt   one image id per line
    root/VOC2007/Annotations/<id>.xml                             size, objects (name, bndbox, difficult)
    root/VOC2007/JPEGImages/<id>.jpg
    root/VOC2012/...

Categories are the 20 VOC classes in the devkit's order (VOCinit.m), ids 1..20 (the same as tfds'
voc/2007, voc/2012 labels + 1, so VOCdevkit and tfds sources can be combined). Image ids are the digits
of the file id (000005 -> 5, 2008_000008 -> 2008000008, as TfdsSource derives them from file names), so
VOC2007 and VOC2012 ids never collide. Boxes follow detectron2's reading of the 1-based inclusive XML
corners: continuous (xmin - 1, ymin - 1, xmax, ymax), so (1, 1, W, H) covers the whole image; the VOC
metric (`rethink_tf.evaluation.voc_evaluator`) converts back to the devkit's frame.

"difficult" objects: evaluation always ignores them (`coco_gt()` flags them "iscrowd" and "difficult").
In training, `train_difficult` picks what happens:
  "drop"   (default, Detectron, the paper's code): not in training at all. Detectron reads VOC from
           COCO-format jsons whose difficult objects carry "ignore": 1, and its loader
           (`json_dataset._add_gt_annotations`) skips every such object.
  "ignore" crowd-like regions the model neither learns nor penalizes (TfdsSource's default for voc).
  "keep"   ordinary objects (detectron2's `load_voc_instances`: "they don't hurt accuracy").

Bad input: a missing directory, split file, XML or image -> `DataNotFoundError` / `ImageFileError`
naming the path; malformed XML, a missing or non-numeric field, an unknown class -> `VocFormatError`
naming the XML file (and the object).

`CombinedSource(sources)` trains on several sources as one (the paper's VOC2007 trainval + VOC2012 train,
or tfds voc/2007 + voc/2012 splits): same categories required, image ids must be unique.
"""

import os
import re
import xml.etree.ElementTree as ET

import gin
import numpy as np
import tensorflow as tf

from rethink_tf.data import coco as coco_lib
from rethink_tf.data.sources import CocoSource, DataSource, _shard, coco_from_dict, select_orientation
from rethink_tf.utils import validate

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
VOC_CATEGORIES = [{"id": i + 1, "name": n} for i, n in enumerate(VOC_CLASSES)]
TRAIN_DIFFICULT = ("drop", "ignore", "keep")
_HOW_TO_PROVIDE = ("Unpack the VOC tars (VOCtrainval_06-Nov-2007.tar, VOCtrainval_11-May-2012.tar) so that "
                   "DIR/VOC2007 and DIR/VOC2012 exist and pass --gin_bindings='VOC_DIR = \"DIR\"' "
                   "(gin_configs/base/data_voc.gin), or bind VocSource.root.")


class VocFormatError(validate.InputError):
    """A VOC annotation XML is malformed; the message names the file (and the object)."""


def image_id_of(file_id):
    """VOC file id -> int image id: its digits (000005 -> 5, 2008_000008 -> 2008000008)."""
    digits = re.sub(r"[^0-9]", "", file_id)
    if not digits:
        raise validate.InputError(f"VOC image id {file_id!r} has no digits to make an integer id from")
    return int(digits)


def _number(path, element, field, where):
    node = element.find(field)
    if node is None or node.text is None:
        raise VocFormatError(f"{path}: {where} lacks <{field}>")
    try:
        return float(node.text.strip())
    except ValueError:
        raise VocFormatError(f"{path}: {where} <{field}> is {node.text.strip()!r}, not a number") from None


def parse_annotation(path):
    """One VOC XML -> (height, width, [(class name, (xmin, ymin, xmax, ymax) XML pixels, difficult)])."""
    if not os.path.isfile(path):
        raise coco_lib.DataNotFoundError(f"VOC annotation file not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise VocFormatError(f"{path}: not valid XML ({e})") from None
    size = root.find("size")
    if size is None:
        raise VocFormatError(f"{path}: no <size>")
    height, width = _number(path, size, "height", "<size>"), _number(path, size, "width", "<size>")
    if height <= 0 or width <= 0 or height != int(height) or width != int(width):
        raise VocFormatError(f"{path}: <size> is {height} x {width}, not positive integers")
    objects = []
    for k, obj in enumerate(root.findall("object")):
        where = f"object {k}"
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise VocFormatError(f"{path}: {where} has class {name!r}, not one of the 20 VOC classes")
        box = obj.find("bndbox")
        if box is None:
            raise VocFormatError(f"{path}: {where} ({name}) has no <bndbox>")
        corners = tuple(_number(path, box, f, f"{where} ({name}) <bndbox>") for f in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (obj.findtext("difficult") or "0").strip()
        if difficult not in ("0", "1"):
            raise VocFormatError(f"{path}: {where} ({name}) <difficult> is {difficult!r}, not 0 or 1")
        objects.append((name, corners, difficult == "1"))
    return int(height), int(width), objects


def read_split(year_dir, split):
    """The file ids listed in year_dir/ImageSets/Main/<split>.txt, in file order."""
    path = os.path.join(year_dir, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(path):
        raise coco_lib.DataNotFoundError(f"VOC split file not found: {path}. {_HOW_TO_PROVIDE}")
    with open(path) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        raise validate.InputError(f"VOC split file {path} lists no images")
    return ids


def voc_to_coco(year_dir, split):
    """COCO-format dict (images, annotations, categories) of one devkit split; difficult -> iscrowd."""
    images, annotations = [], []
    for file_id in read_split(year_dir, split):
        xml = os.path.join(year_dir, "Annotations", f"{file_id}.xml")
        height, width, objects = parse_annotation(xml)
        image_id = image_id_of(file_id)
        images.append({"id": image_id, "file_name": f"{file_id}.jpg", "height": height, "width": width})
        for name, (x0, y0, x1, y1), difficult in objects:
            w, h = x1 - x0 + 1.0, y1 - y0 + 1.0
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": VOC_CLASSES.index(name) + 1, "bbox": [x0 - 1.0, y0 - 1.0, w, h],
                                "area": max(w, 0.0) * max(h, 0.0), "iscrowd": int(difficult),
                                "difficult": int(difficult)})
    return {"images": images, "annotations": annotations, "categories": [dict(c) for c in VOC_CATEGORIES]}


@gin.configurable
class VocSource(CocoSource):
    """One split of a VOCdevkit directory (module docstring: layout, ids, boxes, difficult objects).

    Args:
      root: the VOCdevkit directory (holding VOC2007/, VOC2012/); "~" is expanded.
      year: 2007 or 2012 (int or string).
      split: "train", "val", "trainval" or "test" (a file of ImageSets/Main).
      train_difficult: "drop" (Detectron), "ignore" (crowd-like) or "keep" (detectron2).
      name: label for logs (default voc<year>_<split>).
      subset_size, subset_seed, skip_missing_images: as CocoSource.
    """

    def __init__(self, root=gin.REQUIRED, year=2012, split="val", *, train_difficult="drop", name=None,
                 subset_size=None, subset_seed=0, skip_missing_images=False):
        validate.path("VocSource.root", root)
        validate.one_of("VocSource.year", str(year), ("2007", "2012"))
        validate.string("VocSource.split", split)
        validate.one_of("VocSource.train_difficult", train_difficult, TRAIN_DIFFICULT)
        validate.string("VocSource.name", name, allow_none=True)
        validate.integer("VocSource.subset_size", subset_size, minimum=1, allow_none=True)
        validate.integer("VocSource.subset_seed", subset_seed)
        validate.boolean("VocSource.skip_missing_images", skip_missing_images)
        year_dir = os.path.join(os.path.expanduser(os.fspath(root)), f"VOC{year}")
        if not os.path.isdir(year_dir):
            raise coco_lib.DataNotFoundError(f"VOC directory not found: {year_dir}. {_HOW_TO_PROVIDE}")
        raw = voc_to_coco(year_dir, split)
        label = os.path.join(year_dir, "ImageSets", "Main", f"{split}.txt")
        self.index = coco_lib.load_coco(label, os.path.join(year_dir, "JPEGImages"),
                                        skip_missing_images=skip_missing_images, raw=raw)
        self.name = name or f"voc{year}_{split}"
        self.categories = [dict(c) for c in VOC_CATEGORIES]
        self.has_masks, self.has_keypoints, self.keypoint_names = False, False, ()
        self.train_difficult = train_difficult
        self.subset_size, self.subset_seed = subset_size, subset_seed
        if train_difficult == "keep":  # images with difficult objects only are trainable too
            trainable = sorted(i for i, anns in self.index.annotations.items() if anns)
        else:
            trainable = self.index.training_image_ids
        if subset_size is None:
            self.image_ids = self.index.all_image_ids
        else:
            self.image_ids = coco_lib.select_subset(trainable, subset_size, subset_seed)
        trainable = set(trainable)
        self._training_image_ids = [i for i in self.image_ids if i in trainable]
        self._label_of = self.index.category_id_to_label

    def load_example(self, image_id, mask_crop_size):
        """CocoSource's example with the difficult objects handled per `train_difficult`."""
        image, boxes, classes, is_crowd, masks, keypoints = super().load_example(image_id, mask_crop_size)
        difficult = np.array([bool(a["difficult"]) for a in self.index.annotations.get(int(image_id), [])], bool)
        if self.train_difficult == "drop":
            keep = ~difficult
            return image, boxes[keep], classes[keep], is_crowd[keep], masks[keep], keypoints[keep]
        if self.train_difficult == "keep":
            is_crowd = np.zeros_like(is_crowd)
        return image, boxes, classes, is_crowd, masks, keypoints


@gin.configurable
class CombinedSource(DataSource):
    """Several sources as one: training draws from each in proportion to its number of training images
    (so every image is seen about equally often); evaluation passes over them one after the other.

    Args:
      sources: the sources (gin: a list of references, e.g. [@voc2007/VocSource(), @voc2012/VocSource()]).
        They must have the same categories (ids and names, in order) and no image id in common.
      name: label for logs (default: the sources' names joined by "+").
    """

    def __init__(self, sources=gin.REQUIRED, name=None):
        if sources is gin.REQUIRED or not isinstance(sources, (list, tuple)) or not sources:
            validate.fail("CombinedSource.sources", None if sources is gin.REQUIRED else sources,
                          "a non-empty list of sources, e.g. [@voc2007/VocSource(), @voc2012/VocSource()]")
        validate.string("CombinedSource.name", name, allow_none=True)
        self.sources = list(sources)
        first = self.sources[0]
        for s in self.sources[1:]:
            if [(c["id"], c["name"]) for c in s.categories] != [(c["id"], c["name"]) for c in first.categories]:
                raise validate.ConfigError(f"CombinedSource.sources: {s.name} has other categories than {first.name}")
        owner = {}
        for s in self.sources:
            common = [i for i in s.image_ids if i in owner]
            if common:
                raise validate.ConfigError(
                    f"CombinedSource.sources: {s.name} and {owner[common[0]]} share {len(common)} image id(s), "
                    f"e.g. {common[:3]} (the same images twice, e.g. trainval with train?)")
            owner.update((i, s.name) for i in s.image_ids)
        self.name = name or "+".join(s.name for s in self.sources)
        self.categories = [dict(c) for c in first.categories]
        self.has_masks = all(s.has_masks for s in self.sources)
        self.has_keypoints = all(s.has_keypoints for s in self.sources)
        self.keypoint_names = first.keypoint_names if self.has_keypoints else ()
        self.image_ids = [i for s in self.sources for i in s.image_ids]

    @property
    def training_image_ids(self):
        return [i for s in self.sources for i in s.training_image_ids]

    def num_examples(self, training):
        return sum(s.num_examples(training) for s in self.sources)

    def image_sizes(self):
        sizes = {}
        for s in self.sources:
            part = s.image_sizes()
            if part is None:
                return None
            sizes.update(part)
        return sizes

    def instances_per_image(self):
        counts = {}
        for s in self.sources:
            if hasattr(s, "instances_per_image"):
                counts.update(s.instances_per_image())
        return counts

    def coco_gt(self):
        """The sources' ground truth merged (annotation ids renumbered)."""
        images, annotations = [], []
        for s in self.sources:
            gt = s.coco_gt().dataset
            images += gt["images"]
            annotations += [dict(a, id=len(annotations) + k + 1) for k, a in enumerate(gt["annotations"])]
        return coco_from_dict({"images": images, "annotations": annotations, "categories": self.categories})

    def example_dataset(self, *, training, mask_crop_size, input_context=None, seed=None, shuffle_buffer=1000,
                        orientation=None):
        """Decoded examples of every source (keys common to all); see the class docstring."""
        parts, weights = [], []
        for k, s in enumerate(self.sources):
            ids = s.training_image_ids if training else s.image_ids
            if orientation is not None:
                ids = select_orientation(ids, s.image_sizes(), orientation)
            if not ids:
                continue
            # Evaluation is sharded once, over the concatenation (what build_dataset's padding counts on).
            parts.append(s.example_dataset(
                training=training, mask_crop_size=mask_crop_size, input_context=input_context if training else None,
                seed=None if seed is None else seed + 7919 * k, shuffle_buffer=shuffle_buffer,
                **({"orientation": orientation} if orientation else {})))
            weights.append(float(len(ids)))
        if not parts:
            raise validate.InputError(f"source {self.name}: no {orientation + ' ' if orientation else ''}images "
                                      f"to {'train on' if training else 'evaluate'}")
        keys = set.intersection(*(set(p.element_spec) for p in parts))
        parts = [p.map(lambda ex: {k: v for k, v in ex.items() if k in keys}) for p in parts]
        if training:
            if len(parts) == 1:
                return parts[0]
            total = sum(weights)
            return tf.data.Dataset.sample_from_datasets(parts, [w / total for w in weights], seed=seed)
        ds = parts[0]
        for p in parts[1:]:
            ds = ds.concatenate(p)
        return _shard(ds, input_context)
