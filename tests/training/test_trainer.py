"""The custom loop on the default strategy: resume continues the same curve, NaN guard, summaries, eval hook."""

import os

import numpy as np
import pytest

import toy_train_script as script
import training_toys as toys
from rethink_tf.training import summaries, trainer as trainer_lib


def _trainer(model_dir, total_steps, dataset_fn=None, **kw):
    from rethink_tf.training import distribute
    kw.setdefault("checkpoint_every", 4)
    return script.make_trainer(str(model_dir), distribute.get_strategy("default"), "gn",
                               dataset_fn or (lambda ctx: toys.toy_dataset(ctx, 4)), total_steps, 4, **kw)



def _record_total_losses(trainer):
    """Wraps the trainer's step so each step's summed loss lands in the returned {step: loss} dict."""
    losses = {}
    step_fn = trainer._build_train_step()

    def logged(batch):
        out = step_fn(batch)
        losses[trainer.step] = float(sum(v.numpy() for v in out.values()))
        return out

    trainer._train_step = logged
    return losses


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    import time
    d = tmp_path_factory.mktemp("full")
    t = _trainer(d, 12)
    t.restore_or_initialize()
    losses = _record_total_losses(t)
    start = time.perf_counter()
    t.train()
    t.measured_train_seconds = time.perf_counter() - start
    return d, losses, t


def test_resume_continues_the_loss_curve(tmp_path, uninterrupted):
    _, reference, _ = uninterrupted
    first = _trainer(tmp_path, 12)
    first.train(max_steps=8)  # checkpoints at 4 and 8
    assert first.step == 8
    resumed = _trainer(tmp_path, 12)
    assert resumed.restore_or_initialize() == 8
    losses = _record_total_losses(resumed)
    resumed.train()
    assert sorted(losses) == [9, 10, 11, 12]
    np.testing.assert_allclose([losses[s] for s in range(9, 13)], [reference[s] for s in range(9, 13)], rtol=1e-5)
    np.testing.assert_allclose(float(resumed.lr_schedule(8)), float(uninterrupted[2].lr_schedule(8)))
    # Figure 2 counters are part of the state: 12 steps x 4 images.
    assert float(resumed.samples["images"].numpy()) == 48


def test_summaries_and_progress(uninterrupted):
    model_dir, _, t = uninterrupted
    scalars = summaries.read_scalars(os.path.join(model_dir, "train"))
    for tag in ("loss/toy_box", "loss/toy_class", "loss/total", "learning_rate", "images_per_sec",
                "samples_seen/images", "samples_seen/instances", "samples_seen/pixels"):
        assert tag in scalars, tag
    assert [s for s, _ in scalars["samples_seen/images"]] == [5, 10, 12]
    assert scalars["samples_seen/images"][-1][1] == 48
    assert scalars["samples_seen/instances"][-1][1] == 48  # one instance per toy image
    assert scalars["samples_seen/pixels"][-1][1] == 48 * toys.CANVAS ** 2
    line = trainer_lib.format_progress(10, 100, {"a": 1.0, "b": 0.5}, 0.02, 12.5, 3725)
    assert line == "step 10/100 (10.0%) | loss 1.5000 [a 1.0000 b 0.5000] | lr 0.02 | 12.5 img/s | ETA 1h02m"
    # The progress line's losses are medians over the logging window (one bad batch does not make it).
    terms, total = trainer_lib.window_medians([{"a": 1.0, "b": 0.1}, {"a": 9.0, "b": 0.2}, {"a": 2.0, "b": 0.3}])
    assert terms == {"a": 2.0, "b": 0.2} and total == pytest.approx(2.3)
    # The operative gin config (as a code block) and the run's hyper-parameters, written at step 1.
    texts = summaries.read_texts(os.path.join(model_dir, "train"))
    assert [step for step, _ in texts["config/operative_gin"]] == [1]
    config_text = texts["config/operative_gin"][0][1]
    assert config_text.startswith("```\n") and "Trainer.weight_decay = 0.0001" in config_text
    hparams = summaries.read_hparams(os.path.join(model_dir, "train"))
    assert hparams["global_batch_size"] == 4 and hparams["total_steps"] == 12
    assert hparams["strategy"] == "_DefaultDistributionStrategy" and hparams["mixed_precision"] == "float32"


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    t = _trainer(tmp_path, 20, dataset_fn=lambda ctx: toys.poison_from(toys.toy_dataset(ctx, 4), 6))
    with pytest.raises(trainer_lib.NonFiniteLossError) as err:
        t.train()
    message = str(err.value)
    assert "step 7" in message and "toy_class=nan" in message and "toy_box=" in message
    assert os.path.basename(t._checkpointer.latest()) == "ckpt-4"


