"""Fraction of canvas pixels that are real image: one square canvas against one canvas per orientation.

    python benchmarks/canvas_fill.py [--data_root=../shared/data] [--short_side=800] [--max_size=1333]

No model and no decoding: each image's size comes from its annotation file, its resized size from the
input pipeline's rule (`preprocess.scaled_size`) and the canvases from `input_pipeline.dataset_canvases`
(evaluation: shorter side --short_side; training: every shorter side of train_short_side
(640..800 step 32) equally often). Prints one line per annotation file: images, portrait images, and
the fill (sum of resized image areas / sum of canvas areas) with the old square canvas
(aspect_grouping=False) and with the per-orientation canvases (aspect_grouping=True).
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from rethink_tf.data import preprocess  # noqa: E402
from rethink_tf.data.input_pipeline import dataset_canvases  # noqa: E402

ANNOTATION_FILES = ("coco128/annotations/instances_train2017.json",
                    "coco_mini/annotations/instances_train2017.json",
                    "coco_mini/annotations/instances_val2017.json")


def fill(heights, widths, short_sides, max_size, canvases):
    """Sum of resized areas / sum of canvas areas over every (image, short side) pair."""
    portrait = preprocess.is_portrait(heights, widths)
    canvas_area = np.where(portrait, np.prod(canvases[1]), np.prod(canvases[0])).astype(np.float64)
    image_area = canvas_total = 0.0
    for short_side in short_sides:
        h, w = preprocess.scaled_size(heights, widths, short_side, max_size)
        image_area += float(np.sum(h.numpy().astype(np.float64) * w.numpy()))
        canvas_total += float(canvas_area.sum())
    return image_area / canvas_total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_root", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                            "data"))
    parser.add_argument("--short_side", type=int, default=800)
    parser.add_argument("--max_size", type=int, default=1333)
    parser.add_argument("--train_short_side", default="640,800")
    args = parser.parse_args()
    low, high = (int(v) for v in args.train_short_side.split(","))
    train_sides = list(range(low, high + 1, 32))
    for name in ANNOTATION_FILES:
        path = os.path.join(args.data_root, name)
        if not os.path.exists(path):
            print(f"{name}: not found under {args.data_root}")
            continue
        with open(path) as f:
            images = json.load(f)["images"]
        heights = np.array([im["height"] for im in images])
        widths = np.array([im["width"] for im in images])
        row = {"file": name, "images": len(images), "portrait": int(np.sum(heights > widths))}
        for mode, sides, kwargs in (("eval", [args.short_side], dict(eval_short_side=args.short_side)),
                                    ("train", train_sides, dict(train_short_side=(low, high)))):
            for grouping in (False, True):
                canvases = dataset_canvases(training=mode == "train", max_size=args.max_size,
                                            aspect_grouping=grouping, **kwargs)
                key = f"{mode}_{'grouped' if grouping else 'square'}"
                row[key] = round(fill(heights, widths, sides, args.max_size, canvases), 3)
                row[f"{key}_canvases"] = "/".join(f"{h}x{w}" for h, w in dict.fromkeys(canvases))
        print(json.dumps(row))


if __name__ == "__main__":
    main()
