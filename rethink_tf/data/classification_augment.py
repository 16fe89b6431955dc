"""The ImageNet recipe's image geometry: random-resized-crop + flip for training, resize + center crop for eval.

As torchvision's `RandomResizedCrop` / `Resize` / `CenterCrop` (the recipe of the GroupNorm paper and of
Goyal et al.'s large-minibatch ImageNet training), in graph mode with static output shapes:

- `random_resized_crop_box`: up to `attempts` (10) tries of a target area uniform in `area_range` (0.08 to
  1 of the image) times the image area and an aspect ratio w/h log-uniform in `ratio_range` (3/4 to 4/3);
  crop w = round(sqrt(area * ratio)), h = round(sqrt(area / ratio)); the first try that fits is placed at
  top = floor(u * (H - h + 1)), left = floor(u' * (W - w + 1)) (uniform over the valid offsets). If none
  fits: a centre crop of the whole image with its ratio clamped into `ratio_range`. All draws come from
  one stateless seed, so a seed fixes the box (and a numpy reference can recompute it from the same
  uniforms, `crop_uniforms`). Rounding is half-to-even in both (Python's round, tf.round).
- The crop is resized to S x S bilinearly with antialiasing (PIL's resampling, which torchvision applies
  to PIL images), then flipped left-right with probability `flip_prob`.
- Eval: `resize_shorter_side` to R (256), the longer side floor(R * long / short) (torchvision's
  integer truncation), then `center_crop` S (224) at top = round((H - S) / 2), left = round((W - S) / 2).

Box math runs in float64 (a handful of scalars) so the numpy reference agrees bit for bit.
"""

import tensorflow as tf

_UNIFORMS_PER_ATTEMPT = 4  # area, log-ratio, top, left


def crop_uniforms(seed, attempts=10):
    """float64 [attempts, 4] uniforms in [0, 1) drawn from `seed` (int [2]): area, log-ratio, top, left."""
    return tf.random.stateless_uniform([attempts, _UNIFORMS_PER_ATTEMPT], seed, dtype=tf.float64)


def random_resized_crop_box(height, width, seed, area_range=(0.08, 1.0), ratio_range=(3 / 4, 4 / 3),
                            attempts=10):
    """The crop box of one image: int32 [4] = (top, left, crop_height, crop_width) in pixels.

    Args:
      height, width: the image size (int scalars or tensors, pixels).
      seed: int32/int64 [2] stateless seed.
      area_range: (min, max) crop area as a fraction of the image area.
      ratio_range: (min, max) crop aspect ratio width / height.
      attempts: tries before falling back to the clamped centre crop.
    """
    u = crop_uniforms(seed, attempts)
    h_img = tf.cast(height, tf.float64)
    w_img = tf.cast(width, tf.float64)
    lo_log = tf.math.log(tf.constant(ratio_range[0], tf.float64))
    hi_log = tf.math.log(tf.constant(ratio_range[1], tf.float64))
    area = h_img * w_img * (area_range[0] + (area_range[1] - area_range[0]) * u[:, 0])
    ratio = tf.exp(lo_log + (hi_log - lo_log) * u[:, 1])
    w = tf.round(tf.sqrt(area * ratio))
    h = tf.round(tf.sqrt(area / ratio))
    fits = (w > 0) & (h > 0) & (w <= w_img) & (h <= h_img)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)  # 0 when none fits (then unused)
    h_try, w_try = h[first], w[first]
    top_try = tf.minimum(tf.floor(u[first, 2] * (h_img - h_try + 1)), h_img - h_try)
    left_try = tf.minimum(tf.floor(u[first, 3] * (w_img - w_try + 1)), w_img - w_try)
    # Fallback: the whole image, its ratio clamped into ratio_range, centred.
    in_ratio = w_img / h_img
    w_fb = tf.where(in_ratio > ratio_range[1], tf.round(h_img * ratio_range[1]), w_img)
    h_fb = tf.where(in_ratio < ratio_range[0], tf.round(w_img / ratio_range[0]), h_img)
    top_fb = tf.floor((h_img - h_fb) / 2)
    left_fb = tf.floor((w_img - w_fb) / 2)
    ok = tf.reduce_any(fits)
    box = tf.where(ok, tf.stack([top_try, left_try, h_try, w_try]), tf.stack([top_fb, left_fb, h_fb, w_fb]))
    return tf.cast(box, tf.int32)


def random_resized_crop(image, size, seed, area_range=(0.08, 1.0), ratio_range=(3 / 4, 4 / 3)):
    """Crops `image` [h, w, 3] (any dtype) by `random_resized_crop_box` and resizes it to float32
    [size, size, 3] (bilinear, antialiased), in the input's value range."""
    shape = tf.shape(image)
    top, left, h, w = tf.unstack(random_resized_crop_box(shape[0], shape[1], seed, area_range, ratio_range))
    crop = image[top:top + h, left:left + w]
    resized = tf.image.resize(tf.cast(crop, tf.float32), [size, size], method="bilinear", antialias=True)
    return tf.ensure_shape(resized, [size, size, 3])


def random_flip(image, seed, flip_prob=0.5):
    """Flips `image` [h, w, C] left-right when a stateless uniform draw from `seed` is below flip_prob."""
    flip = tf.random.stateless_uniform([], seed) < flip_prob
    return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)


def shorter_side_size(height, width, size):
    """(new_h, new_w) int32: the shorter side becomes `size`, the longer floor(size * long / short)."""
    h = tf.cast(height, tf.int64)
    w = tf.cast(width, tf.int64)
    short, long = tf.minimum(h, w), tf.maximum(h, w)
    new_long = (size * long) // short
    new_h = tf.where(h <= w, tf.constant(size, tf.int64), new_long)
    new_w = tf.where(h <= w, new_long, tf.constant(size, tf.int64))
    return tf.cast(new_h, tf.int32), tf.cast(new_w, tf.int32)


def resize_shorter_side(image, size):
    """Resizes `image` [h, w, 3] so its shorter side is `size` (bilinear, antialiased); float32 out."""
    shape = tf.shape(image)
    new_h, new_w = shorter_side_size(shape[0], shape[1], size)
    return tf.image.resize(tf.cast(image, tf.float32), tf.stack([new_h, new_w]), method="bilinear",
                           antialias=True)


def center_crop_offsets(height, width, size):
    """(top, left) int32 of the centred size x size crop: round((H - size) / 2), half to even."""
    top = tf.round(tf.cast(height - size, tf.float64) / 2)
    left = tf.round(tf.cast(width - size, tf.float64) / 2)
    return tf.cast(top, tf.int32), tf.cast(left, tf.int32)


def center_crop(image, size):
    """The centred [size, size, C] crop of `image` [h, w, C] (h, w >= size)."""
    shape = tf.shape(image)
    with tf.control_dependencies([tf.debugging.assert_greater_equal(
            shape[:2], size, message=f"center_crop: image smaller than the {size}x{size} crop")]):
        top, left = center_crop_offsets(shape[0], shape[1], size)
    crop = image[top:top + size, left:left + size]
    return tf.ensure_shape(crop, [size, size, None])
