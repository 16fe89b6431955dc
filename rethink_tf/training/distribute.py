"""Picks the tf.distribute strategy for the machine: TPU, multi-worker, local GPUs or one CPU.

Call `get_strategy()` before any TF op runs (TPU and multi-worker setup must happen first).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import time

import gin
import tensorflow as tf
from absl import logging

from rethink_tf.utils import validate

STRATEGY_KINDS = ("auto", "tpu", "multi_worker", "mirrored", "one_device", "default")


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise validate.ConfigError(f"TF_CONFIG is not valid JSON: {e}") from e


def num_workers_in_tf_config() -> int:
    """Number of worker tasks (chief included) that TF_CONFIG names; 0 without TF_CONFIG."""
    cluster = _tf_config().get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def _tpu_resolver(tpu_address: str | None):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "")
        resolver.cluster_spec()  # raises when no TPU is configured
    except (ValueError, tf.errors.NotFoundError, RuntimeError):
        return None
    return resolver


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the task that owns the model directory (writes checkpoints, summaries, metrics)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_index(strategy: tf.distribute.Strategy) -> int:
    """This task's index among the input workers (0 when single-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return 0
    spec = resolver.cluster_spec().as_dict()
    offset = len(spec.get("chief", [])) if resolver.task_type == "worker" else 0
    return offset + int(resolver.task_id or 0)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _is_listening(address: str, timeout: float = 1.0) -> bool:
    """True while a process accepts TCP connections at `address` ("host:port"); a task's gRPC server
    listens until its process has exited."""
    try:
        with socket.create_connection(_host_port(address), timeout=timeout):
            return True
    except socket.timeout:
        return True  # no answer yet is not "gone"
    except OSError:  # refused (the process is gone), or the host is unreachable
        return False


def leave_cluster(strategy: tf.distribute.Strategy, barrier_timeout_s: float = 24 * 3600.0,
                  exit_wait_s: float = 120.0) -> None:
    """Ends the process of a multi-worker task, in an order that logs no error; returns at once (and
    does nothing) for other strategies. Call it as the last thing the task does.

    Each worker's coordination agent heartbeats the coordination service hosted by the leader task
    (the chief, else worker 0), and TensorFlow 2.21 has no Python call that disconnects an agent. So a
    worker still alive a heartbeat interval (5 s) after the leader exited logs "StartAbort UNAVAILABLE:
    Failed to send RPC to coordination service", and a leader that outlives a worker's last heartbeat
    by the heartbeat timeout (10 s) logs "StartAbort ... tasks are unhealthy (stopped sending
    heartbeats)": the lines a worker dying mid-run gives. An exiting Python process stops heartbeating
    seconds before it is gone: its interpreter teardown took 3 s idle and 11 s under load on this 2-core
    machine (the leader reported the silent worker while it still held its port). Hence: all tasks meet at a barrier (the chief may still be writing or evaluating after the
    others finished training; a task that died makes the barrier raise, as it should), each runs its
    atexit handlers and flushes its logs, the others end at once (`os._exit`, no teardown), and the
    leader waits until every other task's server port is closed (its process is gone; at most
    `exit_wait_s` s) and ends last, the same way.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return
    from tensorflow.python.eager import context  # the barrier has no public API in TF 2.21

    context.context().wait_at_barrier("rethink_tf_leave_cluster", int(barrier_timeout_s * 1000))
    spec = resolver.cluster_spec().as_dict()
    leader = ("chief", 0) if spec.get("chief") else ("worker", 0)
    if (resolver.task_type, int(resolver.task_id or 0)) == leader:
        others = [address for job in ("chief", "worker") for index, address in enumerate(spec.get(job, []))
                  if (job, index) != leader]
        deadline = time.monotonic() + exit_wait_s
        while others and time.monotonic() < deadline:
            others = [address for address in others if _is_listening(address)]
            if others:
                time.sleep(0.1)
        if others:
            logging.warning("Leaving the cluster while %s still run %.0f s after the end of training; they "
                            "may log that the coordination service is unreachable", others, exit_wait_s)
    _exit_without_teardown()


def _exit_without_teardown() -> None:
    atexit._run_exitfuncs()  # absl and logging flush, TensorFlow's temporary files, ...
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def describe_devices() -> str:
    """One line naming the local devices TensorFlow found and whether this TensorFlow build can use
    GPUs at all (a CPU-only build on a GPU machine is the usual reason a run ignores its GPUs)."""
    gpus = tf.config.list_physical_devices("GPU")
    cpus = tf.config.list_physical_devices("CPU")
    build = "with CUDA" if tf.test.is_built_with_cuda() else "CPU-only build"
    names = ", ".join(d.name for d in cpus + gpus)
    return f"Devices: {len(cpus)} CPU, {len(gpus)} GPU ({names}); TensorFlow {tf.__version__}, {build}"


@gin.configurable
def get_strategy(kind: str = "auto", tpu_address: str | None = None, devices: list[str] | None = None,
                 num_logical_cpus: int = 0) -> tf.distribute.Strategy:
    """Returns the distribution strategy.

    Args:
      kind: "auto" chooses, in order: TPU if a TPU is configured (or `tpu_address` is given), a
        MultiWorkerMirroredStrategy when TF_CONFIG names more than one worker, a MirroredStrategy
        over the local GPUs when there are several, one GPU, else the default (single CPU) strategy.
        Or force one of "tpu", "multi_worker", "mirrored", "one_device", "default".
      tpu_address: TPU name or grpc address for TPUClusterResolver.
      devices: device list for "mirrored" (default: all local GPUs, or all logical CPUs when none).
      num_logical_cpus: split the CPU into this many logical devices first (testing the
        multi-replica path on a CPU-only machine); must run before TF initializes its devices.
    """
    validate.one_of("get_strategy.kind", kind, STRATEGY_KINDS)
    validate.string("get_strategy.tpu_address", tpu_address, allow_none=True)
    if devices is not None and (not isinstance(devices, (list, tuple)) or not devices
                                or not all(isinstance(d, str) and d for d in devices)):
        validate.fail("get_strategy.devices", devices, "None or a non-empty list of device names")
    validate.integer("get_strategy.num_logical_cpus", num_logical_cpus, minimum=0)
    if num_logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_logical_cpus)
    if kind == "auto":
        if tpu_address or os.environ.get("TPU_NAME") or _tpu_resolver(None) is not None:
            kind = "tpu"
        elif num_workers_in_tf_config() > 1:
            kind = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1 or num_logical_cpus > 1:
            kind = "mirrored"
        elif len(tf.config.list_physical_devices("GPU")) == 1:
            kind = "one_device"
        else:
            kind = "default"
    if kind == "tpu":
        resolver = _tpu_resolver(tpu_address)
        if resolver is None:
            raise validate.ConfigError(f"get_strategy: no TPU found (tpu_address={tpu_address!r})")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    elif kind == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif kind == "mirrored":
        if devices is None:
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        strategy = tf.distribute.MirroredStrategy(devices)
    elif kind == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        strategy = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    else:
        strategy = tf.distribute.get_strategy()
    logging.info(describe_devices())
    logging.info("Distribution: %s with %d replica(s) in sync", type(strategy).__name__,
                 strategy.num_replicas_in_sync)
    return strategy
