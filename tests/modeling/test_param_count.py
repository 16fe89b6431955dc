"""Parameter counts of R50-FPN Mask R-CNN (80 classes) against a hand derivation from layer shapes.

The derivation below is plain arithmetic from the architecture in rethink_tf/modeling/README.md; it does not
look at the model code. `norm_vars` is the number of variables per normalized channel: GN has
gamma, beta (2); FrozenBN stores gamma, beta, mean, variance (4, none trainable).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
K = 80  # COCO classes


def conv(k, cin, cout, bias=False):
    return k * k * cin * cout + (cout if bias else 0)


def resnet50(norm_vars):
    """Stem + res2..res5 (3, 4, 6, 3 bottlenecks); no conv bias, a norm after every conv."""
    total = conv(7, 3, 64) + norm_vars * 64
    cin = 64
    for stage, blocks in enumerate((3, 4, 6, 3)):
        width, cout = 64 * 2 ** stage, 256 * 2 ** stage
        for b in range(blocks):
            total += conv(1, cin, width) + norm_vars * width          # conv1
            total += conv(3, width, width) + norm_vars * width        # conv2 (stride here)
            total += conv(1, width, cout) + norm_vars * cout          # conv3
            if b == 0:
                total += conv(1, cin, cout) + norm_vars * cout        # projection shortcut
            cin = cout
    return total


def fpn(norm_vars):
    """Lateral 1x1 and output 3x3 per C2..C5, 256 channels; bias iff no norm; P6 has no weights."""
    per_channel = norm_vars if norm_vars else 1  # a norm's vectors, or the conv bias
    return sum(conv(1, c, 256) + conv(3, 256, 256) + 2 * per_channel * 256
               for c in (256, 512, 1024, 2048))


RPN = conv(3, 256, 256, bias=True) + conv(1, 256, 3, bias=True) + conv(1, 256, 12, bias=True)
BOX_2FC = (7 * 7 * 256 * 1024 + 1024) + (1024 * 1024 + 1024)
BOX_4CONV1FC_GN = 4 * (conv(3, 256, 256) + 2 * 256) + (7 * 7 * 256 * 1024 + 1024)
PREDICTOR = (1024 * (K + 1) + (K + 1)) + (1024 * 4 * K + 4 * K)  # class-specific deltas, no bg
DECONV_AND_PREDICTOR = (2 * 2 * 256 * 256 + 256) + conv(1, 256, K, bias=True)
MASK_NO_NORM = 4 * conv(3, 256, 256, bias=True) + DECONV_AND_PREDICTOR
MASK_GN = 4 * (conv(3, 256, 256) + 2 * 256) + DECONV_AND_PREDICTOR

EXPECTED = {
    "R50-FPN_2fc_frozenbn": {
        "backbone": resnet50(4), "fpn": fpn(0), "rpn_head": RPN, "box_head": BOX_2FC,
        "box_predictor": PREDICTOR, "mask_head": MASK_NO_NORM},
    "R50-FPN_4conv1fc_gn": {
        "backbone": resnet50(2), "fpn": fpn(2), "rpn_head": RPN, "box_head": BOX_4CONV1FC_GN,
        "box_predictor": PREDICTOR, "mask_head": MASK_GN},
}


@pytest.fixture(scope="module")
def printed():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "param_count.py")],
                         capture_output=True, text=True, check=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2",
                              "PATH": "/usr/bin:/bin"})
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {row["config"]: row for row in rows}


def test_known_totals_of_the_derivation():
    # Anchors for the derivation itself: torchvision's resnet50 has 25,557,032 parameters with
    # its 2048x1000 fc (2,049,000) and BN gamma/beta (2 per channel).
    assert resnet50(2) + 2048 * 1000 + 1000 == 25_557_032


@pytest.mark.parametrize("config", sorted(EXPECTED))
def test_param_counts_match_hand_derivation(printed, config):
    row = printed[config]
    assert row["components"] == EXPECTED[config]
    assert row["total"] == sum(EXPECTED[config].values())


def test_trainable_counts(printed):
    gn = printed["R50-FPN_4conv1fc_gn"]
    assert gn["trainable"] == gn["total"]
    frozen = printed["R50-FPN_2fc_frozenbn"]
    # All four FrozenBN vectors (4 per normalized backbone channel) are not trainable.
    norm_channels = (resnet50(4) - resnet50(2)) // 2
    assert frozen["trainable"] == frozen["total"] - 4 * norm_channels
