"""Trains a model: `python -m rethink_tf.train --gin_file=FILE [--gin_file=MORE] [--gin_bindings='a.b = 1'] --model_dir=DIR`.

Resumes from the latest checkpoint in DIR when restarted with the same command. Bad input (a gin
binding, a data file, --model_dir naming a file, a DIR whose checkpoints were trained with another
model or inference configuration) stops it at start-up with one line `error: ...` naming what is wrong
and exit status 2; `--verbose` adds the traceback. Writes DIR/config.gin, DIR/run_config.json,
DIR/label_map.json, checkpoints, TensorBoard events (DIR/train, DIR/eval) and DIR/metrics.jsonl.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from rethink_tf.utils import cli  # noqa: E402

flags.DEFINE_multi_string("gin_file", [], "gin config file(s), applied in order: a path, or the name of a "
                           "config shipped with the package (quickstart, scratch_6x, ...).")
flags.DEFINE_multi_string("gin_bindings", [], "gin bindings applied after the files, e.g. 'a.b = 1'.")
flags.DEFINE_string("model_dir", None, "Output directory (checkpoints, config.gin, metrics.jsonl, events).")
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from rethink_tf.training import config

    cli.check_output_dir("model_dir", FLAGS.model_dir)
    config.parse(FLAGS.gin_file, FLAGS.gin_bindings)
    from rethink_tf.training import distribute, experiment

    strategy = distribute.get_strategy()
    # experiment() writes DIR/config.gin once it has checked that DIR's checkpoints are of this configuration.
    experiment.experiment(FLAGS.model_dir, strategy)


def run():
    """Console script `rethink-train`."""
    cli.run(main)


if __name__ == "__main__":
    run()
