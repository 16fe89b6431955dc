"""Classification inputs: crop geometry against a numpy reference of torchvision's rules, class folders
(order, labels, bad files), the eval padding, the synthetic set and the tfds wiring."""

import math
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from rethink_tf.data import classification as cls
from rethink_tf.data import classification_augment as aug
from rethink_tf.data import synthetic_classification as synth
from rethink_tf.utils import validate


# ---------- numpy references (torchvision's RandomResizedCrop.get_params / Resize / CenterCrop) ----------
def np_crop_box(height, width, uniforms, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for u_area, u_ratio, u_top, u_left in uniforms:
        target_area = area * (scale[0] + (scale[1] - scale[0]) * u_area)
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u_ratio)
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(u_top * (height - h + 1)), int(u_left * (width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def np_shorter_side(height, width, size):
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


@pytest.mark.parametrize("height,width", [(375, 500), (500, 333), (64, 64), (7, 300), (300, 9), (31, 17)])
def test_random_resized_crop_box_matches_numpy(height, width):
    fallbacks = 0
    for s in range(20):
        seed = tf.constant([s, 7], tf.int64)
        box = aug.random_resized_crop_box(height, width, seed).numpy().tolist()
        expected = np_crop_box(height, width, aug.crop_uniforms(seed).numpy())
        assert box == list(expected), (s, box, expected)
        top, left, h, w = box
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width and h > 0 and w > 0
        fallbacks += (h, w) in {(height, round(height * 4 / 3)), (round(width * 4 / 3), width), (height, width)}
    if (height, width) in ((7, 300), (300, 9)):
        assert fallbacks == 20  # no try fits such elongated images: always the clamped centre crop


def test_random_resized_crop_samples_the_documented_ranges():
    areas, ratios = [], []
    for s in range(60):
        _, _, h, w = aug.random_resized_crop_box(480, 640, tf.constant([s, 1])).numpy()
        areas.append(h * w / (480 * 640))
        ratios.append(w / h)
    areas, ratios = np.array(areas), np.array(ratios)
    assert areas.min() >= 0.075 and areas.max() <= 1.0 and areas.min() < 0.2 and areas.max() > 0.8
    assert ratios.min() >= 0.74 and ratios.max() <= 1.35


def test_random_resized_crop_pixels_are_the_resized_box():
    image = tf.constant(np.random.default_rng(0).integers(0, 255, (90, 120, 3)), tf.uint8)
    seed = tf.constant([3, 4])
    top, left, h, w = np_crop_box(90, 120, aug.crop_uniforms(seed).numpy())
    expected = tf.image.resize(tf.cast(image[top:top + h, left:left + w], tf.float32), [32, 32],
                               antialias=True)
    np.testing.assert_allclose(aug.random_resized_crop(image, 32, seed).numpy(), expected.numpy(), atol=1e-4)
    flipped = [aug.random_flip(tf.range(4)[None, :, None], tf.constant([s, 0])).numpy()[0, :, 0].tolist()
               for s in range(40)]
    assert {tuple(f) for f in flipped} == {(0, 1, 2, 3), (3, 2, 1, 0)}


@pytest.mark.parametrize("height,width", [(375, 500), (500, 375), (257, 300), (259, 259), (256, 1000)])
def test_eval_resize_and_center_crop_match_numpy(height, width):
    new_h, new_w = (int(v) for v in aug.shorter_side_size(height, width, 256))
    assert (new_h, new_w) == np_shorter_side(height, width, 256)
    top, left = (int(v) for v in aug.center_crop_offsets(new_h, new_w, 224))
    assert (top, left) == (int(round((new_h - 224) / 2.0)), int(round((new_w - 224) / 2.0)))
    image = tf.reshape(tf.range(new_h * new_w), [new_h, new_w, 1])
    np.testing.assert_array_equal(aug.center_crop(image, 224).numpy(), image.numpy()[top:top + 224, left:left + 224])


def test_center_crop_rounds_half_to_even_as_python():
    assert [int(v) for v in aug.center_crop_offsets(257, 259, 224)] == [16, 18]  # 16.5 -> 16, 17.5 -> 18


# ---------- class folders ----------
COLORS = {"b_cat": (200, 30, 30), "a_dog": (30, 200, 30), "c_owl": (30, 30, 200)}


def write_folders(root, per_class=(3, 2), size=(40, 50)):
    for split, count in zip(("train", "val"), per_class):
        for name, color in COLORS.items():
            os.makedirs(root / split / name, exist_ok=True)
            for k in range(count):
                ext = "png" if k % 2 else "jpg"
                Image.fromarray(np.full(size + (3,), color, np.uint8)).save(root / split / name / f"{k}.{ext}")
    return root


def test_folder_classes_sorted_and_labels_follow_the_pixels(tmp_path):
    source = cls.ImageFolderSource(write_folders(tmp_path))
    assert source.class_names == ("a_dog", "b_cat", "c_owl") and source.num_classes == 3
    assert source.num_examples("train") == 9 and source.num_examples("val") == 6
    batches = list(cls.classification_dataset(source, "val", False, 4, image_size=16))
    assert len(batches) == 2 and batches[-1]["labels"].numpy().tolist()[-2:] == [-1, -1]
    images = np.concatenate([b["images"].numpy() for b in batches])[:6]
    labels = np.concatenate([b["labels"].numpy() for b in batches])[:6]
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    mean = np.array(cls.preprocess.PIXEL_MEAN)
    for image, label in zip(images, labels):
        np.testing.assert_allclose(image.mean(axis=(0, 1)) + mean, COLORS[source.class_names[label]], atol=3)
    train = next(iter(cls.classification_dataset(source, "train", True, 6, seed=5, image_size=16)))
    assert train["images"].shape == (6, 16, 16, 3) and train["labels"].dtype == tf.int32
    for image, label in zip(train["images"].numpy(), train["labels"].numpy()):  # crops keep the class colour
        np.testing.assert_allclose(image.mean(axis=(0, 1)) + mean, COLORS[source.class_names[label]], atol=3)
    again = next(iter(cls.classification_dataset(source, "train", True, 6, seed=5, image_size=16)))
    np.testing.assert_array_equal(train["images"].numpy(), again["images"].numpy())


def test_eval_padding_gives_every_pipeline_the_same_batches(tmp_path):
    source = cls.ImageFolderSource(write_folders(tmp_path, per_class=(1, 3)))  # 9 val images
    counts = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=2)
        batches = list(cls.classification_dataset(source, "val", False, 4, input_context=context, image_size=8))
        assert all(b["images"].shape == (2, 8, 8, 3) for b in batches)
        counts.append((len(batches), int(sum((b["labels"] >= 0).numpy().sum() for b in batches))))
    assert counts == [(3, 5), (3, 4)]


@pytest.mark.parametrize("case", ["not_image", "bad_header", "empty", "stray_file", "unknown_val_class",
                                  "empty_class"])
def test_folder_bad_input_names_the_file(tmp_path, case):
    root = write_folders(tmp_path)
    culprit = {
        "not_image": root / "train" / "a_dog" / "notes.txt",
        "bad_header": root / "train" / "b_cat" / "x.jpg",
        "empty": root / "val" / "c_owl" / "y.png",
        "stray_file": root / "train" / "z.jpg",
        "unknown_val_class": root / "val" / "d_eel",
        "empty_class": root / "train" / "e_ant",
    }[case]
    if case in ("unknown_val_class", "empty_class"):
        culprit.mkdir()
    else:
        culprit.write_bytes({"not_image": b"hello", "bad_header": b"GIF8 not really", "empty": b"",
                             "stray_file": (root / "train" / "a_dog" / "0.jpg").read_bytes()}[case])
    with pytest.raises(validate.InputError, match=str(culprit.relative_to(tmp_path))):
        source = cls.ImageFolderSource(root)
        source.num_examples("train"), source.num_examples("val")


def test_corrupt_pixels_fail_when_decoded_naming_the_file(tmp_path):
    root = write_folders(tmp_path)
    bad = root / "val" / "a_dog" / "0.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[:len(data) - 40])  # a valid header, truncated pixel data
    source = cls.ImageFolderSource(root)
    with pytest.raises(tf.errors.OpError, match="0.jpg"):
        list(cls.classification_dataset(source, "val", False, 2, image_size=8))


def test_bad_bindings_name_the_binding(tmp_path):
    source = cls.ImageFolderSource(write_folders(tmp_path))
    for kwargs, binding in (({"image_size": "224"}, "image_size"), ({"area_range": (0.5, 0.1)}, "area_range"),
                            ({"eval_resize_size": 100, "image_size": 224}, "eval_resize_size")):
        with pytest.raises(validate.ConfigError, match=f"classification_dataset.{binding}"):
            cls.classification_dataset(source, "train", True, 2, **kwargs)
    with pytest.raises(validate.ConfigError, match="split"):
        cls.classification_dataset(source, "test", True, 2)


def test_samples_seen_counts_real_images_at_the_trained_scale():
    counts = cls.samples_seen({"labels": tf.constant([3, 0, -1, 7])}, 224)
    assert {k: int(v) for k, v in counts.items()} == {"images": 3, "instances": 3, "pixels": 3 * 224 * 224}


# ---------- the embedded synthetic set ----------
@pytest.mark.parametrize("shape,area", [
    ("circle", math.pi), ("square", 2.0), ("triangle", 3 * math.sqrt(3) / 4), ("ellipse", math.pi * 0.55),
    ("ring", math.pi * (1 - 0.55 ** 2)), ("rectangle", 4 * 0.894 * 0.447), ("diamond", 2 * 0.55),
    ("semicircle", math.pi / 2), ("cross", 2 * (2 * 0.954 * 0.6) - 0.36),
    ("star", 5 * 0.42 * math.sin(math.pi / 5))])  # ten triangles (centre, tip, notch)
def test_shape_masks_have_their_analytic_area(shape, area):
    yy, xx = np.mgrid[0:200, 0:200].astype(np.float32) + 0.5
    mask = synth.shape_mask(shape, 100.3, 99.6, 60.0, 0.4, xx, yy)
    assert mask.sum() == pytest.approx(area * 60.0 ** 2, rel=0.02)


def test_synthetic_set_is_deterministic_balanced_and_cached(tmp_path):
    source = cls.SyntheticClassificationSource(data_dir=tmp_path / "a", train_per_class=1, val_per_class=1,
                                               image_size=32)
    assert source.num_classes == 10 and source.num_examples("train") == 10 and source.num_examples("val") == 10
    assert sorted(synth.CLASS_NAMES) == list(source.class_names)
    paths, labels = source.files("train")
    assert sorted(labels.tolist()) == list(range(10))
    for path, label in zip(paths, labels):
        assert os.path.basename(os.path.dirname(path)) == source.class_names[label]
    other = synth.ensure_generated(tmp_path / "b", train_per_class=1, val_per_class=1, image_size=32)
    for path in paths[:5]:
        twin = os.path.join(other, os.path.relpath(path, source.root))
        assert open(path, "rb").read() == open(twin, "rb").read()
    mtime = os.path.getmtime(paths[0])
    assert cls.SyntheticClassificationSource(data_dir=tmp_path / "a", train_per_class=1, val_per_class=1,
                                             image_size=32).files("train")[0] == paths
    assert os.path.getmtime(paths[0]) == mtime


# ---------- tensorflow-datasets imagenet2012 ----------
def test_imagenet_tfds_names_the_manual_dir_and_missing_tars(tmp_path):
    with pytest.raises(validate.ConfigError, match="ImageNetTfdsSource.manual_dir"):
        cls.ImageNetTfdsSource(data_dir=tmp_path / "tfds")
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "ILSVRC2012_img_train.tar").write_bytes(b"")
    with pytest.raises(validate.ConfigError, match=f"{manual}.*missing ILSVRC2012_img_val.tar"):
        cls.ImageNetTfdsSource(data_dir=tmp_path / "tfds", manual_dir=manual)


