"""The paper's experiment files: each one's operative recipe equals the paper's row it names; all parse;
a run without COCO fails at start-up with a useful message."""
import inspect
import os
import subprocess
import sys
import time
from pathlib import Path

import gin
import numpy as np
import pytest

from rethink_tf.training import config

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((REPO / "gin_configs").glob("*.gin"))
# Small CPU jobs, not rows of the paper.
CPU_CONFIGS = {"quickstart.gin", "coco128_overfit.gin", "finetune_synthetic_cpu.gin", "scratch_synthetic_cpu.gin",
               "keypoints_coco_mini_cpu.gin", "keypoints_coco_mini_overfit.gin"}

# Written from the paper: section 4 (batch 16, LR 0.02 with linear warmup, weight decay 1e-4, momentum
# 0.9, N x 90k iterations with x0.1 cuts 60k and 20k before the end, shorter side 800, horizontal flip
# the only training augmentation), section 5.1 / Figure 5 ('train aug': [640, 800], 9x from scratch,
# 6x with pre-training; test aug as in Detectron), section 5.2 and its footnote 2 (small data: [512, 800],
# LR 0.04, decay factor 0.02), Tables 1-3 and the text (the numbers); the Detectron details the paper
# inherits from rethink_tf/modeling/README.md and the schedule / optimizer docstrings (GN 32 groups
# everywhere, warmup 500 from 1/3, max side 1333, biases: no decay and 2x LR, FREEZE_AT 0 from scratch
# and 2 for the pre-trained arm, Detectron's TEST.BBOX_AUG scales).
COMMON = dict(
    global_batch_size=16, base_lr=0.02, decay_factor=0.1, warmup_steps=500, warmup_factor=1 / 3,
    eval_short_side=800, max_size=1333, short_side_step=32, flip_prob=0.5, divide_by_std=False,
    backbone="resnet", depth=50, groups=1, width_per_group=None, norm="gn", gn_groups=32, box_head="4conv1fc",
    box_fc_dim=1024, mask=True, keypoints=False, roi_heads="standard", init_checkpoint=False, subset_size=None,
    weight_decay=1e-4, momentum=0.9, bias_lr_factor=2.0, bias_weight_decay=False, metric="coco",
    tta=False, tta_scales=(400, 500, 600, 700, 900, 1000, 1100, 1200), tta_max_size=2000, tta_flip=True,
    tta_merge="vote", rpn_topk=(2000, 1000, 1000, 1000), box_fc_init=None, vgg16_fc_from_weights=True)
# "Nx" at batch 16 (section 4): N x 90k iterations, x0.1 at N x 90k - 60k and N x 90k - 20k.
NX = {2: dict(total_steps=180_000, boundaries=(120_000, 160_000)),
      3: dict(total_steps=270_000, boundaries=(210_000, 250_000)),
      4: dict(total_steps=360_000, boundaries=(300_000, 340_000)),
      5: dict(total_steps=450_000, boundaries=(390_000, 430_000)),
      6: dict(total_steps=540_000, boundaries=(480_000, 520_000)),
      9: dict(total_steps=810_000, boundaries=(750_000, 790_000)),
      11: dict(total_steps=990_000, boundaries=(930_000, 970_000))}
# The final 270k iterations of 9x (the cascade switch): LR cuts at the whole run's 750k and 790k, no warmup.
LAST_270K_OF_9X = dict(total_steps=270_000, boundaries=(210_000, 250_000), warmup_steps=0, init_checkpoint=True)
SCRATCH = dict(freeze_at=0, pretrained=False)
PRETRAINED = dict(freeze_at=2, pretrained=True)
TRAIN_AUG = dict(train_short_side=(640, 800))
NO_AUG = dict(train_short_side=(800, 800))
SMALL_DATA = dict(train_short_side=(512, 800), base_lr=0.04, decay_factor=0.02)
R101 = dict(depth=101)
X152 = dict(depth=152, groups=32, width_per_group=8)
# VGG-16 proposals: Detectron's single-level (C4) RPN, 12000 -> 2000 in training and 6000 -> 1000 at test
# (rpn_topk: pre / post NMS train, pre / post NMS test); fc6 / fc7 MSRA as the ImageNet VGG-16's (section 5.1:
# "the same MSRA initialization for ImageNet pre-training and for COCO from scratch").
VGG16 = dict(backbone="vgg16", depth=None, groups=None, width_per_group=None, norm="none", gn_groups=None,
             box_head="2fc", box_fc_dim=4096, mask=False, train_short_side=(640, 800),
             rpn_topk=(12000, 2000, 6000, 1000), box_fc_init="msra")
