"""The one input pipeline: decoded examples of any source -> fixed-shape batches.

Batch dict (B = per-replica batch, (H, W) = the batch's canvas, M = max_instances, S = mask_crop_size):
    images      float32 [B, H, W, 3]  RGB - mean (/ std if divide_by_std), image at top-left, padding 0
    image_info  float32 [B, 4, 2]     [orig_h, orig_w], [scaled_h, scaled_w], [scale_y, scale_x], [0, 0]
    image_id    int64 [B]             -1 for the padding entries of the last eval batch
    gt_boxes    float32 [B, M, 4]     yxyx canvas pixels, padding rows 0
    gt_classes  int32 [B, M]          1..K, padding -1
    gt_is_crowd bool [B, M]           crowd regions: to be ignored as training targets
    gt_masks    uint8 [B, M, S, S]    box-cropped masks (only if the source has masks)
    gt_keypoints float32 [B, M, K, 3] (x, y, v) canvas pixels (only if the source has keypoints)

Instances beyond M are dropped, non-crowd ones kept first.

Canvases (`aspect_grouping`, Detectron's ASPECT_GROUPING, on by default as there): every batch holds
images of one orientation, landscape (h <= w) on the canvas (ceil32(S_max), canvas_size) and portrait
(h > w) on its transpose, S_max = the largest shorter side (train_short_side[1] in training,
eval_short_side in evaluation) and canvas_size = ceil32(max_size) by default; see
`preprocess.canvas_shapes`. At 800 / 1333 these are 800x1344 and 1344x800 (Detectron pads each batch to
its largest image rounded up to 32; fixed canvases keep shapes static: one trace per canvas, XLA too).
With `aspect_grouping=False`, or when the two canvases coincide (square, e.g. the synthetic 128x128
set), every image is on one square canvas as before.

Training with two canvases: the source's training ids are split by orientation from the annotation
sizes (no decoding), each orientation is its own sharded, shuffled, repeated and batched stream, and a
deterministic orientation sequence picks the stream of every step: step k is portrait when a
stateless uniform draw seeded by (orientation seed, k) is below the fraction of portrait images in the
whole training set. The sequence depends only on the seed (`seed`, or 0 when None) and that fraction,
so every replica pipeline (any input_context) computes the same sequence and the replicas of one step
share a canvas. The iterator state (range counter, shuffles, batches) is checkpointable.
Evaluation: all landscape batches, then all portrait batches, each orientation padded to full batches
with image_id -1 entries and sharded so every replica gets the same batch (and canvas) sequence.
"""

import math

import gin
import tensorflow as tf
from absl import logging

from rethink_tf.data import augment
from rethink_tf.data import coco as coco_lib
from rethink_tf.data import preprocess
from rethink_tf.utils import validate

_DUMMY_IMAGE_SIDE = 32  # padding examples of the last eval batch are 32x32 black images


def _validate_types(args):
    """Kinds of build_dataset's arguments (ranges: `_check_config`); raises ConfigError naming the binding."""
    def b(name):
        return f"build_dataset.{name}"

    validate.boolean(b("training"), args["training"])
    validate.integers(b("train_short_side"), args["train_short_side"], length=2, minimum=1)
    for name in ("global_batch_size", "short_side_step", "eval_short_side", "max_size", "max_instances",
                 "mask_crop_size", "shuffle_buffer"):
        validate.integer(b(name), args[name], minimum=1)
    validate.integer(b("canvas_size"), args["canvas_size"], minimum=32, allow_none=True)
    validate.number(b("flip_prob"), args["flip_prob"])
    validate.boolean(b("divide_by_std"), args["divide_by_std"])
    validate.boolean(b("aspect_grouping"), args["aspect_grouping"])
    validate.integer(b("seed"), args["seed"], allow_none=True)


