"""Evaluates one checkpoint: `python -m rethink_tf.evaluate --model_dir=DIR [--checkpoint=PATH]`.

Reads DIR/config.gin (written by training), refuses (exit 2, naming the fields) one that is not what
the checkpoint was trained with (`rethink_tf.training.run_record`; --gin_bindings apply after that
check), runs the COCO evaluation of the eval source, writes DIR/coco_results_<checkpoint>.json and
appends the bbox / segm metrics to DIR/metrics.jsonl and to TensorBoard (DIR/eval).
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
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from rethink_tf.serving import model_dir as model_dir_lib
    from rethink_tf.training import config

    config_file = os.path.join(FLAGS.model_dir, "config.gin")
    if os.path.exists(config_file):  # (a missing one is named by config.parse)
        model_dir_lib.check_run_dir(FLAGS.model_dir, FLAGS.checkpoint)
    gin.clear_config()
    config.parse([config_file], FLAGS.gin_bindings)
    from rethink_tf.training import experiment

    metrics = experiment.evaluate_checkpoint(FLAGS.model_dir, FLAGS.checkpoint)
    print(json.dumps(metrics, indent=1))


def run():
    """Console script `rethink-evaluate`."""
    cli.run(main)


if __name__ == "__main__":
    run()
