"""`python -m rethink_tf.pretrain` killed with SIGKILL and started again with the same command continues the
uninterrupted run's loss curve step for step and writes the same backbone file and samples seen."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from PIL import Image

from rethink_tf.training import summaries

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 12  # 18 images at batch 3: 6 steps per epoch, 2 epochs, x0.1 at epoch 1


def _image_folders(root):
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 6), ("val", 2)):
        for c, color in enumerate(((220, 40, 40), (40, 220, 40), (40, 40, 220))):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                image = rng.integers(0, 60, size=(40, 40, 3)).astype(np.uint8)
                image[8:32, 8:32] = color
                Image.fromarray(image).save(folder / f"{i}.png")


def _command(model_dir, data_dir):
    bindings = [
        "pretrain.source = @ImageFolderSource()", f'ImageFolderSource.root = "{data_dir}"',
        "pretrain.global_batch_size = 3", "pretrain.eval_batch_size = 6",
        "classification_dataset.image_size = 32", "classification_dataset.eval_resize_size = 36",
        "build_backbone.blocks_per_stage = (1, 1, 1, 1)", "build_backbone.base_width = 8",
        "build_norm.gn_groups = 4", "imagenet_schedule.epochs = 2", "imagenet_schedule.decay_epochs = (1,)",
        "imagenet_schedule.warmup_epochs = 0.5", "Trainer.checkpoint_every = 4", "Trainer.summary_every = 1",
        "Trainer.log_every = 1", "Trainer.eval_every = 0", "Trainer.deterministic = True",
    ]
    return [sys.executable, "-m", "rethink_tf.pretrain", f"--gin_file={REPO}/gin_configs/classification/recipe.gin",
            "--gin_bindings=CLASSIFICATION_SOURCE = None", f"--model_dir={model_dir}",
            *[f"--gin_bindings={b}" for b in bindings]]


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    env.pop("TF_CONFIG", None)
    return env


def _backbone(model_dir):
    out = {}
    with h5py.File(os.path.join(model_dir, "backbone_weights.h5")) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.slow
def test_sigkill_then_restart_continues_the_classification_run(tmp_path):
    data = tmp_path / "data"
    _image_folders(data)
    reference, run = tmp_path / "reference", tmp_path / "run"
    done = subprocess.run(_command(reference, data), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    proc = subprocess.Popen(_command(run, data), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    try:
        while not (run / "ckpt-4.index").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "no checkpoint 4 within the time limit"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "backbone_weights.h5").exists()  # killed before the end
    restarted = subprocess.run(_command(run, data), env=_env(), capture_output=True, text=True, timeout=600)
    assert restarted.returncode == 0, restarted.stderr[-3000:]

    want = dict(summaries.read_scalars(str(reference / "train"))["loss/total"])
    assert sorted(want) == list(range(1, STEPS + 1))
    got = summaries.read_scalars(str(run / "train"))["loss/total"]
    assert {s for s, _ in got} == set(want)
    for step, value in got:  # steps logged before the kill and again after the restart both match
        assert value == want[step], (step, value, want[step])
    ref_weights, run_weights = _backbone(reference), _backbone(run)
    assert ref_weights.keys() == run_weights.keys()
    for key in ref_weights:
        np.testing.assert_array_equal(run_weights[key], ref_weights[key], err_msg=key)
    with open(run / "backbone_weights.h5.samples.json") as f:
        record = json.load(f)
    assert record["images"] == STEPS * 3 and record["pixels"] == STEPS * 3 * 32 * 32 and record["finished"]
    with open(run / "metrics.jsonl") as f:
        final = [json.loads(line) for line in f][-1]
    assert final["step"] == STEPS and final["num_eval_images"] == 6
    assert set(final["classification"]) == {"top1", "top5"} and final["classification"]["top5"] == 100.0
