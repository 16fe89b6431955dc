"""The paper's learning-rate schedule: "N×" step decay with linear warmup, scaled to the batch.

"N×" means N × 90k iterations at batch 16 with LR 0.02, cut by `decay_factor` at (total − 60k) and
(total − 20k) iterations (Detectron / detectron2 / the paper, §3.2). Another global batch B scales
every iteration count by 16/B and the LR by B/16 (the linear scaling rule): detectron2's 9× at
batch 64 is LR 0.08, 202,500 iterations, steps 187,500 / 197,500.

A run can also be the tail of an N× schedule (`start_at_batch_16`): the paper switches its plain
Mask R-CNN to Cascade R-CNN for the final 270k iterations of 9×. The new run counts its own steps from
0 (a fresh optimizer), runs the remaining (N × 90k − start) iterations, decays at the same points of
the long schedule counted from the switch, and has no warmup, so its LR at step s is the long
schedule's at start + s. The run before the switch is the head of the same schedule
(`end_at_batch_16`): the N× schedule stopped at that iteration, so its last checkpoint is the one the
switch starts from.
"""

from __future__ import annotations

import dataclasses
import math

import gin
import keras
import numpy as np
import tensorflow as tf

from rethink_tf.utils import validate

REFERENCE_BATCH_SIZE = 16
ITERATIONS_PER_X = 90_000
FIRST_DECAY_BEFORE_END = 60_000
SECOND_DECAY_BEFORE_END = 20_000


def _scale_steps(steps_at_batch_16: float, global_batch_size: int) -> int:
    return int(round(steps_at_batch_16 * REFERENCE_BATCH_SIZE / global_batch_size))


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
    """A resolved schedule: everything in iterations at the actual global batch.

    Attributes:
      base_lr: LR after warmup, before any decay (already scaled to the batch).
      total_steps: number of optimizer steps of the whole run.
      boundaries: steps at which the LR is multiplied by `decay_factor` (increasing).
      decay_factor: multiplier applied at each boundary (0.1; the small-data recipe uses 0.02).
      warmup_steps: length of the linear warmup, in steps.
      warmup_factor: LR multiplier at step 0; it rises linearly to 1 at `warmup_steps`.
    """

    base_lr: float
    total_steps: int
    boundaries: tuple[int, ...]
    decay_factor: float
    warmup_steps: int
    warmup_factor: float

    def lr_at(self, step: int) -> float:
        """The LR at `step` in plain Python (the reference the Keras schedule is tested against)."""
        lr = self.base_lr * self.decay_factor ** sum(step >= b for b in self.boundaries)
        if step < self.warmup_steps:
            alpha = step / self.warmup_steps
            lr *= self.warmup_factor * (1.0 - alpha) + alpha
        return lr


def _validate_arguments(args):
    """Type and range of paper_schedule's arguments; raises ConfigError naming the binding."""
    def b(name):
        return f"paper_schedule.{name}"

    if args["global_batch_size"] is gin.REQUIRED:
        validate.fail(b("global_batch_size"), None, "a positive integer (experiment.global_batch_size)")
    validate.integer(b("global_batch_size"), args["global_batch_size"], minimum=1)
    validate.number(b("schedule_multiplier"), args["schedule_multiplier"], minimum=0, exclusive_minimum=True)
    validate.number(b("base_lr_at_batch_16"), args["base_lr_at_batch_16"], minimum=0, exclusive_minimum=True)
    validate.number(b("base_lr"), args["base_lr"], minimum=0, exclusive_minimum=True, allow_none=True)
    validate.number(b("decay_factor"), args["decay_factor"], minimum=0, maximum=1, exclusive_minimum=True)
    validate.integer(b("warmup_steps_at_batch_16"), args["warmup_steps_at_batch_16"], minimum=0)
    validate.number(b("warmup_factor"), args["warmup_factor"], minimum=0, maximum=1, exclusive_minimum=True)
    validate.boolean(b("scale_warmup_with_batch"), args["scale_warmup_with_batch"])
    validate.integer(b("total_steps"), args["total_steps"], minimum=1, allow_none=True)
    validate.integer(b("start_at_batch_16"), args["start_at_batch_16"], minimum=0, allow_none=True)
    validate.integer(b("end_at_batch_16"), args["end_at_batch_16"], minimum=1, allow_none=True)
    validate.integers(b("boundaries"), args["boundaries"], minimum=1, increasing=True, allow_none=True)


