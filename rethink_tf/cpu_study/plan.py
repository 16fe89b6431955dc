"""The runs of the CPU-scale study: what each one trains and which run it branches from.

A CPU "1x" is `UNIT_STEPS` steps at batch 8 (gin_configs/cpu_study/detection.gin). The schedules of one arm
share their base-LR path, as they would in the paper if its runs were seeded alike: the longest run of the
arm is trained once, and every shorter schedule N x starts from that run's checkpoint at its own first LR
drop (300 N - 200) with the N x schedule (`StudyRun.branch_of`, `branch_step`). The checkpoint carries the
optimizer, the samples-seen counters and the input position, so a branch is exactly the N x run from
there on.

Findings (the paper's figure each one is modelled on):
  1 (Figure 1): both arms at 2x..6x on the 2,000 synthetic training images; AP against steps.
  2 (Figure 2): the 6x runs of finding 1 against images / instances / pixels seen, pre-training included.
  3 (Figures 7/8): both arms on 10 % and 1 % of the training images with the small-data recipe, 4x with a
     2x branch; AP against steps and the training loss of the 1 % runs.
"""

from __future__ import annotations

import dataclasses

UNIT_STEPS = 300
FIRST_DROP_BEFORE_END = 200  # the paper's 60k of a 90k 1x, at 300 steps per 1x
PRETRAIN_RUN = "pretrain"
ARMS = ("scratch", "pretrained")
SCHEDULES = (2, 3, 4, 5, 6)
SUBSETS = {"10pct": 200, "1pct": 20}  # of the 2,000 training images
SMALL_DATA_SCHEDULES = (2, 4)
DETECTION_GIN = "gin_configs/cpu_study/detection.gin"
SMALL_DATA_GIN = "gin_configs/cpu_study/small_data.gin"
PRETRAIN_GIN = "gin_configs/classification/synthetic_cpu.gin"


@dataclasses.dataclass(frozen=True)
class StudyRun:
    """One training job of the study.

    Attributes:
      name: folder name under the work and output directories.
      job: "train" (detection) or "pretrain" (classification), the `rethink_tf.<job>` module.
      gin_file: repository-relative config.
      bindings: gin bindings added to the config; "{work_dir}" stands for the study's work directory.
      finding: 1 (schedules) or 3 (small data); the pre-training run has 0.
      arm: "scratch", "pretrained" or None (the pre-training run).
      multiplier: N of the N x schedule (0 for the pre-training run).
      subset: key of SUBSETS, or None for the full training set.
      branch_of: name of the run whose checkpoint at `branch_step` this run starts from (None: from step 0).
    """
    name: str
    job: str
    gin_file: str
    bindings: tuple = ()
    finding: int = 0
    arm: str | None = None
    multiplier: int = 0
    subset: str | None = None
    branch_of: str | None = None
    branch_step: int | None = None

    @property
    def total_steps(self) -> int:
        return self.multiplier * UNIT_STEPS

    @property
    def lr_drops(self) -> tuple:
        """Steps of the two LR drops (the schedule rule of detection.gin)."""
        total = self.total_steps
        return (total - FIRST_DROP_BEFORE_END, total - round(FIRST_DROP_BEFORE_END / 3))

    def argv(self, work_dir: str) -> list[str]:
        """Arguments after `python -m rethink_tf.<job>`."""
        args = [f"--gin_file={self.gin_file}"]
        args += [f"--gin_bindings={b.format(work_dir=work_dir)}" for b in self.bindings]
        return args + [f"--model_dir={work_dir}/{self.name}"]


def _detection_run(arm, multiplier, *, subset=None, branch_of=None):
    name = f"{arm}_{subset + '_' if subset else ''}{multiplier}x"
    bindings = [f"paper_schedule.schedule_multiplier = {multiplier}",
                f"paper_schedule.total_steps = {multiplier * UNIT_STEPS}"]
    if subset:
        bindings.append(f"train/SyntheticShapesSource.subset_size = {SUBSETS[subset]}")
    if arm == "pretrained":
        bindings.append(f"experiment.backbone_weights = '{{work_dir}}/{PRETRAIN_RUN}/backbone_weights.h5'")
    return StudyRun(
        name=name, job="train", gin_file=SMALL_DATA_GIN if subset else DETECTION_GIN, bindings=tuple(bindings),
        finding=3 if subset else 1, arm=arm, multiplier=multiplier, subset=subset, branch_of=branch_of,
        branch_step=multiplier * UNIT_STEPS - FIRST_DROP_BEFORE_END if branch_of else None)


def study_runs() -> list[StudyRun]:
    """Every run, in an order that trains each run after the runs it needs."""
    runs = [StudyRun(name=PRETRAIN_RUN, job="pretrain", gin_file=PRETRAIN_GIN)]
    for arm in ARMS:
        longest = _detection_run(arm, max(SCHEDULES))
        runs.append(longest)
        runs += [_detection_run(arm, n, branch_of=longest.name) for n in SCHEDULES if n != max(SCHEDULES)]
    for subset in SUBSETS:
        for arm in ARMS:
            longest = _detection_run(arm, max(SMALL_DATA_SCHEDULES), subset=subset)
            runs.append(longest)
            runs += [_detection_run(arm, n, subset=subset, branch_of=longest.name)
                     for n in SMALL_DATA_SCHEDULES if n != max(SMALL_DATA_SCHEDULES)]
    return runs


def by_name() -> dict:
    return {run.name: run for run in study_runs()}
