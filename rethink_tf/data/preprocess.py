"""Image preprocessing shared by the training input pipeline and serving.

Both paths call the same functions, so a served model sees exactly the pixels it was trained on:

    image_uint8 = decode_image_bytes(jpeg_or_png_bytes)   # same pixels as PIL / the COCO reader
    landscape, portrait = canvas_shapes(short_side=800, max_size=1333)     # (800, 1344), (1344, 800)
    canvas, image_info = resize_and_pad(image_uint8, short_side=800, max_size=1333,
                                        canvas_size=landscape)              # an image with h <= w
    images = normalize_image(canvas, image_info=image_info)   # or with pixel_normalization()'s values

Canvases (Detectron's ASPECT_GROUPING): an image with h <= w ("landscape", squares included) goes on
the landscape canvas (H, W) = (ceil32(min(short_side, max_size)), canvas_size), an image with h > w
("portrait") on its transpose (W, H); canvas_size defaults to ceil32(max_size). A resized image always
fits: its shorter side is at most short_side and its longer side at most max_size. At 800 / 1333 a
640x480 COCO image (800x1067) fills 79 % of the 800x1344 canvas, against 47 % of a 1344x1344 square.
Detectron/detectron2 pad each batch to the batch's largest image rounded up to 32 (dynamic shapes);
one fixed canvas per orientation keeps every shape static (one trace per canvas) at nearly the same
cost. `canvas_shapes(..., aspect_grouping=False)` gives the single square canvas (both entries equal).

`image_info` is float32 [4, 2] with rows
    [orig_h, orig_w], [scaled_h, scaled_w], [scale_y, scale_x], [offset_y, offset_x]
where scaled_* is the valid (non-padding) region at the top-left of the canvas, scale_* = scaled / original
per axis, and the offset row is always 0 (reserved for crops).

Pixel normalization (`input_normalization`, gin): the model sees (image[channel_order] - mean) / std,
channels in `channel_order` ("rgb" default; "bgr" for Caffe-trained weights: Detectron's .pkl files and
keras.applications' caffe-style ResNets/VGG), mean and std listed in that same order on the 0..255
scale; std applies only when `build_dataset.divide_by_std` is on (detectron2 / torchvision: on with the
default values, which are torchvision's (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) times 255).
Training, evaluation, export and drawings read it from here. `rethink_tf.import_weights` writes the
values of each imported library.
"""

import math
from typing import NamedTuple

import gin
import tensorflow as tf

from rethink_tf.utils import validate

PIXEL_MEAN = (123.675, 116.28, 103.53)  # RGB, 0..255 scale (Detectron / detectron2)
PIXEL_STD = (58.395, 57.12, 57.375)
CHANNEL_ORDERS = ("rgb", "bgr")


class PixelNormalization(NamedTuple):
    """What `normalize_image` applies: mean / std (None: no division) in `channel_order`, 0..255 scale."""
    mean: tuple
    std: tuple | None
    channel_order: str


@gin.configurable
def input_normalization(pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD, channel_order="rgb"):
    """The model's input normalization (see module docstring): mean / std per channel, 0..255 scale.

    Args:
      pixel_mean, pixel_std: 3 numbers each, in `channel_order` (std > 0).
      channel_order: "rgb" or "bgr", the channel order the model's first conv expects.
    Returns:
      (mean, std, channel_order) as a PixelNormalization with float tuples.
    """
    for name, values, minimum in (("pixel_mean", pixel_mean, None), ("pixel_std", pixel_std, 0)):
        if (not isinstance(values, (tuple, list)) or len(values) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
                or (minimum is not None and min(values) <= minimum)):
            raise validate.ConfigError(
                f"input_normalization.{name}: expected 3 numbers{' > 0' if minimum is not None else ''}, "
                f"got {values!r}.")
    validate.one_of("input_normalization.channel_order", channel_order, CHANNEL_ORDERS)
    return PixelNormalization(tuple(float(v) for v in pixel_mean), tuple(float(v) for v in pixel_std),
                              channel_order)


def pixel_normalization(divide_by_std):
    """`input_normalization()` with std None unless `divide_by_std` (build_dataset.divide_by_std)."""
    norm = input_normalization()
    return norm if divide_by_std else norm._replace(std=None)


