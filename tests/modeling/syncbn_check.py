"""Run as a script (needs a fresh process to split the CPU into 2 logical devices).

Builds the same small conv+norm stack twice: norm="syncbn" under a MirroredStrategy over 2 logical
CPUs (per-replica batch 2) and norm="bn" on one device (batch 4, the global batch). Prints one JSON
line with the max abs differences of the outputs and of the moving statistics after 3 steps.
"""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from rethink_tf.modeling.backbones.resnet import ResNet  # noqa: E402


def build(norm):
    net = ResNet(norm=norm, base_width=8, blocks_per_stage=(1, 1, 1, 1), name="net")
    net(np.zeros((1, 32, 32, 3), "float32"), training=False)
    return net


def main():
    rng = np.random.default_rng(0)
    steps = [rng.normal(size=(4, 32, 32, 3)).astype("float32") * 2 + 0.5 for _ in range(3)]
    keras.utils.set_random_seed(1)
    reference = build("bn")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        synced = build("syncbn")
        unsynced = build("bn")  # negative control: per-replica statistics must differ
    for a, b, c in zip(synced.weights, reference.weights, unsynced.weights):
        a.assign(b.numpy())
        c.assign(b.numpy())

    def run_distributed(net, x):
        dist = strategy.experimental_distribute_values_from_function(
            lambda ctx: x[ctx.replica_id_in_sync_group * 2:(ctx.replica_id_in_sync_group + 1) * 2])
        per_replica = strategy.run(tf.function(lambda t: net(t, training=True)[5]), args=(dist,))
        return np.concatenate([t.numpy() for t in strategy.experimental_local_results(per_replica)])

    ref_out = sync_out = None
    for x in steps:
        ref_out = reference(x, training=True)[5].numpy()
        sync_out = run_distributed(synced, x)
    # Outputs in training mode depend on batch statistics and gamma/beta only (unchanged here).
    unsynced_out = run_distributed(unsynced, steps[0])
    stats = [(a.path, np.abs(a.numpy() - b.numpy()).max())
             for a, b in zip(synced.weights, reference.weights) if "moving" in a.path]
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "num_moving_stats": len(stats),
        "output_max_abs_diff": float(np.abs(sync_out - ref_out).max()),
        "output_scale": float(np.abs(ref_out).max()),
        "unsynced_output_max_abs_diff": float(np.abs(unsynced_out - reference(steps[0], training=True)[5].numpy()).max()),
        "moving_stats_max_abs_diff": float(max(d for _, d in stats)),
        "moving_stats_changed": float(max(np.abs(b.numpy() - (1.0 if "variance" in b.path else 0.0)).max()
                                          for b in reference.weights if "moving" in b.path)),
    }))


if __name__ == "__main__":
    main()
