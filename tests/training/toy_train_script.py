"""Subprocess entry for the trainer tests: trains the toy detector with the real Trainer.

Usage: python toy_train_script.py MODEL_DIR MODE [options]
  MODE "single": default strategy (SIGKILL / resume test; `--sleep` slows each step so a kill lands mid-run).
  MODE "multi_worker": MultiWorkerMirroredStrategy from TF_CONFIG (2 workers on 127.0.0.1); the final
    weights are written to `--weights_out`; the chief then works on for `--chief_linger` seconds, and the
    tasks end through `distribute.leave_cluster`.
  MODE "mirrored_vs_single": 2 logical CPUs; one SyncBN step under MirroredStrategy and one on a single
    device on the same global batch; writes both weight sets to `--weights_out`.
Per-step losses are appended to MODEL_DIR/losses_<task>.txt as "step loss_total".
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import training_toys as toys  # noqa: E402
from rethink_tf.training import distribute, schedule, task as task_lib, trainer as trainer_lib  # noqa: E402


def fixed_global_batch_fn(global_batch):
    """dataset_fn giving replica r rows [r*b, (r+1)*b) of one fixed global batch, forever."""
    full = toys.fixed_batch(global_batch)

    def dataset_fn(ctx):
        per = ctx.get_per_replica_batch_size(global_batch)
        start = ctx.input_pipeline_id * per
        part = {k: v[start:start + per] for k, v in full.items()}
        return tf.data.Dataset.from_tensors(part).repeat()

    return dataset_fn


def configure_heartbeat_timeout(timeout_ms):
    """The coordination service MultiWorkerMirroredStrategy would configure (workers only, worker 0
    leads), with a shorter heartbeat timeout, so that a worker gone silent is reported within seconds."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    num_workers = len(json.loads(os.environ["TF_CONFIG"])["cluster"]["worker"])
    context.context().configure_coordination_service(
        service_type="standalone", service_leader="/job:worker/replica:0/task:0",
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name="worker", num_tasks=num_workers)],
        heartbeat_timeout_in_ms=timeout_ms)


def weights_of(model):
    return [np.asarray(v) for v in model.weights]


def make_trainer(model_dir, strategy, norm, dataset_fn, total_steps, global_batch, **kw):
    spec = schedule.paper_schedule(global_batch_size=global_batch, total_steps=total_steps,
                                   warmup_steps_at_batch_16=4, base_lr=0.05)
    kw = {"eval_every": None, "log_every": 1, "summary_every": 5, **kw}
    task = task_lib.ModelTask(lambda: toys.ToyDetector(norm), dataset_fn, eval_fn=kw.pop("eval_fn", None))
    return trainer_lib.Trainer(model_dir, strategy, task, spec, global_batch, **kw)


class LossLogger:
    """Wraps Trainer._train_step to append each step's total loss to a file."""

    def __init__(self, trainer, path, sleep=0.0):
        self.trainer, self.path, self.sleep = trainer, path, sleep

    def install(self):
        trainer = self.trainer
        trainer.restore_or_initialize()
        step_fn = trainer._build_train_step()

        def logged(batch):
            losses = step_fn(batch)
            with open(self.path, "a") as f:
                f.write(f"{trainer.step} {float(sum(v.numpy() for v in losses.values())):.9g}\n")
            time.sleep(self.sleep)
            return losses

        trainer._train_step = logged


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("mode", choices=["single", "multi_worker", "mirrored_vs_single"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--checkpoint_every", type=int, default=5)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--weights_out", default=None)
    parser.add_argument("--heartbeat_timeout_ms", type=int, default=0,
                        help="multi_worker: coordination service heartbeat timeout (0: TensorFlow's 10 s)")
    parser.add_argument("--chief_linger", type=float, default=0.0,
                        help="multi_worker: seconds the chief works on after training (as a final evaluation)")
    args = parser.parse_args()

    if args.mode == "single":
        strategy = distribute.get_strategy("default")
        t = make_trainer(args.model_dir, strategy, "gn", lambda ctx: toys.toy_dataset(ctx, 4), args.steps, 4,
                         checkpoint_every=args.checkpoint_every)
        LossLogger(t, os.path.join(args.model_dir, "losses_0.txt"), args.sleep).install()
        t.train()
    elif args.mode == "multi_worker":
        if args.heartbeat_timeout_ms:
            configure_heartbeat_timeout(args.heartbeat_timeout_ms)
        strategy = distribute.get_strategy("auto")
        assert isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy), type(strategy)
        t = make_trainer(args.model_dir, strategy, "syncbn", lambda ctx: toys.toy_dataset(ctx, 4), args.steps, 4,
                         checkpoint_every=args.checkpoint_every)
        t.train()
        np.savez(args.weights_out, *weights_of(t.model))
        if distribute.is_chief(strategy):
            time.sleep(args.chief_linger)
        distribute.leave_cluster(strategy)
    else:
        mirrored = distribute.get_strategy("mirrored", num_logical_cpus=2)
        assert mirrored.num_replicas_in_sync == 2
        dataset_fn = fixed_global_batch_fn(4)
        results = {}
        for name, strategy in (("mirrored", mirrored), ("single", distribute.get_strategy("default"))):
            t = make_trainer(os.path.join(args.model_dir, name), strategy, "syncbn", dataset_fn, args.steps, 4,
                             checkpoint_every=100)
            t.restore_or_initialize()
            initial = weights_of(t.model)
            losses = t.train()
            results[name] = (initial, weights_of(t.model), losses)
        out = {}
        for name, (initial, final, losses) in results.items():
            for i, w in enumerate(initial):
                out[f"{name}_initial_{i}"] = w
            for i, w in enumerate(final):
                out[f"{name}_final_{i}"] = w
            out[f"{name}_loss"] = np.array(sum(losses.values()))
        np.savez(args.weights_out, **out)


if __name__ == "__main__":
    main()
