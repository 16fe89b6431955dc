"""The embedded default dataset: procedurally generated instance segmentation of shapes, in COCO format.

Each image (default 128x128, JPEG quality 95 as COCO's are; PNG would cost 7x the encoding time) has a
textured background (a colour gradient plus one of: noise, stripes at a random angle, checkerboard,
blobs) and 1 to 8 filled shapes of 3 classes (circle, square, triangle) with random size (diameter about 14 to 80 px), position, rotation and colour, each with a shading
gradient. Shapes are painted back to front, so later ones occlude earlier ones; an instance's mask is
exactly its visible pixels (occluded parts removed). Shapes left with less than 35 % of their area or fewer
than 40 visible pixels are not painted at all, so every painted shape is annotated. Boxes are the tight
boxes of the visible masks; segmentations are compressed RLE, so pycocotools scores masks exactly.

Generation is deterministic (image k of a split uses seed (split seed, k)), writes into a temporary folder
renamed into place when complete (safe against concurrent first use), and is cached:
    <root>/synthetic_shapes/<version>/{train,val}/*.jpg, annotations/instances_{train,val}.json
Generation runs at about 7 ms per image on one core (2,500 images in under 20 s).
"""

import json
import os
import shutil
import tempfile

import numpy as np
from absl import logging
from PIL import Image
from pycocotools import mask as mask_utils

CATEGORIES = ({"id": 1, "name": "circle", "supercategory": "shape"},
              {"id": 2, "name": "square", "supercategory": "shape"},
              {"id": 3, "name": "triangle", "supercategory": "shape"})
_SPLIT_SEEDS = {"train": 1, "val": 2}
_GENERATOR_VERSION = 2  # bump when the content changes, so old caches are not reused
_MIN_VISIBLE_FRACTION = 0.35
_MIN_VISIBLE_PIXELS = 40


def _convex_polygon_mask(vertices, xx, yy):
    """Pixels whose centres lie inside a convex polygon (vertices [k, 2] as (x, y), any orientation)."""
    inside_pos = np.ones(xx.shape, bool)
    inside_neg = np.ones(xx.shape, bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        cross = (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0)
        inside_pos &= cross >= 0
        inside_neg &= cross <= 0
    return inside_pos | inside_neg


def _shape_mask(kind, cx, cy, radius, angle, xx, yy):
    """Full (unoccluded) mask of one shape: circle, square (circumradius) or triangle (circumradius)."""
    # Rasterize only inside the shape's bounding square (the rest is False).
    y0, x0 = max(int(cy - radius) - 1, 0), max(int(cx - radius) - 1, 0)
    y1, x1 = int(cy + radius) + 2, int(cx + radius) + 2
    sx, sy = xx[y0:y1, x0:x1], yy[y0:y1, x0:x1]
    if kind == 1:
        window = (sx - cx) ** 2 + (sy - cy) ** 2 <= radius ** 2
    else:
        sides = 4 if kind == 2 else 3
        t = angle + 2 * np.pi * np.arange(sides) / sides
        vertices = np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)
        window = _convex_polygon_mask(vertices, sx, sy)
    mask = np.zeros(xx.shape, bool)
    mask[y0:y1, x0:x1] = window
    return mask