@gin.configurable
def paper_schedule(
    global_batch_size: int = gin.REQUIRED,
    schedule_multiplier: float = 1.0,
    base_lr_at_batch_16: float = 0.02,
    decay_factor: float = 0.1,
    warmup_steps_at_batch_16: int = 500,
    warmup_factor: float = 1.0 / 3.0,
    scale_warmup_with_batch: bool = True,
    total_steps: int | None = None,
    boundaries: tuple[int, ...] | None = None,
    base_lr: float | None = None,
    start_at_batch_16: int | None = None,
    end_at_batch_16: int | None = None,
) -> ScheduleSpec:
    """Resolves the paper's "N×" schedule for a global batch.

    Args:
      global_batch_size: images per optimizer step over all replicas.
      schedule_multiplier: N of "N×" (1× = 90k iterations at batch 16); fractional values allowed.
      base_lr_at_batch_16: LR at the reference batch 16 (Detectron: 0.02; small data: 0.04).
      decay_factor: LR multiplier at each boundary (0.1; the paper's small-data recipe: 0.02).
      warmup_steps_at_batch_16: linear warmup length at batch 16 (Detectron 500, detectron2 1000).
      warmup_factor: LR factor at step 0 (Detectron 1/3, detectron2 0.001).
      scale_warmup_with_batch: scale the warmup length by 16/batch like every other iteration count
        (Detectron's rule); False keeps it in steps as detectron2 configs do.
      total_steps: explicit run length, overriding the N× rule (tiny CPU configs, quickstart).
      boundaries: explicit decay steps; with `total_steps` and no boundaries the paper's rule is
        applied proportionally (decays at 1 − 60/90N and 1 − 20/90N of the run).
      base_lr: explicit LR at the actual batch, overriding the linear scaling rule.
      start_at_batch_16: this run is the N× schedule from this iteration (at batch 16) on: total and
        boundaries shifted by it (boundaries already passed dropped), no warmup; it must lie past the
        warmup and before the end. Not with `total_steps` / `boundaries`.
      end_at_batch_16: this run is the N× schedule up to this iteration (at batch 16): it stops there
        with the LR the long run has there (decays after it never happen). Not with `total_steps` /
        `boundaries`; with `start_at_batch_16`, the part in between.

    Returns:
      A `ScheduleSpec` in steps at `global_batch_size`.
    """
    _validate_arguments(locals())
    base_lr_given = base_lr is not None
    if base_lr is None:
        base_lr = base_lr_at_batch_16 * global_batch_size / REFERENCE_BATCH_SIZE
    explicit_boundaries = boundaries is not None
    reference_total = schedule_multiplier * ITERATIONS_PER_X
    reference_decays = (reference_total - FIRST_DECAY_BEFORE_END, reference_total - SECOND_DECAY_BEFORE_END)
    if start_at_batch_16 is not None or end_at_batch_16 is not None:
        for name, value in (("start_at_batch_16", start_at_batch_16), ("end_at_batch_16", end_at_batch_16)):
            if value is not None and (total_steps is not None or boundaries is not None):
                validate.fail(f"paper_schedule.{name}", value,
                              "None when paper_schedule.total_steps or paper_schedule.boundaries is bound")
        start, end = start_at_batch_16 or 0, reference_total if end_at_batch_16 is None else end_at_batch_16
        if start_at_batch_16 is not None and not warmup_steps_at_batch_16 <= start < end:
            validate.fail("paper_schedule.start_at_batch_16", start,
                          f"an iteration in [{warmup_steps_at_batch_16} (end of warmup), {end:.0f}) of the "
                          f"{schedule_multiplier}x schedule")
        if not 0 < end <= reference_total:
            validate.fail("paper_schedule.end_at_batch_16", end,
                          f"an iteration in (0, {reference_total:.0f}] of the {schedule_multiplier}x schedule")
        start, end = _scale_steps(start, global_batch_size), _scale_steps(end, global_batch_size)
        total = end - start
        decays = (_scale_steps(max(d, 0), global_batch_size) for d in reference_decays)
        boundaries = tuple(b - start for b in decays if start < b < end)
        if start_at_batch_16:
            warmup_steps_at_batch_16 = 0
    elif total_steps is None:
        total = _scale_steps(reference_total, global_batch_size)
        if boundaries is None:
            boundaries = tuple(_scale_steps(max(d, 0), global_batch_size) for d in reference_decays)
    else:
        total = int(total_steps)
        if boundaries is None:
            boundaries = tuple(int(round(total * max(d, 0) / reference_total)) for d in reference_decays)
    boundaries = tuple(int(b) for b in boundaries)
    if total <= 0:
        validate.fail("paper_schedule.total_steps", total, "> 0 steps (resolved from schedule_multiplier)")
    if explicit_boundaries and any(b >= total for b in boundaries):
        # A boundary at or past the end never decays the LR: almost always a forgotten total_steps.
        validate.fail("paper_schedule.boundaries", boundaries,
                      f"steps < total_steps = {total} (a later boundary never decays the LR)")
    if scale_warmup_with_batch:
        warmup = _scale_steps(warmup_steps_at_batch_16, global_batch_size)
    else:
        warmup = int(warmup_steps_at_batch_16)
    warmup = min(warmup, total)
    spec = ScheduleSpec(
        base_lr=float(base_lr),
        total_steps=total,
        boundaries=boundaries,
        decay_factor=float(decay_factor),
        warmup_steps=warmup,
        warmup_factor=float(warmup_factor),
    )
    check_lr_values(spec, base_lr_binding="paper_schedule.base_lr" if base_lr_given else
                    "paper_schedule.base_lr_at_batch_16 (times global_batch_size / 16)")
    return spec


