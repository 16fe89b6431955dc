"""A log a person can read: how the command-line apps trim TensorFlow's log and their own.

Two kinds of lines are not errors yet look like them (measured with TensorFlow 2.21 on a CPU machine):

- Native (C++) lines. TensorFlow's libraries log through absl before anything calls
  `absl::InitializeLog()`, and absl then writes every message to stderr whatever its level
  (abseil-cpp PR #1957 is open about it), so `TF_CPP_MIN_LOG_LEVEL` does not remove them: the oneDNN
  notice, "Could not find cuda drivers", and, on a machine without an NVIDIA driver, an ERROR line
  `failed call to cuInit`; later an ERROR line "oneDNN supports DT_INT64 only on platforms with
  AVX-512". `filter_native_stderr` puts a small filter process between fd 2 and the real stderr that
  drops exactly these lines (`NATIVE_NOISE`) and passes everything else. A process, not a thread: a
  crash (abort, segfault) of the app still gets its last lines through, since the filter reads the
  pipe to its end. `RETHINK_TF_RAW_LOG=1` turns it off.
- Python records: gin's include-path probe logs "Path not found" at ERROR for every `include` it
  then finds on a search path (a missing include is still an error: gin raises, `cli` reports it), and
  TensorFlow's checkpoint saver logs "Sharding callback duration" at INFO for every save, and
  MirroredStrategy logs its all-reduce choice for every reduction it traces.
  `configure_python_logging` drops those records (`drop_noise`) and gives the lines a short prefix:
  `I 14:02:10 trainer] step 10/40 ...` (level letter, local time, module).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys

# Native stderr lines that are not errors. Each names the source file, so a real error elsewhere passes.
_NO_NVIDIA_DRIVER = not os.path.exists("/dev/nvidiactl")
NATIVE_NOISE = tuple(re.compile(p) for p in (
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"^I\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on\.",
    r"^E\d{4} [\d:. ]+\d+ util\.cc:\d+\] oneDNN supports DT_[A-Z0-9]+ only on platforms with AVX-512\.",
) + ((
    # Without an NVIDIA driver the CUDA build of TensorFlow says so, once at INFO and once at ERROR; with
    # a driver (a GPU machine) both lines mean something and pass.
    r"^I\d{4} [\d:. ]+\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine",
    r"^E\d{4} [\d:. ]+\d+ cuda_platform\.cc:\d+\] failed call to cuInit: ",
) if _NO_NVIDIA_DRIVER else ()))

RAW_LOG_ENV = "RETHINK_TF_RAW_LOG"


def is_native_noise(line: str) -> bool:
    return any(p.search(line) for p in NATIVE_NOISE)


def _filter_loop(read_fd: int) -> None:
    # Ctrl-C and a group SIGTERM are for the app; the filter ends when the app's last writer closes.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    with os.fdopen(read_fd, "rb", buffering=0) as pipe, os.fdopen(2, "wb", buffering=0) as err:
        pending = b""
        while chunk := pipe.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = [line for line in lines if not is_native_noise(line.decode("utf-8", "replace"))]
            if kept:
                err.write(b"\n".join(kept) + b"\n")
        if pending:
            err.write(pending)


def filter_native_stderr() -> bool:
    """Routes this process's fd 2 through a forked filter that drops `NATIVE_NOISE` lines.

    Call before TensorFlow is imported (its load-time lines are among the noise). Returns False (and
    does nothing) with RETHINK_TF_RAW_LOG=1 or when stderr is not a file descriptor (embedded use).
    """
    if os.environ.get(RAW_LOG_ENV) == "1":
        return False
    try:
        sys.stderr.flush()
        os.fstat(2)
    except (OSError, ValueError, AttributeError):
        return False
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the filter: reads the pipe to its end, then exits without the app's atexit handlers
        try:
            os.close(write_fd)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            _filter_loop(read_fd)
        finally:
            os._exit(0)
    os.close(read_fd)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    return True


# Python log records that are not what they look like: (logger module, regular expression the message
# starts with).
PYTHON_NOISE = tuple((module, re.compile(pattern)) for module, pattern in (
    ("resource_reader", r"Path not found: "),          # gin's include probe before its search paths
    ("resource_reader", r"system_path_file_exists:"),  # the probe itself, at INFO
    ("functional_saver", r"Sharding callback duration"),
    # Mirrored / multi-worker strategies: INFO lines on the all-reduces of every traced step, and a
    # warning about the one eager `strategy.run` that builds the variables (the step is a tf.function).
    ("cross_device_ops", r"Reduce to .* then broadcast to "),
    ("cross_device_ops", r"Collective all_reduce tensors: "),
    ("mirrored_run", r"Using \w+ eagerly has significant overhead"),
))


def drop_noise(record: logging.LogRecord) -> bool:
    """logging filter: False for the records of PYTHON_NOISE."""
    message = record.getMessage()
    return not any(record.module == module and pattern.match(message) for module, pattern in PYTHON_NOISE)


class ShortFormatter(logging.Formatter):
    """`I 14:02:10 trainer] message`: level letter, local time, module."""

    def __init__(self):
        super().__init__("%(levelname).1s %(asctime)s %(module)s] %(message)s", datefmt="%H:%M:%S")


def configure_python_logging() -> None:
    """Short prefixes and the PYTHON_NOISE filter on absl's handler (the one `absl.app.run` installs)."""
    from absl import logging as absl_logging

    handler = absl_logging.get_absl_handler()
    handler.setFormatter(ShortFormatter())
    if drop_noise not in handler.filters:
        handler.addFilter(drop_noise)
