"""`python -m rethink_tf.cpu_study`: trains the study's missing runs, then draws its figures.

Flags: --work_dir (checkpoints, full logs; default runs/cpu_study), --out_dir (the kept records and the
figures; default official_runs/cpu_study), --only=NAME,... (train just these runs), --figures_only.
"""

from __future__ import annotations

import os

from absl import flags, logging

from rethink_tf.cpu_study import figures, plan, runner
from rethink_tf.utils import cli
from rethink_tf.utils.validate import InputError

WORK_DIR = flags.DEFINE_string("work_dir", "runs/cpu_study", "Where the runs train (checkpoints, full logs).")
OUT_DIR = flags.DEFINE_string("out_dir", "official_runs/cpu_study", "Where each run's record and the figures go.")
ONLY = flags.DEFINE_list("only", None, f"Train only these runs (of: {', '.join(r.name for r in plan.study_runs())}).")
FIGURES_ONLY = flags.DEFINE_bool("figures_only", False, "Train nothing; redraw the figures from --out_dir.")


def main(argv):
    del argv
    unknown = sorted(set(ONLY.value or ()) - set(plan.by_name()))
    if unknown:
        raise InputError(f"--only: unknown run(s) {', '.join(unknown)}; the study's runs are "
                             f"{', '.join(r.name for r in plan.study_runs())}")
    cli.check_output_dir("--out_dir", OUT_DIR.value)
    cli.check_output_dir("--work_dir", WORK_DIR.value)
    repo_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not FIGURES_ONLY.value:
        runner.run_all(os.path.abspath(WORK_DIR.value), os.path.abspath(OUT_DIR.value), repo_dir, ONLY.value)
    for path in figures.draw_all(OUT_DIR.value):
        logging.info("cpu_study: wrote %s", path)
        print(path)


if __name__ == "__main__":
    cli.run(main)