TEST_AUG = ("evaluate_checkpoint.tta = True",)  # what `python -m rethink_tf.evaluate --tta` binds

# Each row: the file, the bindings it is run with, what the file's header must say (`header`), the
# paper's number(s) the README's row must show (`paper`), and the recipe values that differ from COMMON.
PAPER_ROWS = {
    "scratch_6x.gin": dict(
        header=("Table 1", "random init, 6x", "41.3 box AP", "36.6 mask AP"), paper="41.3",
        **NX[6], **NO_AUG, **SCRATCH),
    "pretrain_2x.gin": dict(
        header=("Table 1", "w/ ImageNet pre-training, 2x", "40.3 box AP"), paper="40.3",
        **NX[2], **NO_AUG, **PRETRAINED),
    "scratch_9x_train_aug.gin": dict(
        header=("Figure 5", "'train aug', random init", "9x"), paper="figure only",
        **NX[9], **TRAIN_AUG, **SCRATCH),
    "pretrain_6x_train_aug.gin": dict(
        header=("Figure 5", "'train aug', w/ ImageNet pre-training", "6x"), paper="figure only",
        **NX[6], **TRAIN_AUG, **PRETRAINED),
    # Table 3 (section 5.1, "Large models trained from scratch"): ResNeXt-152 32x8d, 'train aug', 9x.
    "x152_scratch_9x_train_aug.gin": dict(
        header=("Table 3", "X152 w/ train aug", "46.4 box AP", "40.5 mask AP"), paper="46.4",
        **X152, **NX[9], **TRAIN_AUG, **SCRATCH),
    # '+ cascade': Mask R-CNN from scratch, switched to Cascade R-CNN for the final 270k iterations of 9x:
    # this run is those 270k (LR cuts at 750k and 790k of the whole, no warmup), from the plain run's 540k.
    "x152_cascade_9x_train_aug.gin": dict(
        header=("Table 3", "+ cascade", "48.6 box AP", "41.4 mask AP", "final 270k iterations"), paper="48.6",
        **X152, roi_heads="cascade", **LAST_270K_OF_9X, **TRAIN_AUG, freeze_at=0, pretrained=False),
    "x152_cascade_9x_train_aug.gin + test aug": dict(
        file="x152_cascade_9x_train_aug.gin", bindings=TEST_AUG, header=("Table 3",), paper="50.9",
        **X152, roi_heads="cascade", **LAST_270K_OF_9X, **TRAIN_AUG, freeze_at=0, pretrained=False, tta=True),
    # "the same model with ImageNet pre-training": 50.3 / 42.5 after cascade, train aug and test aug.
    "x152_pretrain_cascade_6x_train_aug.gin + test aug": dict(
        file="x152_pretrain_cascade_6x_train_aug.gin", bindings=TEST_AUG,
        header=("X152 w/ ImageNet pre-training", "50.3 box AP / 42.5 mask AP", "--tta"), paper="50.3",
        **X152, roi_heads="cascade", **NX[6], **TRAIN_AUG, **PRETRAINED, tta=True),
    # Table 1 / Figure 3: R101.
    "r101_scratch_6x.gin": dict(
        header=("Table 1 / Figure 3", "R101", "random init, 6x", "42.7 box AP", "37.6 mask AP"), paper="42.7",
        **R101, **NX[6], **NO_AUG, **SCRATCH),
    "r101_pretrain_2x.gin": dict(
        header=("Table 1 / Figure 3", "R101", "w/ ImageNet pre-training, 2x", "41.8 box AP"), paper="41.8",
        **R101, **NX[2], **NO_AUG, **PRETRAINED),
    # Figure 4: R50 SyncBN (numbers only at 6x, in the caption).
    "syncbn_scratch_6x.gin": dict(
        header=("Figure 4", "SyncBN", "random init, 6x", "39.3 box AP"), paper="39.3",
        norm="syncbn", gn_groups=None, **NX[6], **NO_AUG, **SCRATCH),
    "syncbn_pretrain_6x.gin": dict(
        header=("Figure 4", "SyncBN", "w/ ImageNet pre-training, 6x", "39.0 box AP"), paper="39.0",
        norm="syncbn", gn_groups=None, **NX[6], **NO_AUG, **PRETRAINED),
    # Figure 5 / Table 3, R101 'train aug' and the cascade rows of R50 and R101 (+ test aug: evaluation).
    "r101_scratch_9x_train_aug.gin": dict(
        header=("Figure 5", "Table 3", "R101 w/ train aug", "45.0 box AP / 39.5 mask AP"), paper="45.0",
        **R101, **NX[9], **TRAIN_AUG, **SCRATCH),
    "r101_pretrain_6x_train_aug.gin": dict(
        header=("Figure 5", "R101", "'train aug', w/ ImageNet pre-training"), paper="figure only",
        **R101, **NX[6], **TRAIN_AUG, **PRETRAINED),
    "scratch_cascade_9x_train_aug.gin": dict(
        header=("Figure 5", "R50", "'cascade + train aug', random init", "final 270k"), paper="figure only",
        roi_heads="cascade", **LAST_270K_OF_9X, **TRAIN_AUG, freeze_at=0, pretrained=False),
    "pretrain_cascade_6x_train_aug.gin": dict(
        header=("Figure 5", "R50", "'cascade + train aug', w/ ImageNet pre-training"), paper="figure only",
        roi_heads="cascade", **NX[6], **TRAIN_AUG, **PRETRAINED),
    "r101_scratch_cascade_9x_train_aug.gin": dict(
        header=("Figure 5", "R101", "'cascade + train aug', random init"), paper="figure only",
        **R101, roi_heads="cascade", **LAST_270K_OF_9X, **TRAIN_AUG, freeze_at=0, pretrained=False),
    "r101_pretrain_cascade_6x_train_aug.gin": dict(
        header=("Figure 5", "R101", "'cascade + train aug', w/ ImageNet pre-training"), paper="figure only",
        **R101, roi_heads="cascade", **NX[6], **TRAIN_AUG, **PRETRAINED),
    "scratch_cascade_9x_train_aug.gin + test aug": dict(
        file="scratch_cascade_9x_train_aug.gin", bindings=TEST_AUG, header=("'+ test aug'", "41.6 mask AP"),
        paper="41.6", roi_heads="cascade", **LAST_270K_OF_9X, **TRAIN_AUG, freeze_at=0, pretrained=False,
        tta=True),
    "pretrain_cascade_6x_train_aug.gin + test aug": dict(
        file="pretrain_cascade_6x_train_aug.gin", bindings=TEST_AUG, header=("'+ test aug'", "40.9 mask AP"),
        paper="40.9", roi_heads="cascade", **NX[6], **TRAIN_AUG, **PRETRAINED, tta=True),
    "r101_scratch_cascade_9x_train_aug.gin + test aug": dict(
        file="r101_scratch_cascade_9x_train_aug.gin", bindings=TEST_AUG, header=("'+ test aug'", "42.5 mask AP"),
        paper="42.5", **R101, roi_heads="cascade", **LAST_270K_OF_9X, **TRAIN_AUG, freeze_at=0,
        pretrained=False, tta=True),
    "r101_pretrain_cascade_6x_train_aug.gin + test aug": dict(
        file="r101_pretrain_cascade_6x_train_aug.gin", bindings=TEST_AUG, header=("'+ test aug'", "41.9 mask AP"),
        paper="41.9", **R101, roi_heads="cascade", **NX[6], **TRAIN_AUG, **PRETRAINED, tta=True),
    # Section 5.1, "Models without BN/GN - VGG nets": Faster R-CNN, no FPN, no norm, LR 0.02, decay 0.1.
    "vgg16_scratch_11x.gin": dict(
        header=("VGG-16 Faster R-CNN", "random init, 11x", "35.2 box AP"), paper="35.2",
        **VGG16, **NX[11], **SCRATCH),
    "vgg16_pretrain_9x.gin": dict(
        header=("VGG-16 Faster R-CNN", "w/ ImageNet pre-training, 9x", "35.6 box AP"), paper="35.6",
        **VGG16, **NX[9], **PRETRAINED),
    # Section 5.2, Figures 7 and 8: subsets of train2017 with footnote 2's recipe. Lengths: 6x (35k,
    # the pre-trained optimum), 60k pre-trained / 220k from scratch (10k; 3.5k and 1k: the paper gives none).
    "pretrain_2x.gin + 35k images": dict(
        file="pretrain_2x.gin", bindings=("train/CocoSource.subset_size = 35000",),
        header=("Figure 7 (left)", "subset_size = 35000"), paper="overfits", subset_size=35_000,
        **NX[2], **NO_AUG, **PRETRAINED),
    "coco35k_pretrain_6x.gin": dict(
        header=("Figure 7 (middle)", "35k", "w/ ImageNet pre-training, 6x", "36.3 box AP"), paper="36.3",
        subset_size=35_000, **SMALL_DATA, **NX[6], **PRETRAINED),
    "coco35k_scratch_6x.gin": dict(
        header=("Figure 7 (middle)", "35k", "random init, 6x", "36.3 box AP"), paper="36.3",
        subset_size=35_000, **SMALL_DATA, **NX[6], **SCRATCH),
    **{f"coco{name}_pretrain_60k.gin": dict(
        header=(where, "w/ ImageNet pre-training, 60k iterations", f"{ap} box AP"), paper=ap,
        subset_size=size, **SMALL_DATA, total_steps=60_000, boundaries=(40_000, 53_333), **PRETRAINED)
       for name, size, where, ap in (("10k", 10_000, "Figure 7 (right)", "26.0"),
                                     ("3500", 3_500, "3.5k COCO images", "16.0"),
                                     ("1k", 1_000, "Figure 8", "9.9"))},
    **{f"coco{name}_scratch_220k.gin": dict(
        header=(where, "random init, 220k iterations", f"{ap} box AP"), paper=ap,
        subset_size=size, **SMALL_DATA, total_steps=220_000, boundaries=(160_000, 200_000), **SCRATCH)
       for name, size, where, ap in (("10k", 10_000, "Figure 7 (right)", "25.9"),
                                     ("3500", 3_500, "3.5k COCO images", "9.3"),
                                     ("1k", 1_000, "Figure 8", "3.5"))},
    # Section 5, "Breakdown regime: PASCAL VOC": R101-FPN GN Faster R-CNN (no masks), 'only training-time
    # augmentation', VOC2007 trainval + VOC2012 train, VOC metric on VOC2012 val. 18k pre-trained (steps of
    # detectron2's 18k VOC config), 144k from scratch (the paper's total - 60k / total - 20k rule).
    "voc_pretrain_18k.gin": dict(
        header=("PASCAL VOC", "w/ ImageNet pre-training", "18k iterations", "82.7 mAP", "VOC2012 val"),
        paper="82.7", depth=101, mask=False, metric="voc", total_steps=18_000, boundaries=(12_000, 16_000),
        train_short_side=(640, 800), freeze_at=2, pretrained=True),
    "voc_scratch_144k.gin": dict(
        header=("PASCAL VOC", "random init", "144k iterations", "77.6 mAP", "VOC2012 val"),
        paper="77.6", depth=101, mask=False, metric="voc", total_steps=144_000, boundaries=(84_000, 124_000),
        train_short_side=(640, 800), freeze_at=0, pretrained=False),
    # Figure 6: Keypoint R-CNN (no mask head) on COCO person keypoints, 2x (3x by binding); training
    # scales 640..800 as Detectron's keypoint configs.
    "keypoint_scratch_2x.gin": dict(
        header=("Figure 6", "keypoint", "random init, 2x", "65.6 keypoint AP", "schedule_multiplier = N"),
        paper="65.6", mask=False, keypoints=True, **NX[2], train_short_side=(640, 800), **SCRATCH),
    "keypoint_pretrain_2x.gin": dict(
        header=("Figure 6", "keypoint", "w/ ImageNet pre-training, 2x", "65.5 keypoint AP",
                "schedule_multiplier = N"),
        paper="65.5", mask=False, keypoints=True, **NX[2], train_short_side=(640, 800), **PRETRAINED),
}


