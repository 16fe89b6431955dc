"""The SavedModel against the in-process Keras model, loaded in a process that imports only TF."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.data import preprocess
from rethink_tf.ops.masks import paste_masks
from serving_fixtures import CATEGORIES, coco_image_paths

# Runs in a fresh interpreter: only tensorflow (and the standard library) may be imported.
CHILD = textwrap.dedent("""
    import json, sys
    import tensorflow as tf

    export_dir, png_a, png_b, jpeg_a, jpeg_b, out_path = sys.argv[1:]
    loaded = tf.saved_model.load(export_dir)
    read = lambda p: tf.io.read_file(p)

    def summary(outputs):
        out = {k: v.numpy().tolist() for k, v in outputs.items()
               if k not in ("detection_masks", "detection_box_masks")}
        out["mask_shape"] = outputs["detection_masks"].shape.as_list()
        out["mask_pixels"] = tf.reduce_sum(tf.cast(outputs["detection_masks"], tf.int32),
                                           axis=[2, 3]).numpy().tolist()
        out["box_mask_sum"] = tf.reduce_sum(outputs["detection_box_masks"], axis=[2, 3]).numpy().tolist()
        return out

    images = tf.stack([tf.io.decode_png(read(png_a)), tf.io.decode_png(read(png_b))])
    result = {"signatures": sorted(loaded.signatures.keys())}
    result["serving_default"] = summary(loaded.signatures["serving_default"](images=images))
    jpegs = tf.stack([read(jpeg_a), read(jpeg_b)])
    result["image_bytes"] = summary(loaded.signatures["image_bytes"](image_bytes=jpegs))
    examples = [tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[read(p).numpy()]))})
    ).SerializeToString() for p in (jpeg_a, jpeg_b)]
    result["tf_example"] = summary(
        loaded.signatures["tf_example"](serialized_tf_example=tf.constant(examples)))
    try:
        loaded.signatures["image_bytes"](image_bytes=tf.constant([read(jpeg_a).numpy(), b"not an image"]))
        result["bad_bytes"] = "no error"
    except tf.errors.InvalidArgumentError as e:
        result["bad_bytes"] = e.message
    empty = tf.train.Example(features=tf.train.Features(feature={
        "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[3]))}))
    try:
        loaded.signatures["tf_example"](serialized_tf_example=tf.constant([empty.SerializeToString()]))
        result["no_encoded"] = "no error"
    except tf.errors.InvalidArgumentError as e:
        result["no_encoded"] = e.message
    label_map = loaded.label_map()
    result["label_map"] = [label_map["category_ids"].numpy().tolist(),
                           [n.decode() for n in label_map["category_names"].numpy()]]
    result["foreign_modules"] = sorted(m for m in sys.modules
                                       if m.split(".")[0] in ("rethink_tf", "keras_cv", "gin"))
    with open(out_path, "w") as f:
        json.dump(result, f)
""")


def keras_reference(model, image, inference):
    """What the exported model must return for one uint8 image, computed eagerly in Keras on the
    canvas of the image's orientation."""
    h, w = image.shape[:2]
    canvas_hw = inference.portrait_canvas if h > w else inference.landscape_canvas
    canvas, info = preprocess.resize_and_pad(image, inference.short_side, inference.max_size, canvas_hw)
    canvas = preprocess.normalize_image(canvas, inference.pixel_mean, inference.pixel_std,
                                        image_info=info)
    out = {k: v.numpy()[0] for k, v in model({"images": canvas[None], "image_info": info[None]},
                                             training=False).items()}
    ids = np.array([0] + [c["id"] for c in CATEGORIES])
    num = int(out["num_detections"])
    masks = np.zeros((len(out["detection_boxes"]),) + image.shape[:2], np.uint8)
    masks[:num] = paste_masks(out["detection_masks"][:num], out["detection_boxes"][:num],
                              image.shape[:2])
    return {"num_detections": num, "detection_classes": ids[out["detection_classes"]],
            "detection_scores": out["detection_scores"], "detection_boxes": out["detection_boxes"],
            "mask_pixels": masks.reshape(len(masks), -1).sum(-1),
            "box_mask_sum": out["detection_masks"].sum((1, 2))}


def assert_matches(served, reference, index, hw):
    num = reference["num_detections"]
    assert num > 0, "the tiny model must produce detections (score_threshold = 0)"
    assert served["num_detections"][index] == num
    np.testing.assert_array_equal(served["detection_classes"][index], reference["detection_classes"])
    np.testing.assert_allclose(served["detection_scores"][index], reference["detection_scores"],
                               atol=1e-4)
    np.testing.assert_allclose(served["detection_boxes"][index], reference["detection_boxes"],
                               atol=0.05)
    np.testing.assert_allclose(served["box_mask_sum"][index], reference["box_mask_sum"],
                               rtol=1e-3, atol=0.05)
    assert np.mean(reference["mask_pixels"][:num] > 0) > 0.5, "masks too empty to compare"
    # Pasted masks: pixels whose probability sits at the threshold may flip; allow 1 % + 3 px.
    np.testing.assert_allclose(served["mask_pixels"][index], reference["mask_pixels"],
                               rtol=0.01, atol=3)
    assert served["image_shape"][index] == list(hw)


@pytest.fixture(scope="module")
def child_result(exported, tmp_path_factory):
    """Runs CHILD on two PNGs of equal size (crops) and the two original JPEGs."""
    path = exported
    jpeg_a, jpeg_b = coco_image_paths(2)
    work = tmp_path_factory.mktemp("child")
    image_a = preprocess.decode_image_bytes(tf.io.read_file(jpeg_a)).numpy()
    image_b = preprocess.decode_image_bytes(tf.io.read_file(jpeg_b)).numpy()
    h, w = min(image_a.shape[0], image_b.shape[0]), min(image_a.shape[1], image_b.shape[1])
    pngs = []
    for name, image in (("a.png", image_a[:h, :w]), ("b.png", image_b[:h, :w])):
        pngs.append(str(work / name))
        tf.io.write_file(pngs[-1], tf.io.encode_png(image))
    out_path = work / "result.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run([sys.executable, "-c", CHILD, path, *pngs, jpeg_a, jpeg_b, str(out_path)],
                          cwd=str(work), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out_path) as f:
        result = json.load(f)
    return result, {"crops": [image_a[:h, :w], image_b[:h, :w]], "full": [image_a, image_b]}


def test_fresh_process_needs_only_tensorflow(child_result):
    result, _ = child_result
    assert result["signatures"] == ["image_bytes", "serving_default", "tf_example"]
    assert result["foreign_modules"] == []
    assert result["label_map"] == [[c["id"] for c in CATEGORIES], [c["name"] for c in CATEGORIES]]


def test_uint8_signature_matches_keras_model(child_result, tiny_model):
    result, images = child_result
    model, _, inference = tiny_model
    served = result["serving_default"]
    h, w = images["crops"][0].shape[:2]
    assert served["mask_shape"] == [2, 100, h, w]
    for i, image in enumerate(images["crops"]):
        assert_matches(served, keras_reference(model, image, inference), i, (h, w))


def test_bytes_of_different_sizes_match_keras_model(child_result, tiny_model):
    result, images = child_result
    model, _, inference = tiny_model
    served = result["image_bytes"]
    hw = [image.shape[:2] for image in images["full"]]
    assert served["mask_shape"] == [2, 100, max(s[0] for s in hw), max(s[1] for s in hw)]
    for i, image in enumerate(images["full"]):
        assert_matches(served, keras_reference(model, image, inference), i, image.shape[:2])
        # Masks are pasted at the top-left; beyond the image's own size they are empty.
    assert result["tf_example"] == served


def test_boxes_are_in_original_pixels(child_result):
    result, images = child_result
    served = result["image_bytes"]
    for i, image in enumerate(images["full"]):
        boxes = np.array(served["detection_boxes"][i])
        h, w = image.shape[:2]
        assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= h).all() and (boxes[:, [1, 3]] <= w).all()
        # A 96-px short side canvas would keep every box under 128 px: these are original pixels.
        assert boxes.max() > 128


def test_bytes_that_are_not_an_image_are_invalid_argument(child_result):
    result, _ = child_result
    assert "image_bytes[1] is not an encoded image" in result["bad_bytes"], result["bad_bytes"]
    assert "image/encoded" in result["no_encoded"], result["no_encoded"]


def test_export_without_pasted_masks_keeps_box_masks(tiny_model):
    from rethink_tf.serving import saved_model
    model, categories, inference = tiny_model
    module = saved_model.build_export_module(model, categories, inference, paste_masks=False)
    assert "detection_masks" not in module.config()["outputs"]
    assert "detection_box_masks" in module.config()["outputs"]


def test_export_module_refuses_unbuilt_model_and_bad_label_map(tiny_model):
    from rethink_tf.serving.export_module import DetectionExportModule
    model, _, _ = tiny_model
    with pytest.raises(ValueError, match="category ids"):
        DetectionExportModule(model, category_ids=[1, 2], category_names=["a"], short_side=96,
                              max_size=128, landscape_canvas=(96, 128))
    with pytest.raises(ValueError, match="landscape_canvas"):
        DetectionExportModule(model, category_ids=[1], category_names=["a"], short_side=96,
                              max_size=256, landscape_canvas=(96, 128))
    with pytest.raises(ValueError, match="portrait_canvas"):
        DetectionExportModule(model, category_ids=[1], category_names=["a"], short_side=96,
                              max_size=128, landscape_canvas=(96, 128), portrait_canvas=(128, 64))


def test_portrait_and_landscape_images_run_on_their_own_canvas(exported, tiny_model):
    """The SavedModel puts a portrait image on the portrait canvas (128x96 here) and a landscape one on
    the landscape canvas (96x128), as the eval pipeline does: it equals the Keras model run there."""
    model, _, inference = tiny_model
    assert (inference.landscape_canvas, inference.portrait_canvas) == ((96, 128), (128, 96))
    paths = {os.path.basename(p): p for p in coco_image_paths(13)}
    landscape, portrait = paths["000000000009.jpg"], paths["000000000036.jpg"]  # 480x640, 640x481
    loaded = tf.saved_model.load(exported)
    with open(os.path.join(exported, "assets.extra", "export_config.json")) as f:
        assert json.load(f)["portrait_canvas"] == [128, 96]
    encoded = tf.stack([tf.io.read_file(landscape), tf.io.read_file(portrait)])
    outputs = loaded.signatures["image_bytes"](image_bytes=encoded)
    served = {k: v.numpy().tolist() for k, v in outputs.items() if "masks" not in k}
    served["mask_pixels"] = outputs["detection_masks"].numpy().astype(np.int64).sum((2, 3)).tolist()
    served["box_mask_sum"] = outputs["detection_box_masks"].numpy().sum((2, 3)).tolist()
    for i, path in enumerate((landscape, portrait)):
        image = preprocess.decode_image_bytes(tf.io.read_file(path)).numpy()
        reference = keras_reference(model, image, inference)
        assert_matches(served, reference, i, image.shape[:2])
        boxes = np.array(served["detection_boxes"][i][:reference["num_detections"]])
        assert boxes[:, [0, 2]].max() <= image.shape[0] and boxes[:, [1, 3]].max() <= image.shape[1]
        assert boxes.max() > 128  # original pixels, not the 96/128-pixel canvas
