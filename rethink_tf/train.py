"""Trains a model: `python -m rethink_tf.train --gin_file=FILE [--gin_file=MORE] [--gin_bindings='a.b = 1'] --model_dir=DIR`.

Resumes from the latest checkpoint in DIR when restarted with the same command. Bad input (a gin
binding, a data file, --model_dir naming a file, a DIR whose checkpoints were trained with another
model or inference configuration) stops it at start-up with one line `error: ...` naming what is wrong
and exit status 2; `--verbose` adds the traceback. Writes DIR/config.gin, DIR/run_config.json,
DIR/label_map.json, checkpoints, TensorBoard events (DIR/train, DIR/eval) and DIR/metrics.jsonl.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from rethink_tf.utils import cli  # noqa: E402

cli.define_run_flags("Output directory (checkpoints, config.gin, metrics.jsonl, events).")


def _train(model_dir, strategy):
    from rethink_tf.training import experiment

    # experiment() writes DIR/config.gin once it has checked that DIR's checkpoints are of this configuration.
    experiment.experiment(model_dir, strategy)


def _next_commands(model_dir):
    return (f"python -m rethink_tf.export --model_dir={model_dir} --export_dir={model_dir}/export",
            f"tensorboard --logdir {model_dir}")


def main(argv):
    cli.run_job(argv, _train, _next_commands)


def run():
    """Console script `rethink-train`."""
    cli.run(main)


if __name__ == "__main__":
    run()
