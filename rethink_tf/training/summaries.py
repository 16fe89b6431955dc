"""TensorBoard: what a run writes besides `tf.summary.scalar` / `tf.summary.image`, and readers.

Writing uses TensorBoard's own summary ops (`tf.summary.*`, from the `tensorboard` package, a
dependency). Here: the run's configuration as text and its hyper-parameters (the HParams dashboard),
and readers of event files for the tests and the plots (no TensorBoard server needed).
"""

from __future__ import annotations

import gin
import numpy as np
import tensorflow as tf

from rethink_tf.training import run_record

# Configurables whose explicit bindings become hyper-parameters of the run (besides the Trainer's own).
# The job's configurables plus every configurable that shapes the detector (run_record's list).
HPARAM_CONFIGURABLES = ("experiment", "pretrain", "paper_schedule", "build_dataset",
                        *run_record.MODEL_CONFIGURABLES)


def _hparam_value(value):
    """An HParams value: bool, int, float or str (tuples, references and None as their text)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def run_hparams(base: dict) -> dict:
    """{name: value} of the run: `base` (the Trainer's settings) plus the explicit gin bindings of
    HPARAM_CONFIGURABLES, as `configurable.parameter`."""
    out = {k: _hparam_value(v) for k, v in base.items()}
    for name in HPARAM_CONFIGURABLES:
        try:
            bindings = gin.get_bindings(name, resolve_references=False)  # no source is built
        except ValueError:  # not a registered configurable in this process
            continue
        out.update({f"{name}.{k}": _hparam_value(v) for k, v in sorted(bindings.items())})
    return out


def write_config_and_hparams(hparams: dict, operative_config: str) -> None:
    """To the default writer: the operative gin config as text (tag `config/operative_gin`, shown
    verbatim: TensorBoard renders text as markdown, so it goes in a code block) and `hparams` for the
    HParams dashboard."""
    from tensorboard.plugins.hparams import api as hp

    tf.summary.text("config/operative_gin", "```\n" + operative_config + "\n```")
    hp.hparams(hparams)


def _values(event_dir: str, plugin: str):
    """(step, summary value proto) of every summary value of `plugin` under `event_dir`."""
    for path in sorted(tf.io.gfile.glob(f"{event_dir}/events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name == plugin:
                    yield int(event.step), v


def read_scalars(event_dir: str) -> dict[str, list[tuple[int, float]]]:
    """The scalars under `event_dir` as {tag: [(step, value), ...]} (tests, plots)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for step, v in _values(event_dir, "scalars"):
        out.setdefault(v.tag, []).append((step, float(tf.make_ndarray(v.tensor))))
    return out


def read_image_tags(event_dir: str) -> list[str]:
    """Tags of the image summaries under `event_dir`."""
    return [v.tag for _, v in _values(event_dir, "images")]


def read_images(event_dir: str) -> dict[str, list[tuple[int, np.ndarray]]]:
    """The images under `event_dir` as {tag: [(step, uint8 [N, H, W, C]), ...]}."""
    out: dict[str, list[tuple[int, np.ndarray]]] = {}
    for step, v in _values(event_dir, "images"):
        encoded = tf.make_ndarray(v.tensor)[2:]  # [width, height, png, png, ...]
        images = np.stack([tf.io.decode_png(png).numpy() for png in encoded]) if len(encoded) else None
        out.setdefault(v.tag, []).append((step, images))
    return out


def read_texts(event_dir: str) -> dict[str, list[tuple[int, str]]]:
    """The text summaries under `event_dir` as {tag: [(step, text), ...]}."""
    out: dict[str, list[tuple[int, str]]] = {}
    for step, v in _values(event_dir, "text"):
        out.setdefault(v.tag, []).append((step, tf.make_ndarray(v.tensor).item().decode()))
    return out


def read_hparams(event_dir: str) -> dict:
    """The hyper-parameters written by `write_config_and_hparams` under `event_dir` ({} if none)."""
    from tensorboard.plugins.hparams import metadata

    for _, v in _values(event_dir, metadata.PLUGIN_NAME):
        if v.tag == metadata.SESSION_START_INFO_TAG:
            data = metadata.parse_session_start_info_plugin_data(v.metadata.plugin_data.content)
            return {k: getattr(p, p.WhichOneof("kind")) for k, p in data.hparams.items()}
    return {}
