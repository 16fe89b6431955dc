"""The embedded classification set for CPU pre-training: procedurally generated, ImageNet-style folders.

The stand-in for ImageNet-1k when pre-training on a CPU before fine-tuning on the synthetic detection set
(rethink_tf/data/synthetic_shapes.py). It is built so that what a backbone learns here is what that
detection set needs:

- Same visual vocabulary. Backgrounds are drawn by the detection generator's own background function
  (colour gradient plus noise, stripes, checkerboard or blobs), and objects are filled, rotated,
  colour-contrasted shapes without anti-aliasing, as there.
- Many classes (48 = 12 shapes x 4 fills, `CLASS_NAMES`), so the features must tell shapes apart by
  their outline and surfaces by their texture, not just find "an object". The 12 shapes include the
  detection set's circle, square and triangle, plus pentagon, hexagon, star, ellipse, rectangle,
  diamond, ring, cross and semicircle (near neighbours of the three, so outlines must be looked at
  closely); the fills are "shaded" (one colour with a shading gradient, the detection set's look),
  "striped", "checkered" and "speckled".
- Object-centric like ImageNet, with clutter and scale variation. One labelled object per image
  (circumradius 25 % to 45 % of the side, log-uniform, so 1.8x in scale), plus 0 to 2 smaller
  distractors of random shapes and fills (0.15x to 0.4x the object's radius): the ones painted behind
  it may be partly hidden by it, the ones painted in front (30 %) are kept only if they hide at most
  20 % of it. The label is the shape and fill of the large object.
- Learnable early on a CPU. Version 1 (objects 18-42 %, up to 4 distractors of 0.25-0.6x, half in
  front) stayed at chance in every probe a busy 2-core machine allowed (a narrow GN ResNet with SGD for
  400 steps of 64, a small GN CNN for 240 steps); with this version a small GN CNN (4 convs, Adam 2e-3,
  batch 64, no augmentation) left chance in its second epoch of 6,000 images (val loss 3.61 against
  ln 48 = 3.87). Not the same probe for both versions: an indication, not a measurement of the gain.
- Small images (64x64 by default): the classification task trains at the stored size, and the
  object's size in pixels (radius 16 to 29 px) lies inside the detection set's range (7 to 40 px at
  128 px), as ImageNet objects at 224 px are in the range of COCO's at 800 px.

Classes are balanced: image k of a split has class k mod 48. Generation is deterministic (image k of a
split uses numpy seed (split seed, k)), written into a temporary folder renamed into place when complete
(safe against concurrent first use), and cached as JPEG (quality 95) class folders, the layout
`ImageFolderSource` reads:
    <root>/synthetic_classification/<version>/{train,val}/<class name>/<k>.jpg
The default 300 train + 50 val images per class (14,400 + 2,400 images) take one to a few minutes to
generate on one core (measured on a shared 2-core machine, so noisy: version 1 in 66 s, about 4 ms per
image; version 2 in 335 s at a load average of ~15).
"""

import os
import shutil
import tempfile

import numpy as np
from absl import logging
from PIL import Image

from rethink_tf.data import synthetic_shapes

SHAPES = ("circle", "square", "triangle", "pentagon", "hexagon", "star", "ellipse", "rectangle", "diamond",
          "ring", "cross", "semicircle")
FILLS = ("shaded", "striped", "checkered", "speckled")
CLASS_NAMES = tuple(f"{shape}_{fill}" for shape in SHAPES for fill in FILLS)  # class c = shape c//4, fill c%4
_SPLIT_SEEDS = {"train": 11, "val": 12}
_GENERATOR_VERSION = 2  # bump when the content changes, so old caches are not reused
_RADIUS_RANGE = (0.25, 0.45)  # the object's circumradius, fraction of the image side (log-uniform)
_DISTRACTOR_SCALE = (0.15, 0.4)  # distractor radius / object radius
_MAX_FRONT_OCCLUSION = 0.2
_MAX_DISTRACTORS = 2
_FRONT_PROBABILITY = 0.3


