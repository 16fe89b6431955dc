"""The training loop: a custom tf.distribute loop (model.fit fails under MultiWorkerMirroredStrategy).

The loop knows nothing of what is learned: a `task.Task` (detection: `experiment.DetectionTask`;
classification pre-training: `classification_task.ClassificationTask`) builds the model, the input
pipeline, the loss terms of a batch, its samples seen and the evaluation (the Model Garden's design).

Each step every replica runs forward + backward on its own batch; the Keras optimizer all-reduces
(sums) the gradients, so each replica scales its objective by 1/num_replicas. The objective is the sum
of the task's loss terms plus coupled L2 weight decay and per-variable LR factors added to the
gradients (rules: `optimizer.parameter_groups`); with mixed_float16 it is loss-scaled.

Samples seen (Figure 2): the task's kinds (images, instances, pixels) summed over replicas, kept in
the checkpoint. A task whose run starts from earlier training (a fine-tuning run from a pre-trained
backbone) reports those counts (`Task.initial_samples`); TensorBoard then also carries
`samples_seen_total/<kind>` and the evaluation receives `pretrain_<kind>` and `total_<kind>`.

Data: every local replica owns a plain tf.data iterator (input pipeline `input_pipeline_id` = its
global replica id), fed through `experimental_distribute_values_from_function`. Plain iterators can be
checkpointed (distributed ones cannot), so a restarted run resumes at the same data position; the model
and data checkpoints form one unit (see `checkpointing`).

Exact resume: every random draw of the model in training is keyed by `batch["sampling_seed"]`, an
int32 [2] stateless seed that the replica step derives from (Trainer.seed, the global step being
computed, the global replica id) (`sampling_seed`). A resumed run draws what the uninterrupted one drew,
without checkpointing any RNG state. `Trainer.deterministic` additionally makes every TF op deterministic
(`tf.config.experimental.enable_op_determinism`, process-wide), so losses and weights match bit for bit.

NaN/Inf guards (`guards`): a non-finite loss stops the run before anything is saved, non-finite weights
stop it before they are saved, and a non-finite LR is refused at start-up.

A finished run records its completed final evaluation (`checkpointing.record_final_eval`); restarting a
finished run whose final evaluation crashed or was killed runs it again.
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from rethink_tf.training import checkpointing, distribute, guards, summaries
from rethink_tf.training import optimizer as optimizer_lib, schedule as schedule_lib, task as task_lib
from rethink_tf.utils import validate
from rethink_tf.utils.lap_clock import LapClock
from rethink_tf.training.guards import NonFiniteLossError, NonFiniteWeightsError  # noqa: F401 (public)


def sampling_seed(seed: int, step, replica_id) -> tf.Tensor:
    """The stateless seed (int32 [2]) of the model's random draws for (seed, global step, global replica id)."""
    base = tf.constant([seed % (2 ** 31), 0], tf.int32)
    key = tf.random.experimental.stateless_fold_in(base, tf.cast(step, tf.int32))
    return tf.random.experimental.stateless_fold_in(key, tf.cast(replica_id, tf.int32))


def _checkpointable_options() -> tf.data.Options:
    """Lets the iterator state be saved although decoding runs in tf.numpy_function.

    tf.data refuses to checkpoint pipelines with stateful ops unless told how to treat their (external)
    state. The decoders are pure functions of their inputs, so there is no state to lose: IGNORE.
    """
    options = tf.data.Options()
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return options


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def format_progress(step, total_steps, losses, lr, images_per_sec, eta_seconds, total=None) -> str:
    """One line a person reads at a glance: step, loss terms, LR, images/s, ETA.

    `total` defaults to the sum of the terms (pass the median of the totals when the terms are medians).
    """
    total = sum(losses.values()) if total is None else total
    terms = " ".join(f"{k} {v:.4f}" for k, v in sorted(losses.items()))
    speed = f"{images_per_sec:.1f}" if math.isfinite(images_per_sec) else "?"
    return (f"step {step}/{total_steps} ({100.0 * step / total_steps:.1f}%) | loss {total:.4f} [{terms}] | "
            f"lr {lr:.5g} | {speed} img/s | ETA {format_duration(eta_seconds)}")


