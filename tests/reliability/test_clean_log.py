"""A clean run's log (the `trained_run` fixture's `rethink_tf.train`) has no line at ERROR level, short
prefixes and the run summary; the filters drop exactly the known noise."""

import logging
import re

import pytest

from rethink_tf.utils import logs

# Lines of TensorFlow 2.21 and gin on this project's CPU machine that are not errors.
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796220123.720618    5632 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders.",
    "E0000 00:00:1796220141.198006    5632 util.cc:131] oneDNN supports DT_INT64 only on platforms with AVX-512. "
    "Falling back to the default Eigen-based implementation if present.",
]
NO_DRIVER_NOISE = [
    "I0000 00:00:1796220123.721035    5632 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
    "will not be used.",
    "E0000 00:00:1796220125.576790    5632 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)",
]
REAL = [
    "E0000 00:00:1796220141.198006    5632 util.cc:131] Something else failed",
    "E0000 00:00:1796220141.198006    5632 local_rendezvous.cc:404] Local rendezvous is aborting with status",
    "F0000 00:00:1796220141.198006    5632 port.cc:153] Check failed: oneDNN",
    "error: gin file not found: nope.gin",
]


def test_native_filter_drops_only_the_known_lines():
    for line in NOISE + (NO_DRIVER_NOISE if logs._NO_NVIDIA_DRIVER else []):
        assert logs.is_native_noise(line), line
    for line in REAL:
        assert not logs.is_native_noise(line), line


def _record(module, msg, level=logging.ERROR):
    args = ("base/data_synthetic.gin",) if "%s" in msg else ()
    return logging.LogRecord("root", level, f"/x/{module}.py", 1, msg, args, None)


def test_python_filter_drops_gin_probe_and_sharding_lines():
    assert not logs.drop_noise(_record("resource_reader", "Path not found: %s"))
    assert not logs.drop_noise(_record("functional_saver", "Sharding callback duration: %s microseconds"))
    assert not logs.drop_noise(_record("cross_device_ops", "Reduce to /cpu:0 then broadcast to ('/cpu:0',).", 20))
    assert not logs.drop_noise(_record("mirrored_run", "Using CollectiveAllReduceStrategy eagerly has significant "
                                                       "overhead currently.", 30))
    assert logs.drop_noise(_record("resource_reader", "Unable to open file: %s"))
    assert logs.drop_noise(_record("trainer", "Path not found: %s"))
    line = logs.ShortFormatter().format(_record("trainer", "step %s", logging.INFO))
    assert re.fullmatch(r"I \d\d:\d\d:\d\d trainer\] step base/data_synthetic\.gin", line)


@pytest.fixture(scope="module")
def log(trained_run):
    with open(trained_run + ".stderr.txt") as f:
        return f.read()


def test_clean_run_logs_no_error_line(log):
    lines = log.splitlines()
    assert any(line.startswith("I ") and " trainer] step 1/2 " in line for line in lines), log[-3000:]
    for line in lines:
        assert not re.match(r"[EF]\d{4} |[EF] \d\d:\d\d:\d\d |WARNING: All log messages", line), line
        assert "ERROR" not in line and "Sharding callback" not in line, line


def test_clean_run_ends_with_the_summary(log, trained_run):
    summary = log[log.index("] Run summary (" + trained_run + ")"):]
    for row in (r"wall time +\d+m\d\ds", r"steps +0 -> 1 of 2\n", r"images seen +2 \(2 per step\)",
                r"evaluation +none in this process",
                r"files written .*ckpt-1\.\*.*config\.gin.*train/",
                rf"next +python -m rethink_tf\.export --model_dir={re.escape(trained_run)} --export_dir="):
        assert re.search(row, summary), (row, summary)
