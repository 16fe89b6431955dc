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

from rethink_tf.utils import cli  # noqa: E402

cli.define_run_flags("Output directory (checkpoints, backbone_weights.h5, metrics.jsonl, events).")


def _pretrain(model_dir, strategy):
    from rethink_tf.training import classification_task

    classification_task.pretrain(model_dir, strategy)


def _next_commands(model_dir):
    # The fine-tuning run of the synthetic pre-training; pretrain_2x.gin (COCO) takes the same binding.
    return ("python -m rethink_tf.train --gin_file=finetune_synthetic_cpu "
            f"--gin_bindings='experiment.backbone_weights = \"{model_dir}/backbone_weights.h5\"' "
            "--model_dir=runs/finetune",
            f"tensorboard --logdir {model_dir}")


def main(argv):
    cli.run_job(argv, _pretrain, _next_commands)


def run():
    """Console script `rethink-pretrain`."""
    cli.run(main)


if __name__ == "__main__":
    run()