def window_medians(window: list[dict]) -> tuple[dict, float]:
    """The median of each loss term and of their sum over the steps of a logging window
    ({term: float} per step), as detectron2 logs them: one unlucky batch does not make the line."""
    terms = {k: float(np.median([losses[k] for losses in window])) for k in window[-1]}
    return terms, float(np.median([sum(losses.values()) for losses in window]))


# What the last `Trainer.train` of this process did, for the run summary of the command-line jobs
# (`rethink_tf.utils.cli.run_job`, which reads the step reached from the checkpoint):
# {"start_step", "total_steps", "global_batch_size", "phase_seconds"}.
LAST_RUN: dict = {}


# Parts of the training loop's wall time (Trainer.phase_seconds): tracing/compiling and the first
# update; the compiled step until its losses are on the host; waiting for the next batch; checkpoints;
# evaluations; the rest (guards, logging, summaries).
LOOP_PHASES = ("first_step", "step", "input", "checkpoint", "evaluation", "other")
ONE_OFF_PHASES = ("first_step", "evaluation")  # left out of the steady-state loop's shares


def steady_seconds(seconds: dict) -> dict:
    """The steady-state part of `seconds` (by LOOP_PHASES): every phase but ONE_OFF_PHASES."""
    return {k: v for k, v in seconds.items() if k not in ONE_OFF_PHASES}


def step_share(seconds: dict) -> float:
    """Fraction of the steady-state loop's wall time (`seconds` by LOOP_PHASES) spent in the step:
    first step and evaluation left out (one-off, or a separate job's cost), checkpoints and input
    waits counted."""
    steady = sum(steady_seconds(seconds).values())
    return seconds["step"] / steady if steady > 0 else float("nan")


def _validate_arguments(**args):
    """Kinds and ranges of the Trainer's gin arguments; raises ConfigError naming the binding."""
    validate.number("Trainer.weight_decay", args["weight_decay"], minimum=0)
    for name in ("checkpoint_every", "keep_checkpoints", "log_every", "summary_every"):
        validate.integer(f"Trainer.{name}", args[name], minimum=1)
    validate.integer("Trainer.eval_every", args["eval_every"], minimum=-1, allow_none=True)
    for name in ("jit_compile", "checkpoint_data_position", "deterministic"):
        validate.boolean(f"Trainer.{name}", args[name])
    validate.integer("Trainer.seed", args["seed"], allow_none=True)


