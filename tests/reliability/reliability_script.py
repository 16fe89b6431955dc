"""Subprocess entry of the reliability tests: trains SamplingToy with the real Trainer.

Usage: python reliability_script.py MODEL_DIR --steps N [--kill_at K] [--deterministic]
Appends "step float.hex(total loss)" to MODEL_DIR/losses.txt after every step, SIGKILLs itself right after
logging step K (a real SIGKILL at a known step), and writes MODEL_DIR/final_weights.npz when it finishes.
"""

import argparse
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "training"), os.path.dirname(os.path.dirname(HERE))]

import numpy as np  # noqa: E402

import reliability_toys as rtoys  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--kill_at", type=int, default=None)
    parser.add_argument("--deterministic", action="store_true")
    args = parser.parse_args()

    t = rtoys.make_trainer(args.model_dir, args.steps, deterministic=args.deterministic)
    t.restore_or_initialize()
    step_fn = t._build_train_step()
    log = os.path.join(args.model_dir, "losses.txt")

    def logged(batch):
        losses = step_fn(batch)
        total = float(sum(v.numpy() for v in losses.values()))
        with open(log, "a") as f:
            f.write(f"{t.step} {total.hex()}\n")
        if t.step == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return losses

    t._train_step = logged
    t.train()
    np.savez(os.path.join(args.model_dir, "final_weights.npz"), *[np.asarray(v) for v in t.model.weights])


if __name__ == "__main__":
    main()