class _FakeSplit:
    def __init__(self, n):
        self.num_examples = n


def test_imagenet_tfds_wiring_on_a_prepared_builder(tmp_path, monkeypatch):
    """The real imagenet2012 builder's metadata, its as_dataset replaced by three encoded images."""
    import io

    import tensorflow_datasets as tfds

    real_builder = tfds.builder("imagenet2012", data_dir=str(tmp_path))
    encoded = []
    for color in ((10, 20, 30), (200, 100, 0), (0, 0, 255)):
        buffer = io.BytesIO()
        Image.fromarray(np.full((30, 40, 3), color, np.uint8)).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    calls = []

    def as_dataset(split, shuffle_files, read_config, decoders):
        calls.append((split, shuffle_files))
        assert isinstance(decoders["image"], tfds.decode.SkipDecoding)
        return tf.data.Dataset.from_tensor_slices({"image": encoded, "label": np.array([5, 999, 0], np.int64)})

    monkeypatch.setattr(type(real_builder), "is_prepared", lambda self: True)
    monkeypatch.setattr(real_builder, "as_dataset", as_dataset)
    monkeypatch.setattr(type(real_builder.info), "splits", property(lambda self: {"validation": _FakeSplit(3)}))
    monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: real_builder)
    source = cls.ImageNetTfdsSource(data_dir=tmp_path)
    assert source.num_classes == 1000 and source.class_names[0] == "n01440764"
    assert source.num_examples("val") == 3
    batches = list(cls.classification_dataset(source, "val", False, 2, image_size=24))
    assert calls == [("validation", False)]
    labels = np.concatenate([b["labels"].numpy() for b in batches])
    assert labels.tolist() == [5, 999, 0, -1]
    np.testing.assert_allclose(batches[0]["images"].numpy()[1].mean(axis=(0, 1)) + cls.preprocess.PIXEL_MEAN,
                               (200, 100, 0), atol=1)
