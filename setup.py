"""Installs rethink_tf: `pip install -e .[test,interop]` (see README.md)."""
from setuptools import find_packages, setup

setup(
    name="rethink_tf",
    version="0.1.0",
    description=(
        "Keras 3 / TensorFlow reproduction of 'Rethinking ImageNet Pre-training' "
        "(He, Girshick, Dollar): Mask R-CNN trained from scratch with GroupNorm / SyncBN."
    ),
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["rethink_tf", "rethink_tf.*"]),
    include_package_data=True,
    package_data={"rethink_tf": ["gin/*.gin"]},
    install_requires=[
        # tensorflow-cpu is enough for CPU machines; on GPU machines install `tensorflow`
        # (same version range) first and pip keeps it.
        "tensorflow-cpu>=2.21,<2.22; platform_machine=='x86_64'",
        "tensorflow>=2.21,<2.22; platform_machine!='x86_64'",
        "keras>=3.10,<4",
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
        "test": ["pytest>=8,<10", "pytest-timeout>=2.3,<3"],
        # Reading torchvision .pth files (rethink_tf.import_weights) and the tests that compare imported
        # weights with torchvision's own forward pass. The package itself never imports torch.
        "interop": ["torch==2.14.1", "torchvision==0.29.1"],
    },
)
