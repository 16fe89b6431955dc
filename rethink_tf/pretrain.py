"""Pre-trains a backbone on image classification (the ImageNet pre-training arm):
`python -m rethink_tf.pretrain --gin_file=FILE [--gin_file=MORE] [--gin_bindings='a.b = 1'] --model_dir=DIR`.

The same Trainer as `rethink_tf.train` (checkpoints, resume after a kill with the same command,
TensorBoard, tf.distribute, mixed precision, gin) with the classification task
(`rethink_tf.training.classification_task`). Bad input stops it at start-up with one line `error: ...`
and exit status 2 (`--verbose` adds the traceback). Writes DIR/config.gin, DIR/run_config.json,
DIR/label_map.json, checkpoints, TensorBoard events (DIR/train, DIR/eval), DIR/metrics.jsonl (top-1 /
top-5) and DIR/backbone_weights.h5 (+ .samples.json), which a detection config's
`experiment.backbone_weights` reads.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from rethink_tf.utils import cli  # noqa: E402

flags.DEFINE_multi_string("gin_file", [], "gin config file(s), applied in order.")
flags.DEFINE_multi_string("gin_bindings", [], "gin bindings applied after the files, e.g. 'a.b = 1'.")
flags.DEFINE_string("model_dir", None, "Output directory (checkpoints, backbone_weights.h5, metrics.jsonl, events).")
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from rethink_tf.training import config

    cli.check_output_dir("model_dir", FLAGS.model_dir)
    config.parse(FLAGS.gin_file, FLAGS.gin_bindings)
    from rethink_tf.training import classification_task, distribute

    strategy = distribute.get_strategy()
    classification_task.pretrain(FLAGS.model_dir, strategy)


def run():
    """Console script `rethink-pretrain`."""
    cli.run(main)


if __name__ == "__main__":
    run()