def _convex(vertices, xx, yy):
    return synthetic_shapes._convex_polygon_mask(np.asarray(vertices), xx, yy)  # noqa: SLF001


def _regular(cx, cy, radius, angle, sides):
    t = angle + 2 * np.pi * np.arange(sides) / sides
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)


def _rotated_rect(cx, cy, half_w, half_h, angle):
    corners = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
    c, s = np.cos(angle), np.sin(angle)
    return corners @ np.array([[c, s], [-s, c]]) + [cx, cy]


def shape_mask(shape, cx, cy, radius, angle, xx, yy):
    """bool [H, W]: pixels whose centres are inside `shape` (a SHAPES name) of circumradius `radius` px
    centred at (cx, cy), rotated by `angle` radians. xx, yy: pixel-centre coordinates [H, W]."""
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape in ("square", "triangle", "pentagon", "hexagon"):
        sides = {"square": 4, "triangle": 3, "pentagon": 5, "hexagon": 6}[shape]
        return _convex(_regular(cx, cy, radius, angle, sides), xx, yy)
    if shape == "star":  # inner pentagon plus five tip triangles
        outer = _regular(cx, cy, radius, angle, 5)
        inner = _regular(cx, cy, radius * 0.42, angle + np.pi / 5, 5)
        mask = _convex(inner, xx, yy)
        for i in range(5):
            mask |= _convex([outer[i], inner[i], inner[i - 1]], xx, yy)
        return mask
    if shape == "ellipse":
        c, s = np.cos(angle), np.sin(angle)
        u, v = c * dx + s * dy, -s * dx + c * dy
        return (u / radius) ** 2 + (v / (radius * 0.55)) ** 2 <= 1
    if shape == "rectangle":  # aspect 2:1, circumradius `radius`
        return _convex(_rotated_rect(cx, cy, radius * 0.894, radius * 0.447, angle), xx, yy)
    if shape == "diamond":  # rhombus with axes 1 : 0.55
        c, s = np.cos(angle), np.sin(angle)
        axes = [(radius * c, radius * s), (-0.55 * radius * s, 0.55 * radius * c)]
        return _convex([(cx + axes[0][0], cy + axes[0][1]), (cx + axes[1][0], cy + axes[1][1]),
                        (cx - axes[0][0], cy - axes[0][1]), (cx - axes[1][0], cy - axes[1][1])], xx, yy)
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= radius * radius) & (d2 >= (0.55 * radius) ** 2)
    if shape == "cross":  # two bars, each 2r x 0.6r
        return (_convex(_rotated_rect(cx, cy, radius * 0.954, radius * 0.3, angle), xx, yy)
                | _convex(_rotated_rect(cx, cy, radius * 0.3, radius * 0.954, angle), xx, yy))
    if shape == "semicircle":  # half disc, its centroid at (cx, cy)
        ox, oy = cx - 0.424 * radius * np.cos(angle), cy - 0.424 * radius * np.sin(angle)
        ex, ey = xx - ox, yy - oy
        return (ex * ex + ey * ey <= radius * radius) & (np.cos(angle) * ex + np.sin(angle) * ey >= 0)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _paint(rng, image, mask, fill, color, xx, yy):
    """Paints `mask` of float image [H, W, 3] (0..255) with `color` and the texture `fill`."""
    px, py = xx[mask], yy[mask]
    if not px.size:
        return
    size = image.shape[0]
    other = np.clip(color + rng.choice([-1, 1], 3) * rng.uniform(70, 140, 3), 0, 255)
    if fill == "shaded":
        a = rng.uniform(0, 2 * np.pi)
        shade = 1 + 0.6 * (np.cos(a) * (px - px.mean()) + np.sin(a) * (py - py.mean())) / size
        image[mask] = color * shade[:, None]
        return
    if fill == "striped":
        a, period = rng.uniform(0, np.pi), rng.uniform(3, 7)
        second = np.sin(2 * np.pi * (np.cos(a) * px + np.sin(a) * py) / period) > 0
    elif fill == "checkered":
        cell = rng.uniform(2.5, 5)
        second = ((np.floor(px / cell) + np.floor(py / cell)) % 2) > 0
    else:  # speckled
        second = rng.random(px.size) < rng.uniform(0.25, 0.45)
    image[mask] = np.where(second[:, None], other, color)


