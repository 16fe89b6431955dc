"""Installs rethink_tf: `pip install -e .[test,interop]` (see README.md).

The gin configs of the repository's `gin_configs/` ship inside the package as `rethink_tf.configs`
(`package_dir` maps that package onto the folder), so an installed wheel resolves
`--gin_file=quickstart` as a source checkout does (rethink_tf/training/config.py).
"""
import os

from setuptools import find_packages, setup

# rethink_tf.configs[.<folder>] <- gin_configs[/<folder>], one package per folder holding gin files.
CONFIG_PACKAGES = {
    ".".join(["rethink_tf.configs"] + ([] if folder == "gin_configs" else
                                       os.path.relpath(folder, "gin_configs").split(os.sep))): folder
    for folder, _, files in sorted(os.walk("gin_configs")) if any(f.endswith(".gin") for f in files)}

setup(
    name="rethink_tf",
    version="0.1.0",
    description=(
        "Keras 3 / TensorFlow reproduction of 'Rethinking ImageNet Pre-training' "
        "(He, Girshick, Dollar): Mask R-CNN trained from scratch with GroupNorm / SyncBN."
    ),
    # TensorFlow 2.21 publishes wheels for CPython 3.10-3.13.
    python_requires=">=3.10,<3.14",
    packages=find_packages(include=["rethink_tf", "rethink_tf.*"]) + list(CONFIG_PACKAGES),
    package_dir=CONFIG_PACKAGES,
    package_data={name: ["*.gin"] for name in CONFIG_PACKAGES},
    install_requires=[
        # `tensorflow`, not `tensorflow-cpu`: its Linux wheel runs on CPUs and, with the CUDA
        # libraries (the `gpu` extra), on GPUs. Depending on `tensorflow-cpu` made pip write a second,
        # CPU-only distribution over the `tensorflow/` package of a GPU machine.
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        # tf.summary.scalar / image / text and the HParams dashboard's summaries live in `tensorboard`.
        "tensorboard>=2.21,<2.22",
        "keras-cv==0.9.0",
        "tensorflow-datasets>=4.9,<5",
        # tensorflow-datasets 4.9.10 imports it to prepare any builder but does not declare it.
        "importlib_resources>=6",
        "pycocotools>=2.0.7,<3",
        "absl-py>=2.1,<3",
        "gin-config>=0.5,<0.6",
        "numpy>=1.26,<3",
        "pillow>=10,<14",
    ],
    extras_require={
        # matplotlib draws the plots; without it `plot` prints the table (tests cover both paths).
        "plot": ["matplotlib>=3.7,<4"],
        "test": ["pytest>=8,<10", "pytest-timeout>=2.3,<3", "matplotlib>=3.7,<4"],
        # Reading torchvision .pth files (rethink_tf.import_weights) and the tests that compare imported
        # weights with torchvision's own forward pass. The package itself never imports torch.
        "interop": ["torch==2.14.1", "torchvision==0.29.1"],
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
    },
    entry_points={
        "console_scripts": [
            "rethink-train = rethink_tf.train:run",
            "rethink-evaluate = rethink_tf.evaluate:run",
            "rethink-export = rethink_tf.export:run",
            "rethink-predict = rethink_tf.predict:run",
            "rethink-plot = rethink_tf.evaluation.plot:run",
            "rethink-figure2 = rethink_tf.evaluation.figure2:run",
            "rethink-pretrain = rethink_tf.pretrain:run",
            "rethink-import-weights = rethink_tf.import_weights:run",
        ],
    },
)
