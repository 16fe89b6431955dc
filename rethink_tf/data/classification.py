"""Classification inputs for backbone pre-training: sources and `classification_dataset`.

Sources (each has `name`, `class_names`, `num_classes`, `splits` = ("train", "val"), `num_examples(split)`
and `example_dataset(split, training, input_context, seed, shuffle_buffer)` -> {"image": uint8 [h, w, 3],
"label": int32 []}, sharded, and in training shuffled and repeated):

- `ImageFolderSource(root)`: an ImageNet-style directory, root/{train,val}/<class>/<image>. Classes are the
  train folder's sub-folders in sorted order (label i = i-th name), as torchvision's ImageFolder and
  Keras' image_dataset_from_directory; images may sit in nested folders below their class folder. Hidden
  files are ignored; any other file that is not .jpg/.jpeg/.png/.bmp/.gif, a file directly in the split
  folder, a class folder without images, a val class missing from train, or (with check_files) a file
  whose header is not a readable image stops the run at start-up with an `InputError` naming the file or
  folder. A file whose pixel data is corrupt fails when first decoded, with an error naming the file.
- `SyntheticClassificationSource()`: the embedded CPU default (rethink_tf/data/synthetic_classification.py):
  10 shape classes, 64x64, generated on first use and cached, read as class folders.
- `ImageNetTfdsSource(data_dir, manual_dir)`: tensorflow-datasets `imagenet2012` (1000 classes; "val" is
  tfds' "validation"), prepared on first use from ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in
  manual_dir; a missing tar is a `ConfigError` naming the directory and the file.

`classification_dataset` turns a source's split into batches (B = per-replica batch, S = image_size):
    images  float32 [B, S, S, 3]  RGB - mean (/ std with divide_by_std), `preprocess.normalize_image`
    labels  int32 [B]             0..num_classes-1; -1 marks the padding entries of the last eval batches
Training: random-resized-crop to S + flip (rethink_tf/data/classification_augment.py), batches of
batch_size / replicas, drop_remainder. Eval: resize shorter side to eval_resize_size + centre crop S,
one pass, every image once, the last batch padded (zero images, label -1) so shapes stay static; with an
input_context every pipeline yields the same number of batches. Per-example random draws are stateless,
seeded by (seed, pipeline, example index), so a seeded pipeline is deterministic.

Normalization is the detection pipeline's (mean only by default, Detectron's choice for its ImageNet
models), so the pre-trained backbone sees the same pixel statistics when fine-tuned: keep
`classification_dataset.divide_by_std` equal to `build_dataset.divide_by_std`.
"""

import os