def _background(rng, size, xx, yy):
    """float [size, size, 3] textured background in 0..255."""
    c0, c1 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = ((np.float32(np.cos(direction)) * xx + np.float32(np.sin(direction)) * yy) / size + 1) * 0.3
    image = c0 + (c1 - c0) * ramp[..., None]
    texture = rng.integers(4)
    amplitude = rng.uniform(10, 35)
    if texture == 0:
        pattern = rng.standard_normal((size, size), dtype=np.float32)
    elif texture == 1:
        a, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
        pattern = np.sign(np.sin(2 * np.pi * (np.cos(a) * xx + np.sin(a) * yy) / period))
    elif texture == 2:
        cell = int(rng.integers(4, 16))
        pattern = (((xx // cell) + (yy // cell)) % 2) * 2.0 - 1
    else:
        pattern = np.zeros((size, size), np.float32)
        for _ in range(6):
            bx, by, br = rng.uniform(0, size, 2).astype(np.float32).tolist() + [rng.uniform(5, size / 4)]
            gx = np.exp(-(xx[0] - bx) ** 2 / (2 * br ** 2))  # separable Gaussian blob
            gy = np.exp(-(yy[:, 0] - by) ** 2 / (2 * br ** 2))
            pattern += np.outer(gy, gx).astype(np.float32) * rng.choice([-1, 1])
    return image + pattern[..., None] * (amplitude * rng.uniform(0.5, 1.0, 3)).astype(np.float32)


def generate_image(rng, size):
    """One image and its instances.

    Returns (uint8 [size, size, 3], list of (category_id, visible mask bool [size, size])).
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    image = _background(rng, size, xx, yy)
    shapes = []
    for _ in range(int(rng.integers(1, 9))):
        kind = int(rng.integers(1, 4))
        radius = float(np.exp(rng.uniform(np.log(size * 0.055), np.log(size * 0.31))))
        cx, cy = rng.uniform(radius * 0.5, size - radius * 0.5, 2)
        full = _shape_mask(kind, cx, cy, radius, rng.uniform(0, 2 * np.pi), xx, yy)
        color = rng.uniform(0, 255, 3)
        local = image[full].mean(axis=0) if full.any() else image.mean(axis=(0, 1))
        for _ in range(10):  # keep the shape visible against its background
            if np.abs(color - local).sum() > 150:
                break
            color = rng.uniform(0, 255, 3)
        shapes.append((kind, full, color))
    # Drop the shapes that would be mostly hidden, then recompute (fewer occluders only help the rest).
    keep = list(range(len(shapes)))
    while True:
        visible = {}
        covered = np.zeros((size, size), bool)
        for i in reversed(keep):
            visible[i] = shapes[i][1] & ~covered
            covered |= shapes[i][1]
        bad = [i for i in keep if visible[i].sum() < max(_MIN_VISIBLE_PIXELS,
                                                         _MIN_VISIBLE_FRACTION * shapes[i][1].sum())]
        if not bad:
            break
        keep.remove(bad[0])
    instances = []
    for i in keep:
        kind, full, color = shapes[i]
        a = rng.uniform(0, 2 * np.pi)
        px, py = xx[full], yy[full]
        shade = 1 + 0.6 * (np.cos(a) * (px - px.mean()) + np.sin(a) * (py - py.mean())) / size
        image[full] = color * shade[:, None]
        instances.append((kind, visible[i]))
    return np.clip(np.round(image), 0, 255).astype(np.uint8), instances


def _generate_chunk(out_dir, split, first, count, size):
    """Renders images first..first+count-1 of a split; writes their JPEGs, returns (file name, [(category
    id, RLE)]) per image."""
    results = []
    for k in range(first, first + count):
        rng = np.random.default_rng([_SPLIT_SEEDS[split], k])
        image, instances = generate_image(rng, size)
        file_name = f"{k + 1:06d}.jpg"
        Image.fromarray(image).save(os.path.join(out_dir, split, file_name), quality=95)
        results.append((file_name, [(c, mask_utils.encode(np.asfortranarray(m.astype(np.uint8))))
                                    for c, m in instances]))
    return results


def generate_split(out_dir, split, num_images, size):
    """Writes `num_images` JPEGs to out_dir/split and out_dir/annotations/instances_<split>.json."""
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)
    # One process: a worker pool would need fork (unsafe beside TensorFlow's threads) or spawn (re-imports
    # the caller's __main__); a few thousand images take seconds anyway.
    chunks = [_generate_chunk(out_dir, split, 0, num_images, size)]
    images, annotations = [], []
    for file_name, instances in (r for results in chunks for r in results):
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": file_name, "height": size, "width": size})
        for category_id, rle in instances:
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category_id, "iscrowd": 0,
                "area": float(mask_utils.area(rle)), "bbox": [x, y, w, h],
                "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}})
    dataset = {"info": {"description": f"rethink_tf synthetic shapes v{_GENERATOR_VERSION}, {split}"},
               "licenses": [], "images": images, "annotations": annotations,
               "categories": [dict(c) for c in CATEGORIES]}
    with open(os.path.join(out_dir, "annotations", f"instances_{split}.json"), "w") as f:
        json.dump(dataset, f)


def ensure_generated(root, *, num_train_images=2000, num_val_images=500, image_size=128):
    """Returns the dataset folder under `root`, generating it first if it is not cached yet."""
    version = f"v{_GENERATOR_VERSION}_{image_size}px_train{num_train_images}_val{num_val_images}"
    final = os.path.join(os.fspath(root), "synthetic_shapes", version)
    if os.path.isfile(os.path.join(final, "annotations", "instances_val.json")):
        return final
    os.makedirs(os.path.dirname(final), exist_ok=True)
    logging.info("Generating synthetic shapes dataset (%d train, %d val images) in %s",
                 num_train_images, num_val_images, final)
    tmp = tempfile.mkdtemp(prefix=version + ".tmp-", dir=os.path.dirname(final))
    try:
        generate_split(tmp, "train", num_train_images, image_size)
        generate_split(tmp, "val", num_val_images, image_size)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first; its copy is identical
            if not os.path.isfile(os.path.join(final, "annotations", "instances_val.json")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