@gin.configurable(denylist=["model_dir", "strategy", "task", "schedule", "global_batch_size", "after_first_step"])
class Trainer:
    """Owns model, optimizer, checkpoints and the loop.

    Args:
      model_dir: output directory (checkpoints, TensorBoard under train/ and eval/).
      strategy: a tf.distribute strategy (see `distribute.get_strategy`).
      task: a `task.Task`: model, input pipeline, loss terms, samples seen, evaluation.
      schedule: a `schedule.ScheduleSpec` (LR and total steps).
      global_batch_size: images per step over all replicas.
      after_first_step: optional () -> None, called once after the first step of this process.
      weight_decay: coupled L2 coefficient (1e-4); which variables: `optimizer.parameter_groups`.
      checkpoint_every: steps between checkpoints.
      keep_checkpoints: how many recent checkpoints to keep.
      log_every: steps between progress lines; their losses are medians over these steps.
      summary_every: steps between TensorBoard scalar writes.
      eval_every: steps between evaluations (0: only at the end; None or -1: never).
      mixed_precision: None, "mixed_bfloat16" or "mixed_float16" (float16 adds dynamic loss scaling).
      jit_compile: XLA-compile each replica's forward and backward pass.
      checkpoint_data_position: checkpoint the tf.data iterators (exact, cheap resume).
      seed: global random seed (keras.utils.set_random_seed) set before the model is built, and the key
        of the per-step sampling seeds; None: no `sampling_seed` in the batch (the model's own draws,
        not reproduced on resume).
      deterministic: make every TF op deterministic (process-wide). Without it a resumed run draws the
        same samples but multi-threaded float reductions may differ in the last bits; with it the loss
        curve and the weights repeat exactly. No measurable cost on CPU (README); slower GPU kernels.
      extra_checkpoint_items: more trackables {name: object} saved in and restored from every checkpoint
        (e.g. the run record, `run_record.checkpoint_variable()`).
    """

    def __init__(self, model_dir: str, strategy: tf.distribute.Strategy, task: task_lib.Task,
                 schedule: schedule_lib.ScheduleSpec, global_batch_size: int, after_first_step: Callable | None = None,
                 weight_decay: float = 1e-4, checkpoint_every: int = 2000, keep_checkpoints: int = 5,
                 log_every: int = 20, summary_every: int = 100, eval_every: int | None = 10_000,
                 mixed_precision: str | None = None, jit_compile: bool = False,
                 checkpoint_data_position: bool = True, seed: int | None = 0, deterministic: bool = False,
                 extra_checkpoint_items: dict | None = None):
        if mixed_precision not in (None, "mixed_bfloat16", "mixed_float16"):
            raise validate.ConfigError(f"Trainer.mixed_precision must be None, 'mixed_bfloat16' or 'mixed_float16', "
                             f"got {mixed_precision!r}")
        _validate_arguments(weight_decay=weight_decay, checkpoint_every=checkpoint_every,
                            keep_checkpoints=keep_checkpoints, log_every=log_every, summary_every=summary_every,
                            eval_every=eval_every, jit_compile=jit_compile,
                            checkpoint_data_position=checkpoint_data_position, seed=seed,
                            deterministic=deterministic)
        num_replicas = strategy.num_replicas_in_sync
        if global_batch_size % num_replicas:
            raise validate.ConfigError(f"experiment.global_batch_size = {global_batch_size} is not divisible by "
                                       f"the {num_replicas} replicas")
        for name, value in (("checkpoint_every", checkpoint_every), ("log_every", log_every),
                            ("summary_every", summary_every)):
            if value <= 0:
                raise ValueError(f"Trainer.{name} must be > 0, got {value}")
        self.model_dir = model_dir
        self.strategy = strategy
        self.schedule = schedule
        self.global_batch_size = global_batch_size
        self.task = task
        self.after_first_step = after_first_step
        self.weight_decay = float(weight_decay)
        self.checkpoint_every = checkpoint_every
        self.log_every = log_every
        self.summary_every = summary_every
        self.eval_every = eval_every
        self.jit_compile = jit_compile
        self.chief = distribute.is_chief(strategy)
        self.worker_id = distribute.worker_index(strategy)
        self._extra_checkpoint_items = dict(extra_checkpoint_items or {})
        self.seed = seed
        schedule_lib.check_lr_values(schedule, schedule_lib.WarmupStepDecay.from_spec(schedule))

        if deterministic:
            tf.config.experimental.enable_op_determinism()
        if seed is not None:
            keras.utils.set_random_seed(seed)
        keras.mixed_precision.set_global_policy(mixed_precision or "float32")
        with strategy.scope():
            self.model = task.build_model()
            self.lr_schedule = schedule_lib.WarmupStepDecay.from_spec(schedule)
            opt = optimizer_lib.build_optimizer(self.lr_schedule)
            if mixed_precision == "mixed_float16":
                opt = keras.optimizers.LossScaleOptimizer(opt)
            self.optimizer = opt
        # Figure 2 counters: plain host variables, updated with already all-reduced values.
        with tf.device("/cpu:0"):
            self.samples = {k: tf.Variable(0.0, dtype=tf.float64, trainable=False, name=f"seen_{k}")
                            for k in task.sample_kinds}
        self.initial_samples = {k: float(v) for k, v in task.initial_samples().items()}
        self._built = False
        self._checkpointer = None
        self._checkpoint_data_position = checkpoint_data_position
        self._keep = keep_checkpoints
        self._train_step = None
        self._iterators = None
        self._pending = None
        self.phase_seconds = {}  # the last train()'s wall time by LOOP_PHASES, in seconds

    @classmethod
    def on_fixed_batch(cls, model_dir: str, model_fn: Callable, batch: dict, *, base_lr: float = 0.02,
                       strategy: tf.distribute.Strategy | None = None, **kwargs):
        """A Trainer of `model_fn()` on one batch, repeated, at a constant LR; returns (trainer, step).

        `step(batch)` -> loss terms is the loop's own compiled step (sampling seed, forward, backward,
        coupled L2 and per-variable LR factors, loss scaling under mixed_float16, the update, samples
        seen): what benchmarks time and tests drive, instead of a copy of it. Calling `step` saves no
        checkpoint in `model_dir`. `kwargs` are Trainer arguments (jit_compile, mixed_precision, seed,
        deterministic, weight_decay, ...).
        """
        strategy = strategy or distribute.get_strategy("default")
        fixed = {k: tf.convert_to_tensor(v) for k, v in batch.items()}
        size = int(fixed["images"].shape[0])
        spec = schedule_lib.ScheduleSpec(base_lr=float(base_lr), total_steps=2 ** 31 - 1, boundaries=(),
                                         decay_factor=1.0, warmup_steps=0, warmup_factor=1.0)
        task = task_lib.ModelTask(model_fn, lambda ctx: tf.data.Dataset.from_tensors(fixed).repeat())
        trainer = cls(model_dir, strategy, task, spec, size, **{"eval_every": None, **kwargs})
        trainer.restore_or_initialize()
        return trainer, trainer.train_step_function()

    def train_step_function(self):
        """The compiled training step the loop runs: (distributed) batch -> loss terms (float32 scalars)."""
        if self._train_step is None:
            self._train_step = self._build_train_step()
        return self._train_step

    # ----- setup -----
    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def _local_replica_ids(self) -> list[int]:
        if self.strategy.num_replicas_in_sync == 1:
            return [0]
        num_local = len(self.strategy.extended.worker_devices)
        return [self.worker_id * num_local + i for i in range(num_local)]

    def _build_state(self, first_batch):
        """Builds model and optimizer variables (one forward on a real batch), then the checkpoint."""
        with self.strategy.scope():
            self.strategy.run(lambda b: self.task.build_losses(self.model, b), args=(first_batch,))
            self.optimizer.build(self.model.trainable_variables)
        groups = optimizer_lib.parameter_groups(self.model)
        self._decay_mask, self._lr_multipliers = list(groups.decay_mask), list(groups.lr_multipliers)
        self._checkpointer = checkpointing.RunCheckpointer(
            self.model_dir, {"model_variables": checkpointing.model_trackable(self.model), "optimizer": self.optimizer,
                             **{f"seen_{k}": v for k, v in self.samples.items()}, **self._extra_checkpoint_items},
            max_to_keep=self._keep, chief=self.chief, worker_id=self.worker_id,
            num_workers=max(1, self.strategy.num_replicas_in_sync // len(self._local_replica_ids())),
            data_enabled=self._checkpoint_data_position)
        self._checkpointer.check_tracked(self.model.weights)
        self._weight_check = guards.WeightCheck(self.model)
        self._built = True

    def _make_iterators(self, consume_steps: int = 0):
        """Fresh per-replica iterators, advanced by `consume_steps` batches (re-read, so the pipeline's
        definition stays the one later data checkpoints are restored into)."""
        num_replicas = self.strategy.num_replicas_in_sync
        iterators = {}
        for rid in self._local_replica_ids():
            context = tf.distribute.InputContext(num_input_pipelines=num_replicas, input_pipeline_id=rid,
                                                 num_replicas_in_sync=num_replicas)
            iterator = iter(self.task.build_inputs(context).with_options(_checkpointable_options()))
            for _ in range(consume_steps):
                next(iterator)
            iterators[f"replica_{rid}"] = iterator
        return iterators

    def _fetch(self):
        batches = [next(it) for it in self._iterators.values()]
        if not isinstance(self.strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy,
                                          tf.distribute.TPUStrategy)):
            return batches[0]
        first = self._local_replica_ids()[0]
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: batches[ctx.replica_id_in_sync_group - first])

    def _next_batch(self):
        if self._pending is not None:
            batch, self._pending = self._pending, None
            return batch
        return self._fetch()

    def restore_or_initialize(self) -> int:
        """Builds the state, restores the latest checkpoint if any and positions the data. Returns the step.

        The batch that builds the variables is the first training batch of a fresh run; on resume the
        iterators are repositioned from the data checkpoint (or by re-reading) and that batch is dropped.
        """
        self._iterators = self._make_iterators()
        self._pending = self._fetch()
        self._build_state(self._pending)
        self._checkpointer.track_iterators(self._iterators)
        restored, data_restored = self._checkpointer.restore()
        step = self.step
        if restored is None or step == 0:
            return step
        self._pending = None
        if data_restored:
            logging.info("Resumed the data position of step %d", step)
        else:
            logging.warning("No data-position checkpoint for step %d: re-reading %d batches per replica.", step, step)
            self._iterators = self._make_iterators(consume_steps=step)
            self._checkpointer.track_iterators(self._iterators)
        return step

    # ----- the step -----
    def _build_train_step(self):
        strategy, model, opt, task = self.strategy, self.model, self.optimizer, self.task
        num_replicas = strategy.num_replicas_in_sync
        variables = model.trainable_variables
        decay_mask, lr_multipliers = self._decay_mask, self._lr_multipliers
        weight_decay = self.weight_decay
        loss_scaled = isinstance(opt, keras.optimizers.LossScaleOptimizer)
        seed = self.seed

        def forward_backward(batch):
            with tf.GradientTape() as tape:
                losses = task.build_losses(model, batch)
                if not isinstance(losses, dict) or not losses:
                    raise TypeError(f"{type(task).__name__}.build_losses must return a non-empty dict of loss terms")
                losses = {k: tf.cast(v, tf.float32) for k, v in losses.items()}
                objective = tf.add_n(list(losses.values())) / num_replicas
                if loss_scaled:
                    objective = opt.scale_loss(objective)
            grads = tape.gradient(objective, variables)
            scale = 1.0 / num_replicas
            if loss_scaled:
                scale = scale * tf.cast(opt.dynamic_scale, tf.float32)
            grads = optimizer_lib.add_coupled_weight_decay(grads, variables, decay_mask, weight_decay, scale,
                                                           lr_multipliers)
            return losses, grads

        if self.jit_compile:
            forward_backward = tf.function(forward_backward, jit_compile=True)

        def replica_step(batch):
            if seed is not None:
                replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
                batch = {**batch, "sampling_seed": sampling_seed(seed, opt.iterations, replica_id)}
            losses, grads = forward_backward(batch)
            opt.apply_gradients(zip(grads, variables))
            counts = {k: tf.cast(v, tf.float32) for k, v in task.samples_seen(batch).items()
                      if k in self.samples}
            return losses, counts

        def train_step(batch):
            losses, counts = strategy.run(replica_step, args=(batch,))
            # Each replica reports the mean over its own batch: the global mean is the replicas' mean.
            losses = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in losses.items()}
            for k, v in counts.items():
                total = strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                self.samples[k].assign_add(tf.cast(total, tf.float64))
            return losses

        return tf.function(train_step)

    def hparams(self) -> dict:
        """The run's hyper-parameters for TensorBoard: schedule, batch, replicas, the Trainer's settings
        and the explicit gin bindings of the model, data and job (`summaries.run_hparams`)."""
        spec = self.schedule
        return summaries.run_hparams({
            "global_batch_size": self.global_batch_size, "num_replicas": self.strategy.num_replicas_in_sync,
            "strategy": type(self.strategy).__name__, "base_lr": spec.base_lr, "total_steps": spec.total_steps,
            "lr_boundaries": spec.boundaries, "warmup_steps": spec.warmup_steps, "weight_decay": self.weight_decay,
            "mixed_precision": keras.mixed_precision.global_policy().name, "jit_compile": self.jit_compile,
            "seed": self.seed})

    # ----- the loop -----
    def _save(self, step: int):
        self._weight_check.check(step, self._checkpointer.latest(), self.model_dir)
        path = self._checkpointer.save(step)
        if self.chief:
            logging.info("Saved checkpoint %s", path)

    def _samples_now(self) -> dict:
        """This run's counts {kind: float}; with initial samples also pretrain_<kind> and total_<kind>."""
        own = {k: float(v.numpy()) for k, v in self.samples.items()}
        if not self.initial_samples:
            return own
        before = {k: self.initial_samples.get(k, 0.0) for k in own}
        return {**own, **{f"pretrain_{k}": v for k, v in before.items()},
                **{f"total_{k}": v + before[k] for k, v in own.items()}}

    def _run_eval(self, step: int, eval_writer, final: bool = False):
        if not self.task.has_evaluation or not self.chief:
            return None
        scalars, images = self.task.evaluate(self.model, step, self._samples_now())
        with eval_writer.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
            for name, value in (images or {}).items():
                tf.summary.image(name, value, max_outputs=len(value))
        eval_writer.flush()
        if final:
            checkpointing.record_final_eval(self.model_dir, step)
        return scalars

    def train(self, max_steps: int | None = None) -> dict:
        """Trains up to `schedule.total_steps` (or `max_steps` more steps). Returns the last loss terms."""
        if not self._built:
            self.restore_or_initialize()
        self.train_step_function()
        total_steps = self.schedule.total_steps
        step = start_step = self.step
        end = total_steps if max_steps is None else min(total_steps, step + max_steps)
        if self.chief:
            train_writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "train"))
            eval_writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "eval"))
        else:
            train_writer = eval_writer = tf.summary.create_noop_writer()
        logging.info("Training from step %d to %d (global batch %d, %d replica(s)); progress every %d steps, "
                     "losses as medians over them", step, end, self.global_batch_size,
                     self.strategy.num_replicas_in_sync, self.log_every)
        clock = LapClock(LOOP_PHASES)
        LAST_RUN.clear()
        LAST_RUN.update(start_step=step, total_steps=total_steps,
                        global_batch_size=self.global_batch_size, phase_seconds=clock.seconds)
        self.phase_seconds = clock.seconds
        losses, window = {}, []
        window_start, window_step = time.time(), step
        images_per_sec = float("nan")
        first_of_process = True
        while step < end:
            batch = self._next_batch()
            clock.lap("input")
            losses = {k: float(v) for k, v in self._train_step(batch).items()}
            clock.lap("first_step" if first_of_process else "step")
            step = self.step
            window.append(losses)
            guards.check_losses(step, losses, self._checkpointer.latest(), self.model_dir)
            if first_of_process:
                first_of_process = False
                window_start, window_step = time.time(), step  # exclude tracing from the speed
                if self.after_first_step is not None and self.chief:
                    self.after_first_step()
                with train_writer.as_default(step=step):  # after the first step: gin's operative config is complete
                    summaries.write_config_and_hparams(self.hparams(), gin.operative_config_str())
            lr = float(self.lr_schedule(step - 1))
            if step % self.log_every == 0 or step == end:
                elapsed = time.time() - window_start
                if step > window_step and elapsed > 0:
                    images_per_sec = (step - window_step) * self.global_batch_size / elapsed
                eta = (end - step) * self.global_batch_size / images_per_sec if images_per_sec > 0 else float("nan")
                terms, total = window_medians(window)
                logging.info("%s", format_progress(step, total_steps, terms, lr, images_per_sec, eta, total))
                window_start, window_step, window = time.time(), step, []
            if step % self.summary_every == 0 or step == end:
                with train_writer.as_default(step=step):
                    for k, v in losses.items():
                        tf.summary.scalar(f"loss/{k}", v)
                    tf.summary.scalar("loss/total", sum(losses.values()))
                    tf.summary.scalar("learning_rate", lr)
                    if math.isfinite(images_per_sec):
                        tf.summary.scalar("images_per_sec", images_per_sec)
                    for k, v in self._samples_now().items():
                        kind = k[len("total_"):] if k.startswith("total_") else k
                        if not k.startswith("pretrain_"):
                            tf.summary.scalar(f"samples_seen{'_total' if kind != k else ''}/{kind}", v)
                train_writer.flush()
            clock.lap("other")
            paused = False
            if step % self.checkpoint_every == 0 or step == end:
                self._save(step)
                clock.lap("checkpoint")
                paused = True
            if self.eval_every and self.eval_every > 0 and step % self.eval_every == 0 and step != end:
                self._run_eval(step, eval_writer)
                clock.lap("evaluation")
                paused = True
            if paused:  # keep checkpointing and evaluation out of the images/s window
                window_start, window_step = time.time(), step
        if (step == total_steps and self.eval_every is not None and self.eval_every >= 0
                and not checkpointing.final_eval_done(self.model_dir, step)):
            if step == start_step:
                logging.info("The run is finished but its final evaluation did not complete: evaluating step %d", step)
            self._run_eval(step, eval_writer, final=True)
            clock.lap("evaluation")
        return losses
