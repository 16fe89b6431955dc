"""Runs an exported SavedModel on image files and writes what it sees.

    python -m rethink_tf.predict --saved_model=OUT --image=a.jpg [--image=b.png ...] --output_dir=VIS

For each image `<stem>.<ext>` it writes to --output_dir:
- `<stem>.png`: the image with boxes, masks and class names (score >= --min_score) drawn on it;
- `<stem>.json`: its detections in COCO result format (all returned detections):
  `[{"image_id", "category_id", "bbox": [x, y, width, height], "score", "segmentation": RLE}]`,
  boxes in original image pixels, RLE as pycocotools writes it (counts as a str);
and `detections.json`, all images' detections together (what COCOeval.loadRes takes).

The image id is the file stem when it is an integer (COCO names files by id, 000000000139.jpg -> 139),
otherwise the image's 1-based position on the command line.
"""
import json
import os
import sys

from absl import app, flags, logging
import numpy as np

flags.DEFINE_string("saved_model", None, "Directory written by rethink_tf.export.")
flags.DEFINE_multi_string("image", None, "Image file (JPEG/PNG/GIF/BMP); repeat for several.")
flags.DEFINE_string("output_dir", None, "Where the PNGs and json files go (created if needed).")
flags.DEFINE_float("min_score", 0.5, "Detections below this score are not drawn (all go to json).")

FLAGS = flags.FLAGS


def image_id_for(path, position):
    """COCO-style id from the file stem if it is an integer, else `position` (1-based)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return int(stem) if stem.isdigit() else position


def coco_results(image_id, detections):
    """One image's detections (numpy, batch dim removed) -> list of COCO result dicts."""
    from pycocotools import mask as mask_util
    num = int(detections["num_detections"])
    results = []
    for i in range(num):
        y0, x0, y1, x1 = (float(v) for v in detections["detection_boxes"][i])
        result = {"image_id": image_id,
                  "category_id": int(detections["detection_classes"][i]),
                  "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                  "score": round(float(detections["detection_scores"][i]), 5)}
        if "masks" in detections:
            rle = mask_util.encode(np.asfortranarray(detections["masks"][i]))
            rle["counts"] = rle["counts"].decode("ascii")
            result["segmentation"] = rle
        results.append(result)
    return results


class Predictor:
    """Loads a SavedModel once; `__call__(encoded_bytes)` -> (uint8 image, detections dict)."""

    def __init__(self, saved_model_dir):
        import tensorflow as tf
        self._tf = tf
        self.errors = tf.errors
        if not tf.io.gfile.exists(os.path.join(saved_model_dir, "saved_model.pb")):
            raise FileNotFoundError(f"--saved_model={saved_model_dir}: no saved_model.pb there")
        self._loaded = tf.saved_model.load(saved_model_dir)
        self._serve = self._loaded.signatures["image_bytes"]
        label_map = self._loaded.label_map()
        self.class_names = {
            int(i): n.decode("utf-8") for i, n in zip(label_map["category_ids"].numpy(),
                                                      label_map["category_names"].numpy())}

    def __call__(self, encoded):
        from rethink_tf.data import preprocess
        tf = self._tf
        # The image drawn on is decoded exactly as the SavedModel decodes it.
        image = preprocess.decode_image_bytes(encoded).numpy()
        outputs = self._serve(image_bytes=tf.constant([encoded]))
        detections = {k: v.numpy()[0] for k, v in outputs.items()}
        height, width = image.shape[:2]
        if "detection_masks" in detections:
            detections["masks"] = detections["detection_masks"][:, :height, :width]
        elif "detection_box_masks" in detections:  # exported with paste_masks=False
            from rethink_tf.utils.visualize import paste_box_masks
            num = int(detections["num_detections"])
            masks = np.zeros((len(detections["detection_boxes"]), height, width), np.uint8)
            masks[:num] = paste_box_masks(detections["detection_box_masks"][:num],
                                          detections["detection_boxes"][:num], (height, width))
            detections["masks"] = masks
        return image, detections


def predict_files(saved_model, image_paths, output_dir, min_score=0.5):
    """Writes `<stem>.png`, `<stem>.json` per image and `detections.json`; returns all results.

    `saved_model` is a SavedModel directory or a loaded `Predictor`.
    """
    from PIL import Image
    from rethink_tf.utils.visualize import draw_detections

    predictor = saved_model if isinstance(saved_model, Predictor) else Predictor(saved_model)
    os.makedirs(output_dir, exist_ok=True)
    all_results, used_stems = [], set()
    for position, path in enumerate(image_paths, start=1):
        with open(path, "rb") as f:
            encoded = f.read()
        try:
            image, detections = predictor(encoded)
        except predictor.errors.InvalidArgumentError as e:
            raise ValueError(f"--image={path}: {e.message}") from e
        image_id = image_id_for(path, position)
        results = coco_results(image_id, detections)
        num = int(detections["num_detections"])
        drawn = draw_detections(
            image, detections["detection_boxes"][:num], detections["detection_classes"][:num],
            detections["detection_scores"][:num],
            detections["masks"][:num] if "masks" in detections else None,
            predictor.class_names, score_threshold=min_score)
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in used_stems:  # same file name from two folders: keep both
            stem = f"{stem}_{position}"
        used_stems.add(stem)
        Image.fromarray(drawn).save(os.path.join(output_dir, stem + ".png"))
        with open(os.path.join(output_dir, stem + ".json"), "w") as f:
            json.dump(results, f)
        shown = int(np.sum(detections["detection_scores"][:num] >= min_score))
        logging.info("%s: %d detections (%d drawn with score >= %.2f) -> %s.png", path, num, shown,
                     min_score, os.path.join(output_dir, stem))
        all_results.extend(results)
    with open(os.path.join(output_dir, "detections.json"), "w") as f:
        json.dump(all_results, f)
    return all_results


def main(argv):
    del argv
    for name in ("saved_model", "image", "output_dir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    for path in FLAGS.image:
        if not os.path.isfile(path):
            raise app.UsageError(f"--image={path}: no such file")
    try:
        predict_files(FLAGS.saved_model, FLAGS.image, FLAGS.output_dir, FLAGS.min_score)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    from rethink_tf.utils import cli

    cli.run(main)
