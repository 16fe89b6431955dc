"""Issue 8.6: configurable arguments wrong in kind or range stop the run up front, naming the binding.

Before: `build_model.depth = "fifty"` (now `build_backbone.depth`) trained (ignored when blocks_per_stage is set), `base_width = "16"`
crashed inside Keras, LR boundaries past total_steps silently meant no decay, and `--model_dir` naming a
file raised FileExistsError with a traceback.
"""

import gin
import pytest

from rethink_tf.training import config
from rethink_tf.training.config import ConfigError

from .coco_faults import coco128_subset, run_train

QUICK_MODEL = ["build_backbone.blocks_per_stage = (1, 1, 1, 1)", "build_backbone.base_width = 16"]


def _call(target):
    from rethink_tf.data.input_pipeline import build_dataset
    from rethink_tf.data.sources import CocoSource
    from rethink_tf.modeling.factory import build_model
    from rethink_tf.modeling.norm import build_norm
    from rethink_tf.training import distribute, optimizer, schedule, trainer

    calls = {
        "build_model": lambda: build_model(num_classes=3),
        "paper_schedule": lambda: schedule.paper_schedule(global_batch_size=8),
        "build_dataset": lambda: build_dataset(None, training=True, global_batch_size=2),
        "CocoSource": lambda: CocoSource("ann.json", "images"),
        "build_norm": lambda: build_norm("gn"),
        "get_strategy": lambda: distribute.get_strategy(),
        "build_optimizer": lambda: optimizer.build_optimizer(0.1),
        "Trainer": lambda: trainer.Trainer("unused", None, None, None, 8),
    }
    return calls[target]()


@pytest.fixture()
def clean_gin():
    config.import_configurables()
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.mark.parametrize("target,bindings,message", [
    # the cases
    ("build_model", QUICK_MODEL + ['build_backbone.depth = "fifty"'],
     "build_backbone.depth = 'fifty': expected one of (50, 101, 152)"),
    ("build_model", ['build_backbone.base_width = "16"'],
     "build_backbone.base_width = '16': expected an integer >= 1"),
    ("paper_schedule", ["paper_schedule.total_steps = 2000", "paper_schedule.boundaries = (1600, 2500)"],
     "paper_schedule.boundaries = (1600, 2500): expected steps < total_steps = 2000"),
    # the same kind of mistake in the other configurables
    ("paper_schedule", ["paper_schedule.boundaries = (900, 800)", "paper_schedule.total_steps = 2000"],
     "paper_schedule.boundaries = (900, 800): expected a strictly increasing sequence"),
    ("paper_schedule", ['paper_schedule.base_lr = "0.02"'], "paper_schedule.base_lr = '0.02': expected a finite"),
    ("build_model", ["build_rpn.bg_iou = 0.8"], "build_rpn.bg_iou = 0.8: expected <= build_rpn.fg_iou"),
    ("build_model", ["build_rpn.pre_nms_topk_train = 0"], "build_rpn.pre_nms_topk_train = 0: expected an integer"),
    ("build_model", ["conv_fc_box_head.conv_dim = 0"], "conv_fc_box_head.conv_dim = 0: expected an integer"),
    ("build_model", ["roi_sampling.positive_fraction = 0.0"], "roi_sampling.positive_fraction = 0.0: expected"),
    ("build_model", ["build_mask_branch.num_convs = -1"], "build_mask_branch.num_convs = -1: expected"),
    ("build_model", ["build_postprocessor.nms_iou = 2"], "build_postprocessor.nms_iou = 2: expected"),
    ("build_model", ["build_model.roi_heads = 'cascade'", "cascade_roi_heads.stage_ious = (0.6, 0.5)"],
     "cascade_roi_heads.stage_ious = (0.6, 0.5): expected at least 2 increasing"),
    ("build_model", ['build_model.box_head = "3fc"'], "build_model.box_head = '3fc': expected one of"),
    ("build_dataset", ["build_dataset.max_instances = 10.5"],
     "build_dataset.max_instances = 10.5: expected an integer"),
    ("CocoSource", ["CocoSource.subset_size = -3"], "CocoSource.subset_size = -3: expected an integer >= 1"),
    ("build_norm", ['build_norm.gn_groups = "8"'], "build_norm.gn_groups = '8': expected an integer >= 1"),
    ("get_strategy", ["get_strategy.num_logical_cpus = 1.5"], "get_strategy.num_logical_cpus = 1.5"),
    ("build_optimizer", ["build_optimizer.momentum = 1.5"], "build_optimizer.momentum = 1.5: expected a finite"),
    ("Trainer", ['Trainer.checkpoint_every = "500"'], "Trainer.checkpoint_every = '500': expected an integer >= 1"),
])
def test_wrong_kind_or_range_names_the_binding(clean_gin, target, bindings, message):
    gin.parse_config(bindings)
    with pytest.raises(ConfigError) as raised:
        _call(target)
    assert message in str(raised.value)


def test_wrong_kind_through_the_train_cli(tmp_path):
    """The issue's first case through the real CLI: exit 2, one line naming the binding, no traceback.

    The model and schedule bindings are checked right after parsing, before any data is read: the data
    directory here does not even exist, and the error is still the binding's.
    """
    proc = run_train(tmp_path, tmp_path / "no_data_here", 'build_backbone.depth = "fifty"')
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "build_backbone.depth = 'fifty': expected one of (50, 101, 152)" in errors[0]
    assert not (tmp_path / "run").exists()


def test_model_dir_naming_a_file(tmp_path):
    data = tmp_path / "data"
    coco128_subset(data, num_images=1)
    a_file = tmp_path / "not_a_dir"
    a_file.write_text("x")
    proc = run_train(tmp_path, data, model_dir=a_file)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"error: --model_dir={a_file} is an existing file, not a directory" in proc.stderr
    verbose = run_train(tmp_path, data, model_dir=a_file, flags=["--verbose"])
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr and "not a directory" in verbose.stderr