def _schedule_rows(file, numbers, **recipe):
    """The rows of one file run at other Nx by binding paper_schedule.schedule_multiplier (Table 1)."""
    base = PAPER_ROWS[file]
    return {f"{file} @ {n}x": dict(
        {k: v for k, v in base.items() if k != "header"}, file=file,
        bindings=(f"paper_schedule.schedule_multiplier = {n}",),
        header=("schedule_multiplier = N",), paper=paper, **NX[n], **recipe)
        for n, paper in numbers.items()}


PAPER_ROWS.update({
    **_schedule_rows("scratch_6x.gin", {2: "36.8", 3: "39.5", 4: "40.6", 5: "40.7"}),
    **_schedule_rows("pretrain_2x.gin", {3: "40.8", 4: "40.9", 5: "40.9", 6: "41.1"}),
    **_schedule_rows("r101_scratch_6x.gin", {2: "38.2", 3: "41.0", 4: "41.8", 5: "42.2"}),
    **_schedule_rows("r101_pretrain_2x.gin", {3: "42.3", 4: "42.3", 5: "41.9", 6: "42.2"}),
    **_schedule_rows("syncbn_scratch_6x.gin", {n: "figure only" for n in (2, 3, 4, 5)}),
    **_schedule_rows("syncbn_pretrain_6x.gin", {n: "figure only" for n in (2, 3, 4, 5)}),
    **_schedule_rows("keypoint_scratch_2x.gin", {3: "figure only"}),
    **_schedule_rows("keypoint_pretrain_2x.gin", {3: "figure only"}),
})
# The README's command of a row: training, or the evaluation with test-time augmentation.
for _row in PAPER_ROWS.values():
    _row.setdefault("bindings", ())