def check_lr_values(spec: ScheduleSpec, lr_fn=None, base_lr_binding: str = "paper_schedule.base_lr") -> None:
    """Refuses at start-up a schedule whose LR is not a finite float32 (> 0 once warmup is over).

    The LR is evaluated (by `lr_fn(step)`, default `spec.lr_at`, cast to float32 as the optimizer uses it)
    at step 0, the end of warmup, every boundary and the last step; these are the extremes of a
    piecewise-constant schedule with linear warmup. E.g. base_lr 1e39 is finite in Python but inf in
    float32 and would write all-NaN weights.

    Raises:
      ConfigError (a ValueError) naming the binding to fix and the step and LR found.
    """
    def finite32(x):
        return math.isfinite(x) and abs(x) <= float(np.finfo(np.float32).max)

    if not finite32(spec.base_lr) or spec.base_lr <= 0:
        culprit = base_lr_binding
    elif not finite32(spec.decay_factor) or spec.decay_factor <= 0:
        culprit = "paper_schedule.decay_factor"
    elif not finite32(spec.warmup_factor) or spec.warmup_factor < 0:
        culprit = "paper_schedule.warmup_factor"
    else:
        culprit = None
    lr_fn = lr_fn or spec.lr_at
    after_warmup = sorted({min(spec.warmup_steps, spec.total_steps - 1), spec.total_steps - 1,
                           *(b for b in spec.boundaries if 0 <= b < spec.total_steps)})
    for step in [0] + after_warmup:
        lr = float(np.float32(lr_fn(step)))
        if not np.isfinite(lr) or lr < 0 or (lr == 0 and step >= spec.warmup_steps):
            raise validate.ConfigError(
                f"The learning rate at step {step} is {lr} (base_lr {spec.base_lr}, decay_factor {spec.decay_factor}, "
                f"warmup_factor {spec.warmup_factor}): it must be a finite float32 > 0. Fix "
                f"{culprit or 'the schedule bindings (paper_schedule.*)'}.")
    if culprit is not None:
        raise validate.ConfigError(f"{culprit} gives base_lr {spec.base_lr}, decay_factor {spec.decay_factor}, warmup_factor "
                         f"{spec.warmup_factor}: each must be a finite float32 > 0 (warmup_factor >= 0). Fix {culprit}.")


