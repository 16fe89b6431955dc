"""Latency of the exported SavedModel per image on this machine's CPU.

    python benchmarks/serving_latency.py [--sizes=512,800] [--batch=1,4] [--iterations=5] [--saved_model=OUT]

Without --saved_model it builds the paper's detector (build_model defaults: R50-FPN GN Mask R-CNN,
80 classes, untrained weights, with `build_postprocessor.score_threshold = 0` unless --gin_bindings
set it: untrained scores are all near 1/81, below the 0.05 threshold, and the RoI branches run on the
kept detections only, so the default would time an empty mask head; at 0 every image keeps all 100
detection slots, each a mask to predict and paste, as the worst case of a trained model). It exports it once per size S
with eval short side S, max size S and a canvas of S rounded up to 32, reloads the SavedModel as a
server would and times `serving_default` on one S x S uint8 image (batch 1), pasted masks included.
--gin_bindings change the built model (e.g. the 2fc box head of the frozen-BN baseline and of
torchvision's Mask R-CNN). With --saved_model it times that SavedModel on S x S images as exported.

--mixed_precision=mixed_bfloat16 exports the model computing in bfloat16, as `rethink_tf.export
--mixed_precision=mixed_bfloat16` does.

--batch lists batch sizes B: each timed call sends B different S x S images and the time is divided by
B; with a B >= 2 the export has `batch_images` (one batched model call for B >= 2 images, see
rethink_tf.serving.export_module; a single image runs as without it).

Prints one line per size and batch size: median and mean seconds per image over --iterations timed
calls (after one warm-up call per batch size, which pays for graph optimization) and the detections
per image of the last call.
"""
import argparse
import math
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def export_paper_model(size, export_dir, gin_bindings=(), batch_images=False):
    import gin
    from rethink_tf.data import preprocess
    from rethink_tf.training import config
    from rethink_tf.modeling.factory import build_model
    from rethink_tf.serving import model_dir, saved_model

    gin.clear_config()
    config.parse([], list(gin_bindings), finalize=False)
    model = build_model(num_classes=80)
    model.build_networks()
    categories = [{"id": i + 1, "name": f"class_{i + 1}"} for i in range(80)]
    landscape, portrait = preprocess.canvas_shapes(size, size)  # S x S images: one square canvas
    inference = model_dir.InferenceConfig(
        short_side=size, max_size=size, landscape_canvas=landscape, portrait_canvas=portrait,
        pixel_mean=tuple(preprocess.PIXEL_MEAN), pixel_std=None)
    module = saved_model.build_export_module(model, categories, inference, batch_images=batch_images)
    saved_model.save(module, export_dir, overwrite=True)
    params = sum(int(np.prod(v.shape)) for v in model.variables)
    return params


def time_saved_model(serve, size, batch, iterations):
    """(first call s, [seconds per image of each timed call], detections per image of the last call)
    for `serve` on batches of `batch` S x S images."""
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), np.uint8))
    start = time.perf_counter()
    _ = {k: v.numpy() for k, v in serve(images=images).items()}
    warmup = time.perf_counter() - start
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        outputs = {k: v.numpy() for k, v in serve(images=images).items()}
        times.append((time.perf_counter() - start) / batch)
    return warmup, times, float(np.mean(outputs["num_detections"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,800", help="comma-separated image sides (pixels)")
    parser.add_argument("--batch", default="1", help="comma-separated batch sizes (images per call)")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--saved_model", default=None, help="time this SavedModel instead")
    parser.add_argument("--mixed_precision", default=None,
                        help="'mixed_bfloat16': export as `rethink_tf.export --mixed_precision` does")
    parser.add_argument("--gin_bindings", action="append", default=[],
                        help="bindings for the built model, e.g. 'build_model.box_head = \"2fc\"'")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batch.split(",")]
    if min(batches) < 1:
        parser.error(f"--batch: batch sizes must be >= 1, got {args.batch}")
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU(s), load average "
          f"{os.getloadavg()[0]:.1f}")
    for size in sizes:
        if args.saved_model:
            export_dir, note = args.saved_model, args.saved_model
        else:
            export_dir = os.path.join(tempfile.mkdtemp(prefix="serving_latency_"), f"r50_{size}")
            start = time.perf_counter()
            bindings = list(args.gin_bindings)
            if not any(b.replace(" ", "").startswith("build_postprocessor.score_threshold=") for b in bindings):
                bindings.insert(0, "build_postprocessor.score_threshold = 0.0")
            from rethink_tf.utils import precision
            with precision.inference_policy(args.mixed_precision, "--mixed_precision"):
                params = export_paper_model(size, export_dir, bindings, batch_images=max(batches) > 1)
            note = (f"R50-FPN GN Mask R-CNN {'; '.join(bindings)}, {args.mixed_precision or 'float32'}, "
                    f"{params / 1e6:.1f} M parameters, canvas "
                    f"{int(math.ceil(size / 32) * 32)}, export {time.perf_counter() - start:.0f} s")
        serve = tf.saved_model.load(export_dir).signatures["serving_default"]
        for batch in batches:
            warmup, times, detections = time_saved_model(serve, size, batch, args.iterations)
            print(f"{size}x{size} batch {batch}: median {statistics.median(times):.3f} s/image, mean "
                  f"{statistics.mean(times):.3f} s (n={len(times)}, first call {warmup:.1f} s, "
                  f"{detections:.0f} detections per image) [{note}]",
                  flush=True)


if __name__ == "__main__":
    main()
