"""The README's "Your own dataset" block, run against ../shared/data/coco_mini as the user's directory."""
import os
import re

import gin

from rethink_tf.training import config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COCO_MINI = os.path.join(os.path.dirname(REPO), "shared", "data", "coco_mini")


def _readme_block():
    text = open(os.path.join(REPO, "README.md")).read()
    block = re.search(r"<!-- own-dataset-begin -->\s*```\n(.*?)```\s*<!-- own-dataset-end -->", text, re.S)
    assert block, "README.md lost its own-dataset block"
    return block.group(1)


def test_readme_own_dataset_block_builds_both_sources(tmp_path):
    block = _readme_block()
    # coco_mini's files carry COCO's names; everything else is the README's text as is.
    for old, new in (("/path/to/my_dataset", COCO_MINI), ("instances_train.json", "instances_train2017.json"),
                     ("instances_val.json", "instances_val2017.json"), ('"train"', '"train2017"'),
                     ('"val"', '"val2017"')):
        assert old in block, old
        block = block.replace(old, new)
    path = tmp_path / "my_dataset.gin"
    path.write_text(block)
    try:
        config.parse([str(path)], [], finalize=False)
        train = gin.query_parameter("experiment.train_source").scoped_configurable_fn()
        evaluation = gin.query_parameter("experiment.eval_source").scoped_configurable_fn()
    finally:
        gin.clear_config()
    assert (train.name, evaluation.name) == ("mine_train", "mine_val")
    assert train.num_classes == 80 and train.categories == evaluation.categories
    assert len(train.image_ids) > 0 and len(evaluation.image_ids) > 0