def _file(row_id):
    return PAPER_ROWS[row_id].get("file", row_id)


def _operative(fn, param, scope=None):
    """The value `fn` gets for `param` (in gin `scope`): scoped binding, unscoped binding, else default."""
    name = fn.__name__
    for selector in ([f"{scope}/{name}.{param}"] if scope else []) + [f"{name}.{param}"]:
        try:
            value = gin.query_parameter(selector)
        except ValueError:
            continue
        if isinstance(value, gin.config.ConfigurableReference) and value.configurable.name == "macro":
            value = gin.query_parameter(f"%{value.scopes[-1]}")
        return value
    target = fn.__init__ if inspect.isclass(fn) else fn
    return inspect.signature(target).parameters[param].default


def _recipe(path, bindings=()):
    """The operative recipe of one experiment file run with `bindings`, in the units of PAPER_ROWS."""
    from rethink_tf.data.input_pipeline import build_dataset
    from rethink_tf.data.sources import CocoSource
    from rethink_tf.modeling.backbones.builder import build_backbone
    from rethink_tf.modeling.factory import build_model
    from rethink_tf.modeling.heads.box_head import conv_fc_box_head, fc_box_head
    from rethink_tf.modeling.norm import build_norm
    from rethink_tf.modeling.rpn import build_rpn
    from rethink_tf.modeling.tta import TestTimeAugmentation
    from rethink_tf.training import experiment, optimizer, schedule, trainer

    gin.clear_config()
    try:
        config.parse([str(path)], list(bindings), finalize=False)
        batch = _operative(experiment.experiment, "global_batch_size")
        spec = schedule.paper_schedule(global_batch_size=batch)
        recipe = dict(
            global_batch_size=batch, base_lr=spec.base_lr, decay_factor=spec.decay_factor,
            warmup_steps=spec.warmup_steps, warmup_factor=spec.warmup_factor,
            total_steps=spec.total_steps, boundaries=spec.boundaries,
            train_short_side=tuple(_operative(build_dataset, "train_short_side", "train")),
            eval_short_side=_operative(build_dataset, "eval_short_side", "eval"),
            pretrained=bool(_operative(experiment.experiment, "backbone_weights")),
            init_checkpoint=bool(_operative(experiment.experiment, "init_checkpoint")),
            gn_groups=_operative(build_norm, "gn_groups"),
            weight_decay=_operative(trainer.Trainer, "weight_decay"),
            momentum=_operative(optimizer.build_optimizer, "momentum"),
            subset_size=_operative(CocoSource, "subset_size", "train"),
            tta=_operative(experiment.evaluate_checkpoint, "tta"))
        for param in ("short_side_step", "max_size", "flip_prob", "divide_by_std"):
            recipe[param] = _operative(build_dataset, param, "train")
        for param in ("backbone", "norm", "box_head", "mask", "keypoints", "roi_heads"):
            recipe[param] = _operative(build_model, param)
        for param in ("depth", "groups", "width_per_group", "freeze_at"):
            recipe[param] = _operative(build_backbone, param)
        vgg = recipe["backbone"] == "vgg16"
        if vgg:  # ResNet shape parameters do not apply to the VGG-16 body
            recipe.update(depth=None, groups=None, width_per_group=None)
        if recipe["norm"] != "gn":
            recipe["gn_groups"] = None
        head = fc_box_head if recipe["box_head"] == "2fc" else conv_fc_box_head
        recipe["box_fc_dim"] = _operative(head, "fc_dim") or (4096 if vgg else 1024)  # build_model's default
        recipe["box_fc_init"] = _operative(fc_box_head, "kernel_init") if recipe["box_head"] == "2fc" else None
        recipe["rpn_topk"] = tuple(_operative(build_rpn, f"{when}_nms_topk_{split}")
                                   for split in ("train", "test") for when in ("pre", "post"))
        recipe["vgg16_fc_from_weights"] = _operative(experiment.experiment, "vgg16_fc_from_weights")
        for param in ("scales", "max_size", "flip", "merge"):
            value = _operative(TestTimeAugmentation, param)
            recipe[f"tta_{param}"] = tuple(value) if param == "scales" else value
        recipe["metric"] = _operative(experiment.build_evaluator, "metric")
        for param in ("bias_lr_factor", "bias_weight_decay"):
            recipe[param] = _operative(optimizer.parameter_groups, param)
        header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
        return recipe, header
    finally:
        gin.clear_config()


