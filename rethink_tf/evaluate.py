"""Evaluates one checkpoint: `python -m rethink_tf.evaluate --model_dir=DIR [--checkpoint=PATH] [--tta]`.

Reads DIR/config.gin (written by training), refuses (exit 2, naming the fields) one that is not what
the checkpoint was trained with (`rethink_tf.training.run_record`; --gin_bindings apply after that
check), runs the COCO evaluation of the eval source (the VOC metric when the config binds
`build_evaluator.metric = "voc"`, as the PASCAL VOC configs do), writes DIR/coco_results_<checkpoint>.json
and appends the bbox / segm (or voc) metrics to DIR/metrics.jsonl and to TensorBoard (DIR/eval).

`--mixed_precision=mixed_bfloat16` builds the model with bfloat16 compute (float32 variables, boxes,
scores and masks), as `export --mixed_precision` serves it; the metrics.jsonl record then has a
"dtype_policy" entry.

`--tta` evaluates with test-time augmentation (`rethink_tf.modeling.tta`; the same as the binding
`evaluate_checkpoint.tta = True`), set by `TestTimeAugmentation.*` bindings (default: Detectron's
scales 400..1200 at max 2000, flips, box voting); results go to DIR/coco_results_tta_<checkpoint>.json,
DIR/metrics.jsonl (with a "tta" entry) and DIR/eval_tta.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin  # noqa: E402
from absl import app, flags  # noqa: E402

from rethink_tf.utils import cli  # noqa: E402

flags.DEFINE_string("model_dir", None, "Training output directory holding config.gin and checkpoints.")
flags.DEFINE_string("checkpoint", None, "Checkpoint prefix (default: the latest in model_dir).")
flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings applied after DIR/config.gin.")
flags.DEFINE_bool("tta", False, "Test-time augmentation (TestTimeAugmentation.* bindings set it up).")
flags.DEFINE_string("mixed_precision", None, "'mixed_bfloat16': evaluate the model computing in bfloat16, as "
                    "`export --mixed_precision` serves it (rethink_tf/utils/precision.py). Default: float32.")
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from rethink_tf.serving import model_dir as model_dir_lib
    from rethink_tf.training import config
    from rethink_tf.utils import precision

    precision.check_inference_policy(FLAGS.mixed_precision, "--mixed_precision")

    config_file = os.path.join(FLAGS.model_dir, "config.gin")
    if os.path.exists(config_file):  # (a missing one is named by config.parse)
        model_dir_lib.check_run_dir(FLAGS.model_dir, FLAGS.checkpoint)
    gin.clear_config()
    # The eval pipeline's sizes come from DIR/inference_config.json (resolved at train time);
    # --gin_bindings apply after them.
    resolved = model_dir_lib.eval_pipeline_bindings(FLAGS.model_dir) if os.path.exists(config_file) else []
    tta = ["evaluate_checkpoint.tta = True"] if FLAGS.tta else []
    config.parse([config_file], resolved + list(FLAGS.gin_bindings) + tta)
    from rethink_tf.training import experiment

    with precision.inference_policy(FLAGS.mixed_precision, "--mixed_precision"):
        metrics = experiment.evaluate_checkpoint(FLAGS.model_dir, FLAGS.checkpoint)
    print(json.dumps(metrics, indent=1))


def run():
    """Console script `rethink-evaluate`."""
    cli.run(main)


if __name__ == "__main__":
    run()
