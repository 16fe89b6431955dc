"""Writes small VOCdevkit-format directories for tests: XMLs written here, JPEGs from coco128 when present
(else random pixels), all under a tmp dir (never in the repository)."""

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from .conftest import COCO128


def _jpeg_sources():
    folder = COCO128 / "train2017"
    return sorted(folder.glob("*.jpg")) if folder.is_dir() else []


def write_xml(path, height, width, objects, *, filename="x.jpg"):
    """objects: [(class name, (xmin, ymin, xmax, ymax), difficult)] in the XML's 1-based pixels."""
    parts = [f"<annotation><folder>VOC</folder><filename>{filename}</filename>",
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, (x0, y0, x1, y1), difficult in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                     f"<difficult>{int(difficult)}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                     f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
    Path(path).write_text("".join(parts) + "</annotation>")


def write_voc_year(root, year, images, splits, *, first_jpeg=0):
    """Writes root/VOC<year>/{JPEGImages, Annotations, ImageSets/Main}.

    images: {file id: [(class name, (xmin, ymin, xmax, ymax), difficult)]}; boxes must fit in 300 x 300.
    splits: {split name: [file ids]}. The JPEGs are coco128's, from the `first_jpeg`-th on (each at least
    300 x 300), else random 320 x 360 and 360 x 320 images. Returns {file id: (height, width)}.
    """
    year_dir = Path(root) / f"VOC{year}"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year_dir / sub).mkdir(parents=True, exist_ok=True)
    sources = _jpeg_sources()
    rng = np.random.default_rng(year)
    sizes = {}
    for k, (file_id, objects) in enumerate(sorted(images.items())):
        target = year_dir / "JPEGImages" / f"{file_id}.jpg"
        if sources:
            shutil.copyfile(sources[(first_jpeg + k) % len(sources)], target)
        else:
            shape = (320, 360, 3) if k % 2 == 0 else (360, 320, 3)  # landscape and portrait
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(target)
        with Image.open(target) as im:
            width, height = im.size
        sizes[file_id] = (height, width)
        write_xml(year_dir / "Annotations" / f"{file_id}.xml", height, width, objects, filename=f"{file_id}.jpg")
    for split, ids in splits.items():
        (year_dir / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return sizes


# A tiny devkit: VOC2007 (ids 000005..) and VOC2012 (ids 2008_...) with a difficult object and an image
# holding only a difficult object.
VOC2007_IMAGES = {
    "000005": [("chair", (11, 21, 110, 180), False), ("chair", (150, 30, 250, 200), True)],
    "000007": [("car", (1, 1, 200, 150), False)],
    "000009": [("horse", (50, 60, 290, 280), False), ("person", (100, 20, 160, 200), False)],
    "000012": [("car", (30, 40, 120, 90), True)],
}
VOC2007_SPLITS = {"trainval": ["000005", "000007", "000009", "000012"], "train": ["000005", "000007"],
                  "val": ["000009", "000012"]}
VOC2012_IMAGES = {
    "2008_000008": [("horse", (53, 87, 271, 250), False), ("person", (158, 44, 289, 167), False)],
    "2008_000015": [("bottle", (10, 20, 40, 100), False), ("tvmonitor", (100, 100, 250, 200), False)],
    "2008_000019": [("dog", (20, 30, 200, 240), False)],
    "2008_000023": [("bottle", (1, 1, 30, 80), False), ("person", (60, 10, 250, 290), True)],
}
VOC2012_SPLITS = {"train": ["2008_000008", "2008_000015"], "val": ["2008_000019", "2008_000023"],
                  "trainval": ["2008_000008", "2008_000015", "2008_000019", "2008_000023"]}


def write_tiny_devkit(root):
    """The tiny VOCdevkit above under root; returns root."""
    write_voc_year(root, 2007, VOC2007_IMAGES, VOC2007_SPLITS)
    write_voc_year(root, 2012, VOC2012_IMAGES, VOC2012_SPLITS, first_jpeg=4)
    return Path(root)