import gin
import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from rethink_tf.data import classification_augment as augment
from rethink_tf.data import coco as coco_lib
from rethink_tf.data import preprocess
from rethink_tf.utils import validate

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLITS = ("train", "val")
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def check_image_header(path):
    """None if `path` starts like a JPEG/PNG/GIF/BMP whose header PIL reads (no pixel decoding), else why."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if not head:
                return "empty file (0 bytes)"
            if not head.startswith(_SIGNATURES):
                return f"not a JPEG/PNG/GIF/BMP file (starts with {head[:4]!r})"
            f.seek(0)
            with Image.open(f) as im:
                im.size  # noqa: B018  (reads the header)
    except Exception as e:  # PIL raises several types for a truncated or corrupt header
        return f"unreadable image header ({type(e).__name__}: {e})"
    return None


class ClassificationSource:
    """Shared interface; subclasses set name, class_names and implement num_examples / example_dataset."""

    name: str
    class_names: tuple
    splits = SPLITS

    @property
    def num_classes(self):
        return len(self.class_names)

    def _check_split(self, split):
        if split not in self.splits:
            raise validate.ConfigError(f"{self.name}: split = {split!r}: expected one of {self.splits}")

    def num_examples(self, split):
        raise NotImplementedError

    def example_dataset(self, split, *, training, input_context=None, seed=None, shuffle_buffer=10000):
        raise NotImplementedError


def _shard(ds, input_context):
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return ds


@gin.configurable
class ImageFolderSource(ClassificationSource):
    """An ImageNet-style directory of class folders (see the module docstring for the rules).

    Args:
      root: folder holding one sub-folder per split; "~" is expanded.
      train_dir, val_dir: the split folders' names under root.
      check_files: read every image's header at start-up (tens of microseconds per file, about a minute
        for ImageNet's 1.28 M) so a bad file stops the run before training, naming it.
      name: label for logs (default: root's base name).
    """

    def __init__(self, root, *, train_dir="train", val_dir="val", check_files=True, name=None):
        validate.path("ImageFolderSource.root", root)
        validate.string("ImageFolderSource.train_dir", train_dir)
        validate.string("ImageFolderSource.val_dir", val_dir)
        validate.boolean("ImageFolderSource.check_files", check_files)
        validate.string("ImageFolderSource.name", name, allow_none=True)
        self.root = os.path.expanduser(os.fspath(root))
        self.name = name or os.path.basename(os.path.normpath(self.root))
        self._dirs = {"train": os.path.join(self.root, train_dir), "val": os.path.join(self.root, val_dir)}
        self._check_files = check_files
        self.class_names = tuple(self._class_folders("train"))
        self._files = {}  # split -> (paths, labels), listed on first use

    def _class_folders(self, split):
        folder = self._dirs[split]
        if not os.path.isdir(folder):
            raise validate.InputError(f"{self.name}: {split} folder {folder} does not exist (expected "
                                      f"{folder}/<class name>/<images>)")
        names, stray = [], []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            (names if entry.is_dir() else stray).append(entry.name)
        if stray:
            raise validate.InputError(
                f"{self.name}: {os.path.join(folder, stray[0])} is a file directly in the {split} folder "
                f"({len(stray)} such file(s)); expected one sub-folder per class holding its images (e.g. "
                "sort ImageNet's flat val folder into class folders first)")
        if not names:
            raise validate.InputError(f"{self.name}: no class folders in {folder}")
        return names

    def _list(self, split):
        if split in self._files:
            return self._files[split]
        classes = self._class_folders(split)
        label_of = {c: i for i, c in enumerate(self.class_names)}
        unknown = [c for c in classes if c not in label_of]
        if unknown:
            raise validate.InputError(
                f"{self.name}: class folder(s) {', '.join(os.path.join(self._dirs[split], c) for c in unknown[:5])}"
                f" have no counterpart in the train folder {self._dirs['train']}; both splits need the same "
                "classes")
        paths, labels = [], []
        for class_name in classes:
            class_dir = os.path.join(self._dirs[split], class_name)
            found = 0
            for dirpath, dirnames, filenames in os.walk(class_dir):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for file_name in sorted(filenames):
                    if file_name.startswith("."):
                        continue
                    path = os.path.join(dirpath, file_name)
                    if not file_name.lower().endswith(IMAGE_EXTENSIONS):
                        raise validate.InputError(
                            f"{self.name}: {path} is not an image file (extensions {IMAGE_EXTENSIONS}); "
                            "remove it from the class folder")
                    if self._check_files:
                        problem = check_image_header(path)
                        if problem:
                            raise validate.InputError(f"{self.name}: bad image file {path}: {problem}")
                    paths.append(path)
                    labels.append(label_of[class_name])
                    found += 1
            if not found and split == "train":
                raise validate.InputError(f"{self.name}: class folder {class_dir} holds no images")
        logging.info("%s[%s]: %d images of %d classes", self.name, split, len(paths), len(classes))
        self._files[split] = (paths, np.asarray(labels, np.int32))
        return self._files[split]

    def files(self, split):
        """(list of image paths, int32 [N] labels) of a split, in class then file-name order."""
        self._check_split(split)
        return self._list(split)

    def num_examples(self, split):
        return len(self.files(split)[0])

    def example_dataset(self, split, *, training, input_context=None, seed=None, shuffle_buffer=10000):
        """Decoded examples. Training: sharded, the whole file list reshuffled every epoch, repeated. Eval:
        one ordered pass, sharded by example. Decoding is PIL's (same pixels as the COCO reader), in
        parallel map calls; a corrupt file fails naming it."""
        del shuffle_buffer  # the file list is shuffled whole
        paths, labels = self.files(split)
        if not paths:
            raise validate.InputError(f"{self.name}: no images in {self._dirs[split]}")
        ds = _shard(tf.data.Dataset.from_tensor_slices((np.asarray(paths, dtype=object), labels)), input_context)
        if training:
            ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True).repeat()

        def load(path, label):
            image = tf.numpy_function(lambda p: coco_lib.decode_image_file(p.decode()), [path], tf.uint8,
                                      stateful=False)
            return {"image": tf.ensure_shape(image, [None, None, 3]), "label": label}

        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def _cache_root():
    return os.environ.get("RETHINK_TF_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "rethink_tf")


@gin.configurable
class SyntheticClassificationSource(ImageFolderSource):
    """The embedded CPU default: 10 classes of shapes (rethink_tf/data/synthetic_classification.py),
    generated on first use into <data_dir>/synthetic_classification/<version>/ and read as class folders.

    Args:
      data_dir: cache root (None: $RETHINK_TF_DATA_DIR, else ~/.cache/rethink_tf), shared with the
        synthetic detection set.
      train_per_class, val_per_class: images per class of each split.
      image_size: side of the square images in pixels.
    """

    def __init__(self, *, data_dir=None, train_per_class=1000, val_per_class=100, image_size=64):
        from rethink_tf.data import synthetic_classification  # local: keeps module import light
        validate.path("SyntheticClassificationSource.data_dir", data_dir, allow_none=True)
        validate.integer("SyntheticClassificationSource.train_per_class", train_per_class, minimum=1)
        validate.integer("SyntheticClassificationSource.val_per_class", val_per_class, minimum=1)
        validate.integer("SyntheticClassificationSource.image_size", image_size, minimum=32)
        self.image_size = image_size
        root = synthetic_classification.ensure_generated(
            os.path.expanduser(os.fspath(data_dir)) if data_dir else _cache_root(),
            train_per_class=train_per_class, val_per_class=val_per_class, image_size=image_size)
        super().__init__(root, check_files=False, name="synthetic_classification")


IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


@gin.configurable
class ImageNetTfdsSource(ClassificationSource):
    """ImageNet-1k through tensorflow-datasets (`imagenet2012`).

    Args:
      data_dir: tfds data dir (None: tfds' default, ~/tensorflow_datasets).
      manual_dir: folder holding ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (from image-net.org,
        after registering); needed only until the dataset is prepared in data_dir.
      name: tfds name (with an optional version, e.g. "imagenet2012:5.1.0").
    """

    _TFDS_SPLITS = {"train": "train", "val": "validation"}

    def __init__(self, *, data_dir=None, manual_dir=None, name="imagenet2012"):
        import tensorflow_datasets as tfds
        validate.path("ImageNetTfdsSource.data_dir", data_dir, allow_none=True)
        validate.path("ImageNetTfdsSource.manual_dir", manual_dir, allow_none=True)
        validate.string("ImageNetTfdsSource.name", name)
        data_dir = os.path.expanduser(os.fspath(data_dir)) if data_dir else None
        self.builder = tfds.builder(name, data_dir=data_dir)
        self.name = name.replace("/", "_").replace(":", "_")
        if not self.builder.is_prepared():
            if manual_dir is None:
                raise validate.ConfigError(
                    f"tfds dataset {name} is not prepared in {self.builder.data_dir}: set "
                    f"ImageNetTfdsSource.manual_dir to a folder holding {' and '.join(IMAGENET_MANUAL_FILES)}")
            manual_dir = os.path.expanduser(os.fspath(manual_dir))
            missing = [f for f in IMAGENET_MANUAL_FILES if not os.path.isfile(os.path.join(manual_dir, f))]
            if missing:
                raise validate.ConfigError(
                    f"ImageNetTfdsSource.manual_dir = {manual_dir!r}: missing {', '.join(missing)} (tfds "
                    f"{name} is prepared from {' and '.join(IMAGENET_MANUAL_FILES)}, downloaded from "
                    "image-net.org after registering)")
            logging.info("Preparing tfds %s in %s from %s (hours for the full set)", name,
                         self.builder.data_dir, manual_dir)
            self.builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
        self.class_names = tuple(self.builder.info.features["label"].names)

    def num_examples(self, split):
        self._check_split(split)
        return int(self.builder.info.splits[self._TFDS_SPLITS[split]].num_examples)

    def example_dataset(self, split, *, training, input_context=None, seed=None, shuffle_buffer=10000):
        """Decoded examples. Training: file-level sharding by input_context, shuffled files and examples,
        repeated. Eval: one ordered pass, sharded by example. JPEGs are decoded by
        `preprocess.decode_image_bytes` (accurate IDCT, PIL's pixels)."""
        import tensorflow_datasets as tfds
        self._check_split(split)
        read_config = tfds.ReadConfig(shuffle_seed=seed, input_context=input_context if training else None)
        ds = self.builder.as_dataset(split=self._TFDS_SPLITS[split], shuffle_files=training,
                                     read_config=read_config, decoders={"image": tfds.decode.SkipDecoding()})
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
        else:
            ds = _shard(ds, input_context)
        return ds.map(lambda ex: {"image": preprocess.decode_image_bytes(ex["image"]),
                                  "label": tf.cast(ex["label"], tf.int32)},
                      num_parallel_calls=tf.data.AUTOTUNE)


def _validate_config(image_size, eval_resize_size, area_range, aspect_ratio_range, flip_prob, divide_by_std,
                     shuffle_buffer, seed):
    def b(name):
        return f"classification_dataset.{name}"

    validate.integer(b("image_size"), image_size, minimum=8)
    validate.integer(b("eval_resize_size"), eval_resize_size, minimum=image_size, allow_none=True)
    for name, value, lo in (("area_range", area_range, 0.0), ("aspect_ratio_range", aspect_ratio_range, 0.0)):
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                or not lo < value[0] <= value[1] or (name == "area_range" and value[1] > 1)):
            validate.fail(b(name), value, "a pair (low, high) with 0 < low <= high"
                                          + (" <= 1" if name == "area_range" else ""))
    validate.number(b("flip_prob"), flip_prob, minimum=0, maximum=1)
    validate.boolean(b("divide_by_std"), divide_by_std)
    validate.integer(b("shuffle_buffer"), shuffle_buffer, minimum=1)
    validate.integer(b("seed"), seed, allow_none=True)


@gin.configurable(denylist=["source", "split", "training", "batch_size", "input_context"])
def classification_dataset(source, split, training, batch_size, input_context=None, seed=None, *,
                           image_size=224, eval_resize_size=None, area_range=(0.08, 1.0),
                           aspect_ratio_range=(3 / 4, 4 / 3), flip_prob=0.5, divide_by_std=False,
                           shuffle_buffer=10000):
    """Batches {"images": float32 [B, S, S, 3], "labels": int32 [B]} of a classification source's split.

    Args:
      source: a ClassificationSource.
      split: "train" or "val".
      training: random-resized-crop + flip, shuffled, repeated (else: resize + centre crop, one pass,
        padded last batch, labels -1 on padding).
      batch_size: the global batch size; with an input_context each pipeline yields
        batch_size / num_replicas_in_sync.
      input_context: tf.distribute.InputContext (sharding, per-replica batch).
      seed: shuffling and per-example augmentation seed (None: nondeterministic).
      image_size: S, the output side in pixels (224 for ImageNet).
      eval_resize_size: shorter side before the eval centre crop (None: round(S * 256 / 224), 256 at 224).
      area_range: random-resized-crop area fraction range.
      aspect_ratio_range: random-resized-crop width / height range.
      flip_prob: probability of a horizontal flip in training.
      divide_by_std: also divide by the RGB std; keep it equal to build_dataset.divide_by_std.
      shuffle_buffer: example shuffle buffer (tfds; class folders shuffle the whole file list).
    """
    _validate_config(image_size, eval_resize_size, area_range, aspect_ratio_range, flip_prob, divide_by_std,
                     shuffle_buffer, seed)
    validate.boolean("classification_dataset.training", training)
    validate.integer("classification_dataset.batch_size", batch_size, minimum=1)
    if not isinstance(source, ClassificationSource):
        raise validate.ConfigError(f"classification_dataset.source = {source!r}: expected a classification "
                                   "source (ImageFolderSource, SyntheticClassificationSource, ImageNetTfdsSource)")
    source._check_split(split)  # noqa: SLF001
    if eval_resize_size is None:
        eval_resize_size = int(round(image_size * 256 / 224))
    per_replica = batch_size
    pipelines, pipeline_id = 1, 0
    if input_context is not None:
        per_replica = input_context.get_per_replica_batch_size(batch_size)
        pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
    if seed is None:
        seed_base = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    else:
        seed_base = seed
    ds = source.example_dataset(split, training=training, input_context=input_context, seed=seed,
                                shuffle_buffer=shuffle_buffer)
    mean, std = preprocess.PIXEL_MEAN, (preprocess.PIXEL_STD if divide_by_std else None)

    def train_map(index, example):
        seed_pair = tf.stack([tf.constant(seed_base * 4096 + pipeline_id, tf.int64), index])
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed_pair, 2))
        image = augment.random_resized_crop(example["image"], image_size, crop_seed, tuple(area_range),
                                            tuple(aspect_ratio_range))
        image = augment.random_flip(image, flip_seed, flip_prob)
        return {"images": preprocess.normalize_image(image, mean, std), "labels": example["label"]}

    def eval_map(example):
        image = augment.center_crop(augment.resize_shorter_side(example["image"], eval_resize_size), image_size)
        return {"images": preprocess.normalize_image(image, mean, std), "labels": example["label"]}

    if training:
        ds = ds.enumerate().map(train_map, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(eval_map, num_parallel_calls=tf.data.AUTOTUNE)
        total = source.num_examples(split)
        mine = len(range(pipeline_id, total, pipelines))
        batches = -(-(-(-total // pipelines)) // per_replica)  # the same count on every pipeline
        padding = batches * per_replica - mine
        if padding:
            pad = {"images": tf.zeros([image_size, image_size, 3], tf.float32), "labels": tf.constant(-1, tf.int32)}
            ds = ds.concatenate(tf.data.Dataset.from_tensors(pad).repeat(padding))
    return ds.batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def samples_seen(batch, image_size):
    """Figure 2 counts of one classification batch: {"images", "instances", "pixels"} int64 scalars.

    Real (label >= 0) images; one instance per image (the count used for ImageNet); pixels = images * S^2,
    the area at the trained scale (224 x 224 for ImageNet).
    """
    images = tf.reduce_sum(tf.cast(batch["labels"] >= 0, tf.int64))
    return {"images": images, "instances": images, "pixels": images * int(image_size) ** 2}
