"""Runs an exported SavedModel on image files and writes what it sees.

    python -m rethink_tf.predict --saved_model=OUT --image=a.jpg [--image=b.png ...] --output_dir=VIS

For each image `<stem>.<ext>` it writes to --output_dir:
- `<stem>.png`: the image with boxes, masks and class names (score >= --min_score) drawn on it, and
  the keypoint skeletons of a keypoint model (`rethink_tf.utils.visualize`; images with a shorter
  side under 512 px are drawn enlarged to 512);
- `<stem>.json`: its detections in COCO result format (all returned detections):
  `[{"image_id", "category_id", "bbox": [x, y, width, height], "score", "segmentation": RLE}]`
  (plus `"keypoints": [x1, y1, 1, ...]` from a keypoint model), boxes and keypoints in original
  image pixels, RLE as pycocotools writes it (counts as a str);
and `detections.json`, all images' detections together (what COCOeval.loadRes takes).

A file that cannot be read or that the SavedModel refuses (missing, empty, not an image, an image
outside the limits of `rethink_tf.serving.export_module`) does not stop the others: each is reported
(`error: --image=PATH: reason` on stderr), detections.json holds the good images' detections, and the
command exits 1 at the end if any file failed.

The image id is the file stem when it is an integer (COCO names files by id, 000000000139.jpg -> 139),
otherwise the image's 1-based position on the command line.
"""
import json
import os
import re
import sys

from absl import app, flags, logging
import numpy as np

from rethink_tf.utils.visualize import SCORE_THRESHOLD

flags.DEFINE_string("saved_model", None, "Directory written by rethink_tf.export.")
flags.DEFINE_multi_string("image", None, "Image file (JPEG/PNG/GIF/BMP); repeat for several.")
flags.DEFINE_string("output_dir", None, "Where the PNGs and json files go (created if needed).")
flags.DEFINE_float("min_score", SCORE_THRESHOLD,
                  "Detections below this score are not drawn (all go to json).")

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
        if "detection_keypoints" in detections:  # COCO's [x, y, v] with v = 1 (predicted)
            points = detections["detection_keypoints"][i]
            result["keypoints"] = [round(float(v), 2) for x, y, _ in points for v in (x, y, 1.0)]
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
        outputs = self._serve(image_bytes=tf.constant([encoded]))  # first: its errors name the problem
        # The image drawn on is decoded exactly as the SavedModel decodes it.
        image = preprocess.decode_image_bytes(encoded).numpy()
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


class FailedImagesError(ValueError):
    """Some images could not be read or were refused; `failures` is [(path, reason)]."""

    def __init__(self, failures, total):
        self.failures = list(failures)
        super().__init__(f"{len(self.failures)} of {total} images failed: "
                         + "; ".join(f"--image={p}: {r}" for p, r in self.failures))


def _reason(message):
    """The SavedModel's own words from an InvalidArgumentError message (the failed assertion's text)."""
    match = re.search(r"assertion failed: \[(.*)\]", message)
    return match.group(1) if match else message.strip().splitlines()[-1]


def _read(path):
    """The file's bytes; OSError / ValueError with the reason for a missing or empty file."""
    with open(path, "rb") as f:
        encoded = f.read()
    if not encoded:
        raise ValueError("empty file (0 bytes)")
    return encoded


def predict_files(saved_model, image_paths, output_dir, min_score=SCORE_THRESHOLD):
    """Writes `<stem>.png`, `<stem>.json` per image and `detections.json`; returns all results.

    `saved_model` is a SavedModel directory or a loaded `Predictor`. A file that cannot be read or that
    the SavedModel refuses is skipped; after the others are written, FailedImagesError names them all.
    """
    from PIL import Image
    from rethink_tf.utils.visualize import draw_detections

    predictor = saved_model if isinstance(saved_model, Predictor) else Predictor(saved_model)
    os.makedirs(output_dir, exist_ok=True)
    all_results, used_stems, failures = [], set(), []
    for position, path in enumerate(image_paths, start=1):
        try:
            image, detections = predictor(_read(path))
        except OSError as e:
            failures.append((path, e.strerror or str(e)))
        except ValueError as e:
            failures.append((path, str(e)))
        except predictor.errors.InvalidArgumentError as e:
            failures.append((path, _reason(e.message)))
        if failures and failures[-1][0] == path:
            logging.error("--image=%s: %s", path, failures[-1][1])
            continue
        image_id = image_id_for(path, position)
        results = coco_results(image_id, detections)
        num = int(detections["num_detections"])
        drawn = draw_detections(
            image, detections["detection_boxes"][:num], detections["detection_classes"][:num],
            detections["detection_scores"][:num],
            detections["masks"][:num] if "masks" in detections else None,
            predictor.class_names, score_threshold=min_score,
            keypoints=detections["detection_keypoints"][:num] if "detection_keypoints" in detections else None)
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
    if failures:
        raise FailedImagesError(failures, len(image_paths))
    return all_results


def main(argv):
    del argv
    for name in ("saved_model", "image", "output_dir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    try:
        predict_files(FLAGS.saved_model, FLAGS.image, FLAGS.output_dir, FLAGS.min_score)
    except FailedImagesError as e:
        for path, reason in e.failures:
            print(f"error: --image={path}: {reason}", file=sys.stderr)
        print(f"error: {len(e.failures)} of {len(FLAGS.image)} images failed; detections.json holds "
              "the others", file=sys.stderr)
        sys.exit(1)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def run():
    """Console script `rethink-predict`."""
    from rethink_tf.utils import cli

    cli.run(main)


if __name__ == "__main__":
    run()
