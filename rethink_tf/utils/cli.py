"""What the command-line apps share: bad input is one line on stderr, exit status 2, no traceback.

`run(main)` replaces `absl.app.run(main)`. An `InputError` (a gin binding or file, a data file: see
`rethink_tf.utils.validate`) or an `OSError` (a missing or misplaced file or directory) escaping `main`
prints `error: <message>` and exits with status 2; `--verbose` prints the Python traceback as well.
Any other exception is a bug and keeps its traceback. It also trims the log (`rethink_tf.utils.logs`):
TensorFlow's native lines that are not errors are dropped and every line gets a short prefix.

`run_job` is the `main` of the training jobs (`train`, `pretrain`): it ends with the run summary
(`rethink_tf.training.run_summary`).
"""

import sys
import time
import traceback

from absl import app, flags

from rethink_tf.utils import logs
from rethink_tf.utils.validate import InputError

VERBOSE = flags.DEFINE_bool("verbose", False, "Also print the Python traceback of a start-up error "
                            "(bad gin binding, data file or flag).")
USER_ERRORS = (InputError, OSError)
EXIT_USER_ERROR = 2


def one_line(error: BaseException) -> str:
    """The error's message on one line, without the "In call to configurable ..." lines gin appends
    (the message already names the binding or the file)."""
    message = str(error).split("\n  In call to configurable")[0]
    return " ".join(message.split()) or type(error).__name__


def report(error: BaseException) -> None:
    """Prints a user error as `error: ...` (plus the traceback with --verbose) and exits with status 2."""
    if VERBOSE.value:
        traceback.print_exception(error)
    hint = "" if VERBOSE.value else " (--verbose prints the traceback)"
    print(f"error: {one_line(error)}{hint}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def run(main) -> None:
    """`absl.app.run(main)` with user errors reported by `report` and the log trimmed (`logs`)."""
    logs.filter_native_stderr()

    def guarded(argv):
        logs.configure_python_logging()
        try:
            return main(argv)
        except USER_ERRORS as e:
            report(e)

    app.run(guarded)


def check_output_dir(flag: str, path: str) -> None:
    """An output directory flag must not name an existing file (makedirs would raise FileExistsError)."""
    import os

    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"--{flag}={path} is an existing file, not a directory")


def define_run_flags(model_dir_help: str) -> None:
    """The flags of a training job (`train`, `pretrain`): --gin_file, --gin_bindings, --model_dir."""
    flags.DEFINE_multi_string("gin_file", [], "gin config file(s), applied in order: a path, or the name of a "
                              "config shipped with the package (quickstart, scratch_6x, ...).")
    flags.DEFINE_multi_string("gin_bindings", [], "gin bindings applied after the files, e.g. 'a.b = 1'.")
    flags.DEFINE_string("model_dir", None, model_dir_help)
    flags.mark_flag_as_required("model_dir")


def run_job(argv, job, next_commands=lambda model_dir: ()) -> None:
    """The `main` of a training job: checks --model_dir, parses the gin files and bindings, chooses the
    distribution strategy, calls `job(model_dir, strategy)`, then (on the chief) logs the run summary
    ending with `next_commands(model_dir)`, the commands to run next, and leaves a multi-worker cluster
    in order (`distribute.leave_cluster`)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging

    from rethink_tf.training import config, distribute, run_summary, trainer

    start = time.time()
    model_dir = flags.FLAGS.model_dir
    check_output_dir("model_dir", model_dir)
    config.parse(flags.FLAGS.gin_file, flags.FLAGS.gin_bindings)
    strategy = distribute.get_strategy()
    job(model_dir, strategy)
    if distribute.is_chief(strategy):
        run = trainer.LAST_RUN
        logging.info("%s", run_summary.summary_text(
            model_dir, wall_seconds=time.time() - start, start_step=run.get("start_step", 0),
            total_steps=run.get("total_steps"), global_batch_size=run.get("global_batch_size"), since=start,
            next_commands=next_commands(model_dir), phase_seconds=run.get("phase_seconds")))
    # Multi-worker: meet the other workers and end the process, the coordination service's host last.
    distribute.leave_cluster(strategy)