class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Keras LR schedule for a `ScheduleSpec`: piecewise constant decay times a linear warmup.

    `__call__(step)` takes the optimizer's iteration count (int64 scalar) and returns a float32 LR.
    """

    def __init__(self, base_lr, boundaries, decay_factor, warmup_steps, warmup_factor, total_steps=None):
        self.base_lr = float(base_lr)
        self.boundaries = tuple(int(b) for b in boundaries)
        self.decay_factor = float(decay_factor)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)
        self.total_steps = None if total_steps is None else int(total_steps)

    @classmethod
    def from_spec(cls, spec: ScheduleSpec) -> "WarmupStepDecay":
        return cls(spec.base_lr, spec.boundaries, spec.decay_factor, spec.warmup_steps, spec.warmup_factor,
                   spec.total_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        num_decays = tf.zeros([], tf.float32)
        for boundary in self.boundaries:
            num_decays += tf.cast(step >= boundary, tf.float32)
        lr = self.base_lr * tf.pow(self.decay_factor, num_decays)
        if self.warmup_steps > 0:
            alpha = tf.minimum(step / self.warmup_steps, 1.0)
            lr *= self.warmup_factor * (1.0 - alpha) + alpha
        return lr

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "boundaries": list(self.boundaries),
            "decay_factor": self.decay_factor,
            "warmup_steps": self.warmup_steps,
            "warmup_factor": self.warmup_factor,
            "total_steps": self.total_steps,
        }


IMAGENET_REFERENCE_BATCH_SIZE = 256


@gin.configurable
def imagenet_schedule(global_batch_size: int = gin.REQUIRED, num_train_examples: int = 1_281_167,
                      epochs: float = 100, decay_epochs: tuple = (30, 60, 90), base_lr_at_batch_256: float = 0.1,
                      decay_factor: float = 0.1, warmup_epochs: float = 5, warmup_factor: float = 0.1,
                      total_steps: int | None = None) -> ScheduleSpec:
    """The ImageNet classification recipe of the GN paper and Goyal et al., in steps at the actual batch.

    LR = base_lr_at_batch_256 x batch / 256 (the linear scaling rule), cut by `decay_factor` at each
    epoch of `decay_epochs`, after a linear warmup over `warmup_epochs` from `warmup_factor` x LR.
    An epoch is num_train_examples / global_batch_size steps (rounded to the nearest step).

    Goyal et al.'s warmup starts at the batch-256 LR (factor 256 / batch, i.e. none at batch <= 256);
    a fixed factor (0.1) keeps the warmup a real ramp at the small batches of CPU runs too.

    Args:
      global_batch_size: images per step over all replicas.
      num_train_examples: images in an epoch (ImageNet-1k train: 1,281,167).
      epochs: run length in epochs (100).
      decay_epochs: epochs at which the LR is multiplied by decay_factor ((30, 60, 90)).
      base_lr_at_batch_256: LR at batch 256 (0.1).
      decay_factor: LR multiplier at each decay (0.1).
      warmup_epochs: linear warmup length in epochs (5, Goyal et al.).
      warmup_factor: LR factor at step 0.
      total_steps: explicit run length in steps (smoke runs); the decays stay at their epochs.
    """
    def b(name):
        return f"imagenet_schedule.{name}"

    if global_batch_size is gin.REQUIRED:
        validate.fail(b("global_batch_size"), None, "a positive integer (pretrain.global_batch_size)")
    validate.integer(b("global_batch_size"), global_batch_size, minimum=1)
    validate.integer(b("num_train_examples"), num_train_examples, minimum=1)
    validate.number(b("epochs"), epochs, minimum=0, exclusive_minimum=True)
    validate.reals(b("decay_epochs"), decay_epochs, minimum=0, exclusive_minimum=True, nonempty=False)
    if list(decay_epochs) != sorted(set(decay_epochs)):
        validate.fail(b("decay_epochs"), decay_epochs, "a strictly increasing sequence")
    validate.number(b("base_lr_at_batch_256"), base_lr_at_batch_256, minimum=0, exclusive_minimum=True)
    validate.number(b("decay_factor"), decay_factor, minimum=0, maximum=1, exclusive_minimum=True)
    validate.number(b("warmup_epochs"), warmup_epochs, minimum=0)
    validate.number(b("warmup_factor"), warmup_factor, minimum=0, maximum=1, exclusive_minimum=True)
    validate.integer(b("total_steps"), total_steps, minimum=1, allow_none=True)
    steps_per_epoch = num_train_examples / global_batch_size
    total = int(total_steps) if total_steps is not None else max(1, int(round(epochs * steps_per_epoch)))
    boundaries = tuple(int(round(e * steps_per_epoch)) for e in decay_epochs)
    if any(x >= total for x in boundaries) or len(set(boundaries)) != len(boundaries) or min(boundaries, default=1) < 1:
        validate.fail(b("decay_epochs"), tuple(decay_epochs),
                      f"distinct epochs whose steps ({boundaries} at {steps_per_epoch:.2f} steps per epoch) are "
                      f"within the run's {total} steps")
    spec = ScheduleSpec(base_lr=float(base_lr_at_batch_256) * global_batch_size / IMAGENET_REFERENCE_BATCH_SIZE,
                        total_steps=total, boundaries=boundaries, decay_factor=float(decay_factor),
                        warmup_steps=min(total, int(round(warmup_epochs * steps_per_epoch))),
                        warmup_factor=float(warmup_factor))
    check_lr_values(spec, base_lr_binding="imagenet_schedule.base_lr_at_batch_256 (times global_batch_size / 256)")
    return spec
