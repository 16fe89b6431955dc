"""Exports a trained detector as a SavedModel for serving.

    python -m rethink_tf.export --model_dir=DIR [--checkpoint=PATH] --export_dir=OUT

Rebuilds the model from DIR/config.gin (unknown gin names are errors) and DIR/label_map.json,
refuses (exit 2, naming the fields) a config.gin that is not what the checkpoint was trained with
(`rethink_tf.training.run_record`; --gin_bindings apply after that check), restores the checkpoint (the latest in DIR unless --checkpoint) and writes OUT with the signatures
`serving_default` (uint8 images), `image_bytes` (encoded images) and `tf_example` (serialized
tf.Example with `image/encoded`); `rethink_tf.serving.export_module` documents inputs and outputs.
With `--batch_images` a batch of B >= 2 images runs through the model one call per canvas instead of
one call per image (outputs equal up to float32 rounding; one image is unchanged). With `--tta` it adds `serving_tta` (uint8 images, as serving_default) running test-time augmentation
(`rethink_tf.modeling.tta`) with the bound `TestTimeAugmentation.*` settings (pass them as
--gin_bindings; default: Detectron's scales 400..1200 at max 2000, flips, box voting).
The SavedModel needs only TensorFlow to load and run.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

flags.DEFINE_string("model_dir", None, "Training directory (config.gin, label_map.json, checkpoints).")
flags.DEFINE_string("checkpoint", None, "Checkpoint prefix, e.g. DIR/ckpt-1000 (default: latest).")
flags.DEFINE_string("export_dir", None, "Where to write the SavedModel.")
flags.DEFINE_multi_string("gin_bindings", [], "Extra bindings after DIR/config.gin, e.g. "
                          "'build_postprocessor.score_threshold = 0.3'.")
flags.DEFINE_bool("paste_masks", True, "Output masks pasted at the original image size "
                  "(detection_masks) besides the 28x28 box-frame masks.")
flags.DEFINE_float("mask_threshold", None, "Probability at which pasted masks are binarized "
                   "(default: the run's, DIR/inference_config.json; 0.5 for older runs).")
flags.DEFINE_bool("batch_images", False, "Run batches of 2+ images through the model one call per canvas "
                  "(same-orientation images together) instead of one call per image; exports take about "
                  "twice as long (rethink_tf.serving.export_module).")
flags.DEFINE_bool("overwrite", False, "Replace an existing SavedModel in --export_dir.")
flags.DEFINE_string("mixed_precision", None, "'mixed_bfloat16': the SavedModel computes in bfloat16 (float32 "
                    "variables, boxes, scores and masks; rethink_tf/utils/precision.py). Default: float32.")
flags.DEFINE_bool("tta", False, "Also export the signature serving_tta (test-time augmentation).")
FLAGS = flags.FLAGS


def export(model_dir, export_dir, checkpoint=None, gin_bindings=(), paste_masks=True,
           mask_threshold=None, overwrite=False, tta=False, batch_images=False, mixed_precision=None):
    """Rebuilds, restores and exports a run's model; returns export_dir.

    tta: also export `serving_tta` with the bound TestTimeAugmentation (after `gin_bindings`).
    batch_images: batched model calls for B >= 2 images (DetectionExportModule).
    mixed_precision: None (float32) or "mixed_bfloat16" (`rethink_tf.utils.precision`).
    """
    from rethink_tf.utils import precision

    precision.check_inference_policy(mixed_precision, "--mixed_precision")
    if os.path.exists(os.path.join(export_dir, "saved_model.pb")) and not overwrite:
        # Checked before the (slow) rebuild; saved_model.save checks again.
        raise FileExistsError(f"{export_dir} already holds a SavedModel (pass --overwrite to replace it)")
    with precision.inference_policy(mixed_precision, "--mixed_precision"):
        return _export(model_dir, export_dir, checkpoint, gin_bindings, paste_masks, mask_threshold,
                       overwrite, tta, batch_images, mixed_precision)


def _export(model_dir, export_dir, checkpoint, gin_bindings, paste_masks, mask_threshold, overwrite, tta,
            batch_images, mixed_precision):
    from rethink_tf.serving import model_dir as model_dir_lib
    from rethink_tf.serving import saved_model

    model, categories, inference, checkpoint = model_dir_lib.load_model(
        model_dir, checkpoint, gin_bindings)
    logging.info("Restored %s (%d classes); eval resize short side %d, max %d, canvases %s / %s",
                 checkpoint, len(categories), inference.short_side, inference.max_size,
                 inference.landscape_canvas, inference.portrait_canvas)
    if mask_threshold is None:
        mask_threshold = model_dir_lib.mask_threshold(model_dir)
    augmentation = None
    if tta:
        from rethink_tf.modeling.tta import TestTimeAugmentation
        augmentation = TestTimeAugmentation()
        logging.info("serving_tta: %s", augmentation.config())
    module = saved_model.build_export_module(model, categories, inference, tta=augmentation,
                                             paste_masks=paste_masks, mask_threshold=mask_threshold,
                                             batch_images=batch_images)
    from rethink_tf.training import run_record
    recorded = run_record.read_checkpoint(checkpoint)
    saved_model.save(module, export_dir, overwrite=overwrite,
                     metadata={"model_dir": os.path.abspath(model_dir),
                               "checkpoint": os.path.abspath(checkpoint),
                               "run_fingerprint": recorded["fingerprint"] if recorded else None,
                               "gin_bindings": list(gin_bindings),
                               "mixed_precision": mixed_precision})
    logging.info("Wrote SavedModel to %s", export_dir)
    return export_dir


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for name in ("model_dir", "export_dir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    from rethink_tf.utils import cli

    cli.check_output_dir("export_dir", FLAGS.export_dir)
    export(FLAGS.model_dir, FLAGS.export_dir, FLAGS.checkpoint, FLAGS.gin_bindings,
           FLAGS.paste_masks, FLAGS.mask_threshold, FLAGS.overwrite, FLAGS.tta, FLAGS.batch_images,
           FLAGS.mixed_precision)


def run():
    """Console script `rethink-export`."""
    from rethink_tf.utils import cli

    cli.run(main)


if __name__ == "__main__":
    run()