def test_every_paper_config_is_in_the_table():
    assert {p.name for p in EXPERIMENTS} - CPU_CONFIGS == {_file(r) for r in PAPER_ROWS}


@pytest.mark.parametrize("row", sorted(PAPER_ROWS))
def test_config_recipe_is_the_papers_row(row):
    expected = {**COMMON, **PAPER_ROWS[row]}
    expected_header = expected.pop("header")
    name, bindings = expected.pop("file", row), expected.pop("bindings")
    expected.pop("paper")
    recipe, header = _recipe(REPO / "gin_configs" / name, bindings)
    assert recipe.keys() == expected.keys()
    wrong = {k: (recipe[k], expected[k]) for k in expected if not _same(recipe[k], expected[k])}
    assert not wrong, f"{row}: (operative, paper) = {wrong}"
    first = header.splitlines()[0]
    assert first.startswith("# Paper row:"), first
    for part in expected_header:
        assert part in " ".join(header.replace("#", " ").split()), (name, part)


def _same(a, b):
    if isinstance(b, float):
        return isinstance(a, (int, float)) and not isinstance(a, bool) and abs(a - b) <= 1e-9 * abs(b)
    return type(a) is type(b) and a == b


def _readme_rows():
    """gin_configs/README.md's table lines (those that start with '|')."""
    return [line for line in (REPO / "gin_configs" / "README.md").read_text().splitlines() if line.startswith("|")]


