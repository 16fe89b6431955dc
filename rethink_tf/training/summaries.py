"""TensorBoard scalars and images written with TF core only.

`tf.summary.scalar` / `tf.summary.image` live in the `tensorboard` package, which tensorflow-cpu
does not install. These write the same records (the scalars and images plugins' formats) through
`tf.summary.write`, so TensorBoard, when installed anywhere, reads them as usual.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin_name: str) -> summary_pb2.SummaryMetadata:
    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = plugin_name
    meta.plugin_data.content = b""
    return meta


def scalar(name: str, value, step: int | None = None) -> None:
    """Writes one float32 scalar to the default writer (same record as tf.summary.scalar)."""
    tf.summary.write(name, tf.cast(value, tf.float32), step=step, metadata=_metadata("scalars"))


def image(name: str, images, step: int | None = None, max_outputs: int = 3) -> None:
    """Writes uint8 images [N, H, W, 3] as PNGs (same record as tf.summary.image)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"summaries.image({name!r}): expected [N, H, W, C] images, got shape {images.shape}")
    images = images[:max_outputs].astype(np.uint8)
    encoded = [tf.io.encode_png(im).numpy() for im in images]
    h, w = images.shape[1:3]
    tensor = tf.constant([str(w).encode(), str(h).encode()] + encoded, dtype=tf.string)
    tf.summary.write(name, tensor, step=step, metadata=_metadata("images"))


def read_scalars(event_dir: str) -> dict[str, list[tuple[int, float]]]:
    """Reads back the scalars written under `event_dir` as {tag: [(step, value), ...]} (tests, plots)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(tf.io.gfile.glob(f"{event_dir}/events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name == "scalars":
                    out.setdefault(v.tag, []).append((int(event.step), float(tf.make_ndarray(v.tensor))))
    return out


def read_image_tags(event_dir: str) -> list[str]:
    """Tags of the image summaries under `event_dir`."""
    tags = []
    for path in sorted(tf.io.gfile.glob(f"{event_dir}/events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            tags += [v.tag for v in event.summary.value if v.metadata.plugin_data.plugin_name == "images"]
    return tags
