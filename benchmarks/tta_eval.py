"""Times test-time-augmented inference against plain inference per image, at the same base size.

    python benchmarks/tta_eval.py --short_side=256 --max_size=427 --images=4 [--gin_file=gin_configs/quickstart.gin]

The model is built from --gin_file / --gin_bindings (default: build_model's defaults, the paper's
R50-FPN GN Mask R-CNN) with random weights and COCO's 80 classes (time does not depend on the weights:
every shape is static, masks run on all detection slots). Images: the first --images of
../shared/data/coco128. Plain inference: the evaluation's predict function on the eval canvas of the
image's orientation (`preprocess.canvas_shapes(short_side, max_size)`). TTA: `TTADetector` with the
paper's set scaled to the base: shorter sides short_side x (0.5, 0.625, 0.75, 0.875, 1.125, 1.25,
1.375, 1.5) at max 2.5 x short_side (400..1200 at 2000 for 800), flips, box voting; --scales overrides.

Both are warmed up (traced) on every image first, then timed alternately, image by image, --rounds
times (the machine is shared: alternation spreads the noise over both). Prints one JSON line with the
medians, their ratio and every timing.
"""
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_integer("short_side", 256, "Base eval shorter side (pixels).")
flags.DEFINE_integer("max_size", 427, "Base eval longer-side cap (pixels).")
flags.DEFINE_list("scales", None, "TTA shorter sides (default: the paper's set scaled to short_side).")
flags.DEFINE_integer("tta_max_size", None, "TTA longer-side cap (default 2.5 x short_side).")
flags.DEFINE_integer("images", 4, "coco128 images timed.")
flags.DEFINE_integer("rounds", 2, "Timed passes over the images (alternating plain / TTA).")
flags.DEFINE_multi_string("gin_file", [], "Gin files for build_model.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings.")
FLAGS = flags.FLAGS
COCO128 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco128" / "train2017"


def main(_):
    from rethink_tf.data import preprocess
    from rethink_tf.evaluation import eval_loop
    from rethink_tf.modeling import tta
    from rethink_tf.modeling.factory import build_model
    from rethink_tf.serving.model_dir import InferenceConfig
    from rethink_tf.training import config

    config.parse(FLAGS.gin_file, FLAGS.gin_bindings, finalize=False)
    model = build_model(num_classes=80)
    model.build_networks()
    base = FLAGS.short_side
    scales = ([int(s) for s in FLAGS.scales] if FLAGS.scales else
              [int(round(base * f)) for f in (0.5, 0.625, 0.75, 0.875, 1.125, 1.25, 1.375, 1.5)])
    augmentation = tta.TestTimeAugmentation(scales=scales, max_size=FLAGS.tta_max_size or int(2.5 * base))
    landscape, portrait = preprocess.canvas_shapes(base, FLAGS.max_size)
    inference = InferenceConfig(base, FLAGS.max_size, landscape, portrait, preprocess.PIXEL_MEAN, None)
    detector = tta.TTADetector(model, augmentation, inference)
    predict = eval_loop.make_predict_fn(model)
    paths = sorted(COCO128.glob("*.jpg"))[:FLAGS.images]
    if len(paths) < FLAGS.images:
        sys.exit(f"need {FLAGS.images} images under {COCO128}")
    images = [preprocess.decode_image_bytes(tf.io.read_file(str(p))) for p in paths]

    def plain(image):
        canvas = portrait if preprocess.is_portrait(*image.shape[:2]) else landscape
        padded, info = preprocess.resize_and_pad(image, base, FLAGS.max_size, canvas)
        out = predict(preprocess.normalize_image(padded, image_info=info)[None], info[None])
        return out["num_detections"].numpy()

    def run_tta(image):
        return detector.detect(image)["num_detections"].numpy()

    warmup = {"plain": [], "tta": []}
    for image in images:
        for name, fn in (("plain", plain), ("tta", run_tta)):
            start = time.perf_counter()
            fn(image)
            warmup[name].append(round(time.perf_counter() - start, 3))
    timed = {"plain": [], "tta": []}
    for _ in range(FLAGS.rounds):
        for image in images:
            for name, fn in (("plain", plain), ("tta", run_tta)):
                start = time.perf_counter()
                fn(image)
                timed[name].append(round(time.perf_counter() - start, 3))
    medians = {k: statistics.median(v) for k, v in timed.items()}
    print(json.dumps({"short_side": base, "max_size": FLAGS.max_size, "tta": augmentation.config(),
                      "variants": len(detector.variants), "plain_s": medians["plain"], "tta_s": medians["tta"],
                      "ratio": round(medians["tta"] / medians["plain"], 2), "timed": timed, "warmup": warmup,
                      "gin_file": FLAGS.gin_file, "gin_bindings": FLAGS.gin_bindings}))


if __name__ == "__main__":
    app.run(main)
