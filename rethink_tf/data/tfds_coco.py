"""A tensorflow-datasets builder over a local COCO directory that keeps instance masks.

tfds' public `coco/2017` has boxes but no instance masks. This builder reads a COCO directory you already
have (instances json + image folder), validates it with the same rules as `CocoSource`, and stores each
instance's mask cropped to its box at a fixed size (PNG, config `mask_size`, default 112), so the prepared
dataset stays small (about the size of the JPEGs) and `TfdsSource` can feed Mask R-CNN from it.

Usage (COCO 2017 as downloaded from cocodataset.org, in /data/coco with annotations/ train2017/ val2017/):

    import tensorflow_datasets as tfds
    import rethink_tf.data.tfds_coco  # registers "rethink_coco_instances"
    builder = tfds.builder("rethink_coco_instances/2017", data_dir="~/tensorflow_datasets")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir="/data/coco"))

or in gin: `TfdsSource.name = "rethink_coco_instances/2017"`, `TfdsSource.manual_dir = "/data/coco"`
(prepared on first use). Config "2017_keypoints" reads person_keypoints_*.json and also stores keypoints.

Splits: "train" from annotations/instances_train2017.json + train2017/, "validation" from
annotations/instances_val2017.json + val2017/ (whichever exist). Undecodable images fail the build,
naming the file; skipped annotations are counted in the metadata ("skipped").

Features per image: image (encoded bytes as found), image/id, image/filename, and objects: id, area,
bbox (tfds BBox, normalized yxyx, clipped to the image), category_id (dataset id), label (contiguous
1..K, K = number of categories, in category id order), is_crowd, mask (uint8 [S, S, 1] box crop) and,
with keypoints, keypoints float32 [17, 3] (x, y, v) in pixels. `info.metadata` holds "categories",
"keypoint_names", "mask_size" and per-split "annotation_files".
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from rethink_tf.data import coco as coco_lib
from rethink_tf.data import masks as mask_lib

_SPLITS = {"train": "train2017", "validation": "val2017"}


@dataclasses.dataclass
class CocoInstancesConfig(tfds.core.BuilderConfig):
    """mask_size: side of the stored box-cropped masks; with_keypoints: read person_keypoints jsons."""
    mask_size: int = 112
    with_keypoints: bool = False


class CocoInstances(tfds.core.GeneratorBasedBuilder):
    """COCO-format instance segmentation with box-cropped masks, from a local directory."""

    name = "rethink_coco_instances"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Box-cropped PNG masks, contiguous labels, validation as CocoSource."}
    BUILDER_CONFIGS = [
        CocoInstancesConfig(name="2017", description="instances_{train,val}2017.json, 112x112 masks"),
        CocoInstancesConfig(name="2017_keypoints", with_keypoints=True,
                            description="person_keypoints_{train,val}2017.json with keypoints"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Pass the COCO root as manual_dir: it must hold annotations/instances_train2017.json (and/or "
        "instances_val2017.json; person_keypoints_*.json for the keypoints config) and the image folders "
        "train2017/ and val2017/.")

    def _info(self):
        objects = {
            "id": tf.int64,
            "area": tf.float32,
            "bbox": tfds.features.BBoxFeature(),
            "category_id": tf.int64,
            "label": tf.int64,
            "is_crowd": tf.bool,
            "mask": tfds.features.Image(shape=(self.builder_config.mask_size,
                                               self.builder_config.mask_size, 1), encoding_format="png"),
        }
        if self.builder_config.with_keypoints:
            objects["keypoints"] = tfds.features.Tensor(shape=(17, 3), dtype=tf.float32)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "image/id": tf.int64,
                "image/filename": tfds.features.Text(),
                "objects": tfds.features.Sequence(objects),
            }),
            metadata=tfds.core.MetadataDict(),
            homepage="https://cocodataset.org",
        )

    def _annotation_file(self, root, folder):
        prefix = "person_keypoints" if self.builder_config.with_keypoints else "instances"
        return os.path.join(root, "annotations", f"{prefix}_{folder}.json")

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        found = {split: folder for split, folder in _SPLITS.items()
                 if os.path.isfile(self._annotation_file(root, folder))}
        if not found:
            raise ValueError(f"no COCO annotation json found under {root}/annotations. "
                             + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        indexes = {split: coco_lib.load_coco(self._annotation_file(root, folder), os.path.join(root, folder))
                   for split, folder in found.items()}
        first = next(iter(indexes.values()))
        for split, index in indexes.items():
            if [c["id"] for c in index.categories] != [c["id"] for c in first.categories]:
                raise ValueError(f"{index.annotation_file}: categories differ from {first.annotation_file}")
        self.info.metadata["categories"] = [{"id": c["id"], "name": c["name"]} for c in first.categories]
        self.info.metadata["keypoint_names"] = list(first.keypoint_names)
        self.info.metadata["mask_size"] = self.builder_config.mask_size
        self.info.metadata["annotation_files"] = {s: i.annotation_file for s, i in indexes.items()}
        self.info.metadata["image_dirs"] = {s: i.image_dir for s, i in indexes.items()}
        self.info.metadata["skipped"] = {s: i.skipped for s, i in indexes.items()}
        return {split: self._generate_examples(index) for split, index in indexes.items()}

    def _generate_examples(self, index):
        size = self.builder_config.mask_size
        label_of = index.category_id_to_label
        for image_id in index.all_image_ids:
            im = index.images[image_id]
            height, width = im["height"], im["width"]
            path = index.image_path(image_id)
            coco_lib.decode_image_file(path, image_id, (height, width))  # fail the build, naming the file
            objects = []
            for a in index.annotations.get(image_id, []):
                x, y, w, h = a["clipped_bbox"]
                if a.get("segmentation"):
                    mask = mask_lib.annotation_box_mask(a["segmentation"], a["clipped_bbox"], height, width, size)
                else:
                    mask = np.zeros((size, size), np.uint8)
                obj = {
                    "id": a["id"],
                    "area": float(a.get("area", w * h)),
                    "bbox": tfds.features.BBox(ymin=y / height, xmin=x / width,
                                               ymax=min((y + h) / height, 1.0), xmax=min((x + w) / width, 1.0)),
                    "category_id": a["category_id"],
                    "label": label_of[a["category_id"]],
                    "is_crowd": bool(a.get("iscrowd", 0)),
                    "mask": mask[..., None],
                }
                if self.builder_config.with_keypoints:
                    kp = a.get("keypoints") or [0.0] * 51
                    obj["keypoints"] = np.asarray(kp, np.float32).reshape(17, 3)
                objects.append(obj)
            yield image_id, {"image": path, "image/id": image_id, "image/filename": im["file_name"],
                             "objects": objects}