@pytest.mark.parametrize("row", sorted(PAPER_ROWS))
def test_readme_lists_the_row_with_its_command_and_number(row):
    """One line of gin_configs/README.md's table names the row's file, its bindings (or --tta for the test
    aug rows, an evaluation command) and the paper's number."""
    spec = PAPER_ROWS[row]
    file, bindings = _file(row), [b for b in spec["bindings"] if b not in TEST_AUG]
    needles = [f"gin_configs/{file}", *bindings, spec["paper"]] + (["--tta"] if spec.get("tta") else [])
    lines = [line for line in _readme_rows() if all(n in line for n in needles)]
    assert lines, f"{row}: no line of gin_configs/README.md holds all of {needles}"


def test_pretrain_arm_freezes_stem_and_res2_with_their_gn():
    """freeze_at of pretrain_2x.gin on a narrow ResNet: stem + res2 (conv kernels and GN gamma/beta) get no
    updates, res3-res5 train everything; Detectron stops the gradient at res2's output."""
    from rethink_tf.modeling.backbones.resnet import ResNet

    recipe, _ = _recipe(REPO / "gin_configs" / "pretrain_2x.gin")
    net = ResNet(norm=recipe["norm"], base_width=8, freeze_at=recipe["freeze_at"], blocks_per_stage=(1, 1, 1, 1))
    net(np.zeros((1, 32, 32, 3), "float32"))
    frozen = {v.path for v in net.weights} - {v.path for v in net.trainable_weights}
    early = {v.path for v in net.weights if "/stem/" in v.path or "/res2_" in v.path}
    assert frozen == early and any(p.endswith("gamma") for p in early) and any(p.endswith("beta") for p in early)
    assert any("/res3_" in v.path and v.path.endswith("beta") for v in net.trainable_weights)