def _check_config(training, train_short_side, short_side_step, eval_short_side, max_size, canvas_size,
                  max_instances, mask_crop_size, flip_prob, global_batch_size):
    def bad(binding, value, why):
        raise validate.ConfigError(f"build_dataset.{binding}={value!r}: {why}")
    if max_size <= 0:
        bad("max_size", max_size, "must be > 0")
    if canvas_size is not None:
        if canvas_size % 32:
            bad("canvas_size", canvas_size, "must be a multiple of 32 (FPN strides up to 32)")
        if max_size > canvas_size:
            bad("max_size", max_size, f"exceeds canvas_size={canvas_size}")
    lo, hi = train_short_side
    if not 0 < lo <= hi:
        bad("train_short_side", train_short_side, "need 0 < low <= high")
    if short_side_step <= 0:
        bad("short_side_step", short_side_step, "must be > 0")
    if eval_short_side <= 0:
        bad("eval_short_side", eval_short_side, "must be > 0")
    if max_instances <= 0:
        bad("max_instances", max_instances, "must be > 0")
    if mask_crop_size <= 0:
        bad("mask_crop_size", mask_crop_size, "must be > 0")
    if not 0.0 <= flip_prob <= 1.0:
        bad("flip_prob", flip_prob, "must be in [0, 1]")
    if global_batch_size <= 0:
        bad("global_batch_size", global_batch_size, "must be > 0")


def _pad_instances(tensor, max_instances, pad_value):
    """[n, ...] -> [M, ...]: first M rows, padded with pad_value."""
    tensor = tensor[:max_instances]
    n = tf.shape(tensor)[0]
    paddings = [[0, max_instances - n]] + [[0, 0]] * (len(tensor.shape) - 1)
    padded = tf.pad(tensor, paddings, constant_values=pad_value)
    return tf.ensure_shape(padded, [max_instances] + tensor.shape[1:].as_list())