def _contrasting_color(rng, image, mask):
    local = image[mask].mean(axis=0) if mask.any() else image.mean(axis=(0, 1))
    color = rng.uniform(0, 255, 3)
    for _ in range(10):  # keep the object visible against its background
        if np.abs(color - local).sum() > 150:
            break
        color = rng.uniform(0, 255, 3)
    return color


def generate_image(rng, label, size):
    """uint8 [size, size, 3]: one object of class `label` (index into CLASS_NAMES) among distractors."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    image = synthetic_shapes._background(rng, size, xx, yy)  # noqa: SLF001  (the detection set's look)
    shape, fill = SHAPES[label // len(FILLS)], FILLS[label % len(FILLS)]
    radius = float(np.exp(rng.uniform(*np.log(np.array(_RADIUS_RANGE) * size))))
    cx, cy = rng.uniform(radius * 0.8, size - radius * 0.8, 2)
    target = shape_mask(shape, cx, cy, radius, rng.uniform(0, 2 * np.pi), xx, yy)
    distractors = []
    for _ in range(int(rng.integers(0, _MAX_DISTRACTORS + 1))):
        r = radius * rng.uniform(*_DISTRACTOR_SCALE)
        dx, dy = rng.uniform(0, size, 2)
        mask = shape_mask(SHAPES[rng.integers(len(SHAPES))], dx, dy, r, rng.uniform(0, 2 * np.pi), xx, yy)
        in_front = rng.random() < _FRONT_PROBABILITY
        if in_front and (mask & target).sum() > _MAX_FRONT_OCCLUSION * target.sum():
            continue
        distractors.append((in_front, mask, FILLS[rng.integers(len(FILLS))]))
    for in_front, mask, d_fill in distractors:
        if not in_front:
            _paint(rng, image, mask, d_fill, _contrasting_color(rng, image, mask), xx, yy)
    _paint(rng, image, target, fill, _contrasting_color(rng, image, target), xx, yy)
    for in_front, mask, d_fill in distractors:
        if in_front:
            _paint(rng, image, mask, d_fill, _contrasting_color(rng, image, mask), xx, yy)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def generate_split(out_dir, split, per_class, size):
    """Writes per_class * len(CLASS_NAMES) JPEGs to out_dir/split/<class name>/<k>.jpg."""
    for name in CLASS_NAMES:
        os.makedirs(os.path.join(out_dir, split, name), exist_ok=True)
    for k in range(per_class * len(CLASS_NAMES)):
        label = k % len(CLASS_NAMES)
        image = generate_image(np.random.default_rng([_SPLIT_SEEDS[split], k]), label, size)
        Image.fromarray(image).save(os.path.join(out_dir, split, CLASS_NAMES[label], f"{k:06d}.jpg"),
                                    quality=95)


def ensure_generated(root, *, train_per_class=300, val_per_class=50, image_size=64):
    """Returns the dataset folder under `root` (holding train/ and val/), generating it if not cached."""
    version = f"v{_GENERATOR_VERSION}_{image_size}px_train{train_per_class}_val{val_per_class}"
    final = os.path.join(os.fspath(root), "synthetic_classification", version)
    done = os.path.join(final, "val")
    if os.path.isdir(done):
        return final
    os.makedirs(os.path.dirname(final), exist_ok=True)
    logging.info("Generating the synthetic classification set (%d classes, %d train + %d val per class) in %s",
                 len(CLASS_NAMES), train_per_class, val_per_class, final)
    tmp = tempfile.mkdtemp(prefix=version + ".tmp-", dir=os.path.dirname(final))
    try:
        generate_split(tmp, "train", train_per_class, image_size)
        generate_split(tmp, "val", val_per_class, image_size)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first; its copy is identical
            if not os.path.isdir(done):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