def test_eval_hook_writes_metrics_and_images(tmp_path):
    calls = []

    def eval_fn(step, samples):
        calls.append((step, samples["images"]))
        return {"bbox/AP": 12.5}, {"eval/predictions": np.zeros((2, 8, 8, 3), np.uint8)}

    t = _trainer(tmp_path, 6, eval_fn=eval_fn, eval_every=4)
    t.train()
    assert calls == [(4, 16.0), (6, 24.0)]
    assert summaries.read_scalars(os.path.join(tmp_path, "eval"))["bbox/AP"] == [(4, 12.5), (6, 12.5)]
    assert summaries.read_image_tags(os.path.join(tmp_path, "eval")) == ["eval/predictions"] * 2


@pytest.mark.parametrize("policy,jit", [("mixed_bfloat16", True), ("mixed_float16", False)])
def test_mixed_precision_and_xla_switches(tmp_path, policy, jit):
    import keras
    try:
        t = _trainer(tmp_path, 3, mixed_precision=policy, jit_compile=jit)
        losses = t.train()
        assert t.model.conv1.compute_dtype == policy.split("_")[1]
        assert t.model.conv1.kernel.dtype == "float32"  # variables stay float32
        assert t.step == 3 and all(np.isfinite(v) for v in losses.values())
        if policy == "mixed_float16":
            assert isinstance(t.optimizer, keras.optimizers.LossScaleOptimizer)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_untracked_model_variables_are_refused(tmp_path):
    import keras

    from rethink_tf.training import checkpointing

    model = toys.ToyDetector("gn")
    model(toys.fixed_batch(2), training=True)
    hidden = keras.Variable(np.zeros(3, np.float32), name="hidden")
    checkpointer = checkpointing.ModelCheckpointer(str(tmp_path), {"model": model})
    checkpointer.check_tracked(model.weights)
    with pytest.raises(ValueError, match="not tracked"):
        checkpointer.check_tracked(model.weights + [hidden])


class _ListModel(toys.ToyDetector):
    """The toy with extra layers held in a list and an int-keyed dict (as the real backbone/FPN do)."""

    def __init__(self):
        super().__init__("syncbn")
        import keras
        self.extra = [keras.layers.Dense(8, name="extra0"), keras.layers.Dense(8, name="extra1")]
        self.by_level = {2: keras.layers.Dense(8, name="level2")}

    def features(self, images, training):
        f = super().features(images, training)
        for layer in self.extra + [self.by_level[2]]:
            f = layer(f)
        return f


def test_checkpoint_restores_layers_held_in_lists_and_dicts(tmp_path):
    import keras

    from rethink_tf.training import checkpointing

    keras.utils.set_random_seed(1)
    trained = _ListModel()
    trained(toys.fixed_batch(2), training=True)
    path = checkpointing.ModelCheckpointer(str(tmp_path), {
        "model_variables": checkpointing.model_trackable(trained)}).save(7)
    keras.utils.set_random_seed(2)
    fresh = _ListModel()
    fresh(toys.fixed_batch(2), training=False)
    assert not np.allclose(fresh.extra[0].kernel, trained.extra[0].kernel)
    checkpointing.restore_model_weights(fresh, path)
    assert len(fresh.weights) == 20
    for a, b in zip(fresh.weights, trained.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    with pytest.raises(ValueError, match="lacks"):
        checkpointing.restore_model_weights(_built_gn_toy(), path)


def _built_gn_toy():
    m = toys.ToyDetector("gn", width=16)
    m(toys.fixed_batch(2), training=False)
    return m


def test_wall_time_split_by_phase(uninterrupted):
    from rethink_tf.training import run_summary
    _, _, t = uninterrupted
    seconds = t.phase_seconds
    assert set(seconds) == set(trainer_lib.LOOP_PHASES)
    # Laps cover the loop: the phases add up to train()'s wall time (setup before the loop aside).
    assert sum(seconds.values()) == pytest.approx(t.measured_train_seconds, abs=0.05)
    assert seconds["first_step"] > 0 and seconds["step"] > 0 and seconds["checkpoint"] > 0  # saves at 4, 8, 12
    assert seconds["evaluation"] == 0  # the toy task has none
    share = trainer_lib.step_share(seconds)
    steady = sum(seconds.values()) - seconds["first_step"]
    assert share == pytest.approx(seconds["step"] / steady)
    line = run_summary.time_split({"first_step": 9.0, "step": 90.0, "input": 1.0, "checkpoint": 4.0,
                                   "evaluation": 30.0, "other": 5.0})
    assert line == "step 90.0%, input 1.0%, checkpoint 4.0%, other 5.0% of 1m40s; first step 0m09s, evaluation 0m30s"