def _transform(example, seed, *, training, train_short_side, short_side_step, eval_short_side, max_size,
               canvas, max_instances, flip_prob, normalization, flip_permutation):
    """One decoded example -> one fixed-shape batch element on `canvas` (H, W) (see module docstring)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if training:
        short_side = augment.sample_short_side(seeds[0], train_short_side, short_side_step)
    else:
        short_side = eval_short_side
    image, image_info = preprocess.resize_image(example["image"], short_side, max_size)
    boxes = augment.scale_boxes(example["boxes"], image_info)
    masks = example.get("masks")
    keypoints = example.get("keypoints")
    if keypoints is not None:
        keypoints = augment.scale_keypoints(keypoints, image_info)

    if training and flip_prob > 0:
        do_flip = tf.random.stateless_uniform([], seeds[1]) < flip_prob
        width = image_info[1, 1]
        image = tf.cond(do_flip, lambda: augment.flip_image(image), lambda: image)
        boxes = tf.cond(do_flip, lambda: augment.flip_boxes(boxes, width), lambda: boxes)
        if masks is not None:
            masks = tf.cond(do_flip, lambda: augment.flip_masks(masks), lambda: masks)
        if keypoints is not None:
            kp = keypoints
            keypoints = tf.cond(do_flip, lambda: augment.flip_keypoints(kp, width, flip_permutation),
                                lambda: kp)

    padded = preprocess.pad_to_canvas(image, canvas)
    images = preprocess.normalize_image(padded, normalization.mean, normalization.std, image_info=image_info,
                                        channel_order=normalization.channel_order)

    # Non-crowd instances first (stable), so truncation to M drops crowd regions before real objects.
    order = tf.argsort(tf.cast(example["is_crowd"], tf.int32), stable=True)
    out = {
        "images": images,
        "image_info": image_info,
        "image_id": tf.cast(example["image_id"], tf.int64),
        "gt_boxes": _pad_instances(tf.gather(boxes, order), max_instances, 0.0),
        "gt_classes": _pad_instances(tf.gather(example["classes"], order), max_instances, -1),
        "gt_is_crowd": _pad_instances(tf.gather(example["is_crowd"], order), max_instances, False),
    }
    if masks is not None:
        out["gt_masks"] = _pad_instances(tf.gather(masks, order), max_instances, tf.constant(0, tf.uint8))
    if keypoints is not None:
        out["gt_keypoints"] = _pad_instances(tf.gather(keypoints, order), max_instances, 0.0)
    return out


def _dummy_examples(count, element_spec):
    """`count` empty 32x32 examples with image_id -1, matching the decoded-example structure."""
    def make(_):
        ex = {}
        for key, spec in element_spec.items():
            if key == "image_id":
                ex[key] = tf.constant(-1, tf.int64)
            elif key == "image":
                ex[key] = tf.zeros([_DUMMY_IMAGE_SIDE, _DUMMY_IMAGE_SIDE, 3], tf.uint8)
            else:
                ex[key] = tf.zeros([0] + spec.shape[1:].as_list(), spec.dtype)
        return ex
    return tf.data.Dataset.range(count).map(make)


@gin.configurable
def build_dataset(source, *, training, global_batch_size, input_context=None,
                  train_short_side=(800, 800), short_side_step=32, eval_short_side=800, max_size=1333,
                  canvas_size=None, aspect_grouping=True, max_instances=100, mask_crop_size=112,
                  flip_prob=0.5, divide_by_std=False, shuffle_buffer=1000, seed=None):
    """Fixed-shape batches of `source` (module docstring lists the keys, shapes, dtypes and canvases).

    Args:
      source: a data source (rethink_tf.data.sources / tfds_source).
      training: True: shuffled, repeated, scale-augmented and flipped. False: one pass in image-id order
        (per shard and orientation), shorter side = eval_short_side, each orientation's last batch padded
        with image_id = -1 entries so every replica gets the same number of full batches.
      global_batch_size: images per step over all replicas; divided by input_context.num_replicas_in_sync.
      input_context: tf.distribute.InputContext (per-replica batch, shard = input_pipeline_id).
      train_short_side: (low, high) range of the shorter side in training, pixels; drawn per image from
        {low, low + short_side_step, ...}. Default (800, 800): no scale augmentation, as in Detectron's
        baselines and every baseline row of the paper; its 'train aug' rows use (640, 800) step 32.
      eval_short_side: shorter side at evaluation.
      max_size: cap on the longer side.
      canvas_size: the canvases' longer side (the square's side without aspect grouping); default
        max_size rounded up to a multiple of 32.
      aspect_grouping: one canvas per orientation, each batch of one orientation (Detectron's
        default); False: one square canvas canvas_size x canvas_size for every image.
      max_instances: M, instance slots per image.
      mask_crop_size: S, side of each box-cropped mask.
      flip_prob: probability of a horizontal flip in training.
      divide_by_std: also divide by the std of `preprocess.input_normalization` (detectron2 9x recipe,
        torchvision); Detectron: False.
      shuffle_buffer: buffer of the tfds source's example shuffle (COCO-directory sources shuffle ids
        over the whole set).
      seed: makes shuffling and augmentation reproducible (None: random; the orientation sequence then
        uses seed 0, so that it stays the same in every replica).
    Returns:
      tf.data.Dataset of batch dicts.
    """
    _validate_types(locals())
    _check_config(training, train_short_side, short_side_step, eval_short_side, max_size, canvas_size,
                  max_instances, mask_crop_size, flip_prob, global_batch_size)
    canvases = dataset_canvases(training=training, train_short_side=train_short_side,
                                eval_short_side=eval_short_side, max_size=max_size, canvas_size=canvas_size,
                                aspect_grouping=aspect_grouping)
    counts = source.instances_per_image() if hasattr(source, "instances_per_image") else {}
    crowded = sum(n > max_instances for n in counts.values())
    if crowded:
        logging.warning("%s: %d image(s) have more than build_dataset.max_instances=%d instances (up to %d); "
                        "the extra ones are dropped, crowd regions first", source.name, crowded, max_instances,
                        max(counts.values()))
    batch_size = global_batch_size
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(global_batch_size)

    flip_permutation = coco_lib.flip_permutation(source.keypoint_names) if source.has_keypoints else None
    options = dict(training=training, train_short_side=tuple(train_short_side),
                   short_side_step=short_side_step, eval_short_side=eval_short_side, max_size=max_size,
                   max_instances=max_instances, flip_prob=flip_prob,
                   normalization=preprocess.pixel_normalization(divide_by_std), flip_permutation=flip_permutation)
    common = dict(source=source, training=training, batch_size=batch_size, input_context=input_context,
                  mask_crop_size=mask_crop_size, shuffle_buffer=shuffle_buffer, options=options)
    ids = source.training_image_ids if training else source.image_ids
    if canvases[0] == canvases[1] or not ids:  # one canvas: every image, as one stream
        ds = _stream(orientation=None, canvas=canvases[0], num_images=source.num_examples(training),
                     seed=seed, **common)  # (no ids: the source raises naming itself)
        return ds.prefetch(tf.data.AUTOTUNE)

    sizes = source.image_sizes() if hasattr(source, "image_sizes") else None
    if sizes is None:
        raise validate.ConfigError(f"source {source.name} does not know its image sizes, which "
                         "build_dataset.aspect_grouping=True needs: set build_dataset.aspect_grouping = False")
    num_portrait = sum(bool(preprocess.is_portrait(*sizes[i])) for i in ids)
    num = {"landscape": len(ids) - num_portrait, "portrait": num_portrait}
    streams = [_stream(orientation=o, canvas=c, num_images=num[o],
                       seed=None if seed is None else seed + 1000003 * k, **common)
               for k, (o, c) in enumerate(zip(("landscape", "portrait"), canvases)) if num[o]]
    if len(streams) == 1:
        ds = streams[0]
    elif training:
        ds = tf.data.Dataset.choose_from_datasets(
            streams, orientation_sequence(num_portrait / len(ids), 0 if seed is None else seed))
    else:
        ds = streams[0].concatenate(streams[1])
    return ds.prefetch(tf.data.AUTOTUNE)


def dataset_canvases(*, training, train_short_side=(640, 800), eval_short_side=800, max_size=1333,
                     canvas_size=None, aspect_grouping=True):
    """(landscape (H, W), portrait (H, W)) canvases build_dataset uses with these arguments."""
    short_side = max(train_short_side) if training else eval_short_side
    return preprocess.canvas_shapes(short_side, max_size, canvas_size, aspect_grouping)


def orientation_sequence(portrait_fraction, seed):
    """Infinite int64 dataset: step k -> 1 (portrait stream) with probability `portrait_fraction`, else 0.

    A pure function of (seed, k) (stateless RNG), so every replica pipeline computes the same sequence;
    its iterator state is just the step counter.
    """
    def choose(k):
        seed_pair = tf.stack([tf.constant(seed, tf.int64), k])
        draw = tf.random.stateless_uniform([], seed=seed_pair, dtype=tf.float32)
        return tf.cast(draw < portrait_fraction, tf.int64)
    return tf.data.Dataset.counter().map(choose)


def _stream(*, source, orientation, canvas, num_images, training, batch_size, input_context, mask_crop_size,
            shuffle_buffer, seed, options):
    """Batches of the `orientation` images of `source` (None: all) on `canvas` (H, W), not prefetched."""
    ds = source.example_dataset(training=training, mask_crop_size=mask_crop_size,
                                input_context=input_context, seed=seed, shuffle_buffer=shuffle_buffer,
                                **({"orientation": orientation} if orientation else {}))
    if not training:
        shards = input_context.num_input_pipelines if input_context is not None else 1
        shard = input_context.input_pipeline_id if input_context is not None else 0
        mine = len(range(shard, num_images, shards))
        batches = math.ceil(math.ceil(num_images / shards) / batch_size)
        if batches * batch_size > mine:
            ds = ds.concatenate(_dummy_examples(batches * batch_size - mine, ds.element_spec))
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds)).map(
        lambda ex, s: _transform(ex, s, canvas=canvas, **options), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True)


def samples_seen(batch):
    """Figure 2 counts of one batch: {"images", "instances", "pixels"} int64 scalars.

    images: real (non-padding) images; instances: non-crowd, non-padding instances; pixels: sum over real
    images of scaled_h * scaled_w (the image area at the trained scale, padding excluded).
    """
    real = batch["image_id"] >= 0
    instances = tf.logical_and(batch["gt_classes"] > 0, tf.logical_not(batch["gt_is_crowd"]))
    instances = tf.logical_and(instances, real[:, None])
    area = batch["image_info"][:, 1, 0] * batch["image_info"][:, 1, 1]
    return {
        "images": tf.reduce_sum(tf.cast(real, tf.int64)),
        "instances": tf.reduce_sum(tf.cast(instances, tf.int64)),
        "pixels": tf.reduce_sum(tf.where(real, tf.cast(tf.round(area), tf.int64), tf.constant(0, tf.int64))),
    }