def test_build_dataset_trains_at_a_fixed_800_by_default():
    """No scale augmentation unless bound: with build_dataset's defaults every training image is resized so
    its shorter side is 800 (longer side <= 1333), the paper's baseline setting."""
    from rethink_tf.data.input_pipeline import build_dataset
    from rethink_tf.data.sources import CocoSource

    root = REPO.parent / "shared" / "data" / "coco128"
    if not root.is_dir():
        pytest.skip(f"real COCO data not found at {root}")
    src = CocoSource(root / "annotations" / "instances_train2017.json", root / "train2017")
    src.image_ids = src.image_ids[:8]
    batch = next(iter(build_dataset(src, training=True, global_batch_size=8, seed=0, mask_crop_size=28)))
    for (orig_h, orig_w), (h, w) in batch["image_info"].numpy()[:, :2]:
        scale = min(800 / min(orig_h, orig_w), 1333 / max(orig_h, orig_w))
        assert abs(min(h, w) - min(orig_h, orig_w) * scale) <= 1, ((orig_h, orig_w), (h, w))


def test_scratch_6x_without_coco_fails_at_start_up_saying_where_and_how(tmp_path):
    missing = tmp_path / "no_coco_here"
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "rethink_tf.train", f"--gin_file={REPO / 'gin_configs' / 'scratch_6x.gin'}",
         f"--gin_bindings=COCO_DIR = '{missing}'", f"--model_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{missing}/annotations/instances_train2017.json" in proc.stderr
    assert "COCO_DIR" in proc.stderr and "cocodataset.org" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.time() - start < 120


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_file_parses(path):
    gin.clear_config()
    try:
        config.parse([str(path)], [], finalize=False)
        assert gin.query_parameter("experiment.train_source") is not None
    finally:
        gin.clear_config()