def decode_image_bytes(encoded):
    """Decodes JPEG/PNG/BMP/GIF bytes to uint8 RGB [h, w, 3] in the graph.

    JPEGs use the accurate integer IDCT, which gives the same pixels as PIL (the COCO-directory reader);
    TF's default (INTEGER_FAST) differs by up to ~17 levels. Serving should decode with this function.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))
    return tf.ensure_shape(image, [None, None, 3])


def scaled_size(height, width, short_side, max_size):
    """Size after resizing the shorter side to `short_side` with the longer side capped at `max_size`.

    Detectron's rule: scale = short_side / min(h, w), unless that makes the longer side exceed max_size,
    then scale = max_size / max(h, w). Sizes are rounded to the nearest pixel (at least 1).

    Args: scalar tensors/numbers (pixels). Returns (scaled_h, scaled_w) int32 scalar tensors.
    """
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    short_side = tf.cast(short_side, tf.float32)
    max_size = tf.cast(max_size, tf.float32)
    scale = short_side / tf.minimum(h, w)
    scale = tf.where(tf.round(scale * tf.maximum(h, w)) > max_size, max_size / tf.maximum(h, w), scale)
    new_h = tf.maximum(tf.cast(tf.round(h * scale), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.round(w * scale), tf.int32), 1)
    return new_h, new_w


def resize_image(image, short_side, max_size):
    """Resizes an image (bilinear, no antialiasing, as cv2.INTER_LINEAR in Detectron).

    Args:
      image: uint8 or float [h, w, 3].
      short_side: target length of the shorter side in pixels (scalar, may be a tensor).
      max_size: cap on the longer side in pixels.
    Returns:
      (resized float32 [scaled_h, scaled_w, 3] in the input's value range, image_info float32 [4, 2]).
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    new_h, new_w = scaled_size(height, width, short_side, max_size)
    resized = tf.image.resize(tf.cast(image, tf.float32), tf.stack([new_h, new_w]), method="bilinear")
    orig = tf.cast(tf.stack([height, width]), tf.float32)
    scaled = tf.cast(tf.stack([new_h, new_w]), tf.float32)
    image_info = tf.stack([orig, scaled, scaled / orig, tf.zeros([2], tf.float32)])
    return resized, image_info


def ceil32(pixels):
    """`pixels` rounded up to a multiple of 32 (the FPN's largest stride)."""
    return int(math.ceil(pixels / 32) * 32)


def canvas_shapes(short_side, max_size, canvas_size=None, aspect_grouping=True):
    """The fixed canvases ((H, W) python ints, multiples of 32) for images resized by `scaled_size`.

    Args:
      short_side: the largest shorter side the images are resized to (pixels).
      max_size: cap on the longer side (pixels).
      canvas_size: the canvases' longer side (default ceil32(max_size)).
      aspect_grouping: one canvas per orientation (True) or one square canvas (False).
    Returns:
      (landscape canvas for h <= w, portrait canvas for h > w); equal (square) without aspect grouping
      or when the shorter side reaches the longer one.
    """
    long_side = ceil32(max_size) if canvas_size is None else int(canvas_size)
    if not aspect_grouping:
        return (long_side, long_side), (long_side, long_side)
    short = min(ceil32(min(short_side, max_size)), long_side)
    return (short, long_side), (long_side, short)


def is_portrait(height, width):
    """True for images taller than wide (h > w): they go on the portrait canvas. Tensors or numbers."""
    return height > width


def pad_to_canvas(image, canvas_size):
    """Places `image` [h, w, C] at the top-left of a zero canvas.

    Args:
      image: [h, w, C] with h <= canvas height and w <= canvas width.
      canvas_size: (H, W) python ints, or one int for a square canvas.
    Returns:
      [H, W, C] (static H, W).
    """
    height, width = (canvas_size, canvas_size) if isinstance(canvas_size, int) else canvas_size
    shape = tf.shape(image)
    with tf.control_dependencies([
        tf.debugging.assert_less_equal(
            shape[:2], tf.constant([height, width]),
            message=f"image larger than canvas_size (the {height}x{width} canvas): raise "
                    "build_dataset.canvas_size or lower max_size"),
    ]):
        canvas = tf.pad(image, [[0, height - shape[0]], [0, width - shape[1]], [0, 0]])
    return tf.ensure_shape(canvas, [height, width, None])


def resize_and_pad(image_uint8, short_side, max_size, canvas_size):
    """Resizes (shorter side -> short_side, longer <= max_size) and pads to a canvas.

    Args:
      image_uint8: uint8 [h, w, 3] RGB.
      short_side: target shorter side in pixels (python number or scalar tensor).
      max_size: cap on the longer side in pixels.
      canvas_size: the output canvas (H, W), or one int for a square; python ints, multiples of 32 for
        the FPN, large enough for the resized image (see `canvas_shapes`).
    Returns:
      canvas: float32 [H, W, 3], unnormalized 0..255 RGB, zero outside the image.
      image_info: float32 [4, 2] (see module docstring).
    """
    resized, image_info = resize_image(image_uint8, short_side, max_size)
    return pad_to_canvas(resized, canvas_size), image_info


def normalize_image(image, mean=PIXEL_MEAN, std=None, image_info=None, channel_order="rgb"):
    """Subtracts the mean (and divides by std when given): (image[channel_order] - mean) / std.

    Args:
      image: float [..., H, W, 3] RGB in 0..255.
      mean, std: per-channel values in `channel_order` on the 0..255 scale; std=None skips the division
        (Detectron).
      image_info: optional float32 [..., 4, 2]; when given, pixels outside the valid region
        [0:scaled_h, 0:scaled_w] are set to 0 so the padding is 0 after normalization, as in training.
      channel_order: "rgb" (keep) or "bgr" (reverse the channels first).
    Returns:
      float32 tensor of the image's shape.
    """
    image = tf.cast(image, tf.float32)
    if channel_order == "bgr":
        image = image[..., ::-1]
    elif channel_order != "rgb":
        raise ValueError(f"normalize_image: channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    image = image - tf.constant(mean, tf.float32)
    if std is not None:
        image = image / tf.constant(std, tf.float32)
    if image_info is not None:
        shape = tf.shape(image)
        rows = tf.range(shape[-3], dtype=tf.float32)
        cols = tf.range(shape[-2], dtype=tf.float32)
        scaled_h = image_info[..., 1, 0][..., None, None]
        scaled_w = image_info[..., 1, 1][..., None, None]
        valid = tf.logical_and(rows[:, None] < scaled_h, cols[None, :] < scaled_w)
        image = image * tf.cast(valid, tf.float32)[..., None]
    return image