# Narrow widths over any experiment file (the structure stays: depth's block kind, groups, norm kind, heads).
TINY_WIDTHS = (
    "build_backbone.base_width = 8", "build_backbone.blocks_per_stage = (1, 1, 1, 1)",
    "build_backbone.vgg_width_multiplier = 0.0625", "build_fpn.num_channels = 16",
    "conv_fc_box_head.conv_dim = 8", "conv_fc_box_head.fc_dim = 32", "fc_box_head.fc_dim = 32",
    "build_mask_branch.conv_dim = 8", "build_rpn.pre_nms_topk_test = 50", "build_rpn.post_nms_topk_test = 20")


def _tiny_model(path):
    """(recipe, the file's model built through gin as `experiment` builds it, narrow widths bound on top)."""
    from rethink_tf.modeling.factory import build_model

    recipe, _ = _recipe(path)
    tiny = list(TINY_WIDTHS) + (["build_backbone.width_per_group = 1"] if (recipe["groups"] or 1) > 1 else [])
    gin.clear_config()
    try:
        config.parse([str(path)], tiny, finalize=False)
        return recipe, build_model(num_classes=3)
    finally:
        gin.clear_config()


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_builds_its_model_at_a_tiny_width(path):
    """The file's model at a narrow width has the recipe's parts: body kind, norm kind in every part, box
    stages, mask branch, frozen early layers exactly when freeze_at > 0. Construction runs every builder's
    checks; the variables are created in the slow test below (tracing costs seconds per model)."""
    import keras

    from rethink_tf.modeling.backbones.vgg import VGG16
    from rethink_tf.modeling.norm import GroupNorm

    recipe, model = _tiny_model(path)
    layers = list(model._flatten_layers(include_self=False))
    norms = {"gn": sum(isinstance(x, GroupNorm) for x in layers),
             "syncbn": sum(isinstance(x, keras.layers.BatchNormalization) and x.synchronized for x in layers),
             "bn": sum(isinstance(x, keras.layers.BatchNormalization) and not x.synchronized for x in layers)}
    if recipe["norm"] in norms:
        assert norms[recipe["norm"]] > 0 and sum(norms.values()) == norms[recipe["norm"]], norms
    else:
        assert sum(norms.values()) == 0, norms
    assert isinstance(model.backbone, VGG16) == (recipe["backbone"] == "vgg16")
    assert model.fpn is None if recipe["backbone"] == "vgg16" else model.fpn is not None
    assert len(model.roi_heads.box_stages) == (3 if recipe["roi_heads"] == "cascade" else 1)
    assert ("mask" in model.roi_heads.branches) == recipe["mask"]
    frozen = [x.name for x in model.backbone._flatten_layers(include_self=False) if not x.trainable]
    assert bool(frozen) == (recipe["freeze_at"] > 0), (frozen, recipe["freeze_at"])


def _structures():
    """One experiment file per distinct model structure (body, norm, RoI heads, mask, grouped convs, frozen)."""
    seen = {}
    for path in EXPERIMENTS:
        recipe, _ = _recipe(path)
        key = tuple(recipe[k] for k in ("backbone", "norm", "roi_heads", "mask", "groups", "freeze_at", "box_head"))
        seen.setdefault(key, path)
    return sorted(seen.values())


@pytest.mark.slow
def test_every_model_structure_creates_its_variables_at_a_tiny_width():
    """build_networks (every variable, one pass on zeros) for one file of each distinct structure; about
    3-8 s of tracing per ResNet model on a loaded 2-core machine, hence slow."""
    for path in _structures():
        recipe, model = _tiny_model(path)
        model.build_networks(image_size=64)
        assert model.backbone.weights and model.roi_heads.weights, path.name
        frozen = len(model.backbone.weights) - len(model.backbone.trainable_weights)
        moving = sum("moving_" in v.path for v in model.backbone.weights)  # BN statistics: never trainable
        assert (frozen > moving) == (recipe["freeze_at"] > 0), (path.name, frozen, moving)
