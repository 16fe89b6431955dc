"""This package against torchvision's Mask R-CNN at equal architecture, alternating both in one process.

    python benchmarks/compare_torchvision.py [--size=512] [--batch=2] [--predict_sizes=512,800]
        [--rounds=2] [--steps=3] [--threads=N] [--precision=float32|bfloat16]

Needs torch and torchvision (the `interop` extra); only this benchmark and the tests import them.

The architecture is torchvision's `maskrcnn_resnet50_fpn` as its pretrained COCO model has it: ResNet-50
with FrozenBatchNorm2d, stem and res2 frozen (3 trainable stages), FPN and heads without norm, the 2fc
box head, 91 class slots. torchvision's side is built from its components that way (its builder with
weights=None would use trainable BatchNorm2d); this package's side is `build_model_from_bindings` with
`torchvision_detection.DETECTOR_BINDINGS` (gin_configs/interop/torchvision_maskrcnn_r50_fpn.gin), and its
weights are copied from torchvision's model (`torchvision_detection.map_detector`, which refuses a
state dict that does not fit every variable: the check that the two are the same network). The box
predictor's class biases get std 2 on both so that ~100 detections per image pass the 0.05 score
threshold, as with a trained model (random weights give none and torchvision would skip its mask head;
as in tests/interop/test_torchvision_detector_e2e.py, with random frozen-BN statistics and head biases).

What is timed, in --precision, on random images with 7 boxes and masks per image (benchmarks/train_step.py's
batch):
- train: one SGD step on --batch images of --size x --size pixels, on copies of the two models.
  torchvision: model.train(), its loss dict summed, backward, torch.optim.SGD(--lr, momentum 0.9,
  weight decay 1e-4).step(); its resize is the identity (both see the same canvas; normalization stays
  in its transform). Ours: the Trainer's compiled step (`Trainer.on_fixed_batch` at base LR --lr:
  forward, backward, coupled L2, SGD momentum). The LR is 1e-4, not the paper's 0.02: from random
  weights without warm-up both diverge to NaN within two steps at 0.02, and NaN boxes change the work
  (torchvision skips what has no valid box); the step's cost does not depend on the LR. The last
  step's summed losses are printed: they must be finite for the times to mean anything.
- predict: seconds per image on one S x S uint8 image for each S in --predict_sizes, pasted masks
  included. torchvision: model.eval() under torch.no_grad() on the image (0..1 float, its transform
  normalizes; resize the identity as in training, so S x S stays S x S, as ours with short side S,
  max S; its postprocess pastes the masks). Ours: the exported SavedModel's serving_default on the
  uint8 image (resize, normalization, model, pasting).
--precision=bfloat16 compares the two at equal precision, both computing in bfloat16 with float32
weights: torchvision's forward (and, in training, its losses) under torch.autocast("cpu",
dtype=torch.bfloat16), which runs its convolutions and linear layers in bfloat16 and the ops on
autocast's float32 list in float32; ours built under Keras's mixed_bfloat16 policy (the
Trainer's `mixed_precision`, and `export --mixed_precision=mixed_bfloat16` for the SavedModel), which
keeps boxes, RoIAlign, GroupNorm statistics, scores and mask probabilities in float32.
Warm-up (tracing, graph optimization, export) happens before the rounds. Each round runs ours then
torchvision (odd rounds) or torchvision then ours (even rounds), --steps timed calls each; the table
gives the median over all rounds' calls and the ratio ours / torchvision (< 1: ours is faster).
"""
import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="training canvas side (pixels, multiple of 32)")
    parser.add_argument("--batch", type=int, default=2, help="images per training step")
    parser.add_argument("--predict_sizes", default="512,800", help="comma-separated image sides for predict")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two frameworks")
    parser.add_argument("--steps", type=int, default=3, help="timed calls per framework, task and round")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads for both frameworks (default: their own, all cores)")
    parser.add_argument("--lr", type=float, default=1e-4,
                        help="SGD learning rate of both train steps (module docstring: why not 0.02)")
    parser.add_argument("--skip_train", action="store_true", help="time predict only")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                        help="compute precision of both frameworks (module docstring)")
    args = parser.parse_args()
    args.predict_sizes = [int(s) for s in args.predict_sizes.split(",") if s]
    if args.size % 32 or args.size < 64:
        parser.error(f"--size must be a multiple of 32 and >= 64, got {args.size}")
    for name in ("batch", "rounds", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if min(args.predict_sizes, default=64) < 64:
        parser.error(f"--predict_sizes must be >= 64 px, got {args.predict_sizes}")
    return args


def torchvision_model(torch, torchvision):
    """maskrcnn_resnet50_fpn as pretrained (frozen BN, 3 trainable stages), random weights, confident
    class biases (module docstring)."""
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops import FrozenBatchNorm2d

    torch.manual_seed(0)
    body = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    model = MaskRCNN(_resnet_fpn_extractor(body, 3), num_classes=91)
    with torch.no_grad():
        for m in model.modules():  # frozen BN statistics of a trained-like scale, not the identity
            if isinstance(m, FrozenBatchNorm2d):
                c = m.weight.shape[0]
                m.weight.copy_(torch.rand(c) + 0.5)
                m.bias.copy_(torch.randn(c) * 0.2)
                m.running_mean.copy_(torch.randn(c) * 0.2)
                m.running_var.copy_(torch.rand(c) * 1.5 + 0.5)
        for p in list(model.backbone.fpn.parameters()) + list(model.rpn.head.parameters()):
            if p.dim() == 1:
                p.copy_(torch.randn(p.shape) * 0.1)
        predictor = model.roi_heads.box_predictor
        predictor.cls_score.weight.copy_(torch.randn(predictor.cls_score.weight.shape) * 0.05)
        predictor.cls_score.bias.copy_(torch.randn(predictor.cls_score.bias.shape) * 2.0)
        predictor.bbox_pred.weight.copy_(torch.randn(predictor.bbox_pred.weight.shape) * 0.01)
    model.transform.resize = lambda image, target=None: (image, target)  # same canvas on both sides
    return model


def our_model(tv_model):
    """The equal-architecture MaskRCNN of this package with tv_model's weights, computing in Keras's
    global dtype policy."""
    from rethink_tf.interop import torchvision_detection
    from rethink_tf.interop.mapping import WeightMapper
    from rethink_tf.modeling.factory import build_model_from_bindings

    model = build_model_from_bindings(torchvision_detection.NUM_CLASSES,
                                      torchvision_detection.DETECTOR_BINDINGS).build_networks(image_size=64)
    mapper = WeightMapper({k: v.numpy() for k, v in tv_model.state_dict().items()}, "torchvision detector")
    torchvision_detection.map_detector(mapper, model)
    mapper.finish(model)
    return model


def torch_targets(torch, batch):
    """benchmarks/train_step.make_batch's batch -> torchvision's (images, targets): boxes xyxy, labels,
    full-canvas masks (the box-cropped masks' filled centre placed in each box)."""
    images, targets = [], []
    height, width = batch["images"].shape[1:3]
    for b in range(batch["images"].shape[0]):
        keep = batch["gt_classes"][b] > 0
        boxes = batch["gt_boxes"][b][keep]
        masks = torch.zeros((len(boxes), height, width), dtype=torch.uint8)
        for i, (y0, x0, y1, x1) in enumerate(boxes):
            hy, hx = (y1 - y0) / 4, (x1 - x0) / 4
            masks[i, int(y0 + hy):int(y1 - hy), int(x0 + hx):int(x1 - hx)] = 1
        # The pipeline's images are normalized; torchvision normalizes itself: give it 0..1 pixels.
        images.append(torch.rand(3, height, width, generator=torch.Generator().manual_seed(b)))
        targets.append({"boxes": torch.from_numpy(boxes[:, [1, 0, 3, 2]].copy()),
                        "labels": torch.from_numpy(batch["gt_classes"][b][keep].astype("int64")),
                        "masks": masks})
    return images, targets


def conv_output_dtype(tv_model, call):
    """The dtype of tv_model's stem convolution output during call() (autocast's effect, observed)."""
    seen = []
    hook = tv_model.backbone.body.conv1.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    try:
        call()
    finally:
        hook.remove()
    return str(seen[0]).replace("torch.", "")


def timed(fn, steps):
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def export_ours(model, size, export_dir):
    """SavedModel of `model` for S x S images (short side and max size S, one square canvas)."""
    from rethink_tf.data import preprocess
    from rethink_tf.interop import archs, torchvision_detection
    from rethink_tf.serving import model_dir, saved_model

    spec = archs.get_spec("torchvision", "resnet50")
    landscape, portrait = preprocess.canvas_shapes(size, size)
    inference = model_dir.InferenceConfig(short_side=size, max_size=size, landscape_canvas=landscape,
                                          portrait_canvas=portrait, pixel_mean=tuple(spec.pixel_mean),
                                          pixel_std=tuple(spec.pixel_std))
    module = saved_model.build_export_module(model, torchvision_detection.label_map(), inference)
    saved_model.save(module, export_dir, overwrite=True)
    return export_dir


def main():
    args = parse_args()
    import numpy as np
    import tensorflow as tf

    from rethink_tf.interop.torchvision import import_torch  # hides triton, which crashes next to TF

    torch = import_torch()
    import torchvision

    if args.threads:
        torch.set_num_threads(args.threads)
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    from rethink_tf.interop import archs
    from rethink_tf.training.trainer import Trainer
    from train_step import make_batch

    print(f"TensorFlow {tf.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}; "
          f"{os.cpu_count()} CPU(s), threads tf {args.threads or 'default'} / torch {torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    from rethink_tf.utils import precision

    policy = "mixed_bfloat16" if args.precision == "bfloat16" else None
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=policy is not None)  # noqa: E731
    tv = torchvision_model(torch, torchvision)
    with precision.inference_policy(policy, "--precision"):
        ours = our_model(tv)
    tasks = {}  # name -> {"ours": fn, "torchvision": fn}, each fn one timed call (warm)

    if not args.skip_train:
        # The training steps change their models' weights: they get copies, so that predict keeps
        # the weights that detect (module docstring).
        tv_train_model = copy.deepcopy(tv)
        batch = make_batch(args.batch, args.size)
        tv_images, tv_targets = torch_targets(torch, batch)
        # Ours gets the pixels torchvision's transform feeds its network (torchvision's normalization).
        spec = archs.get_spec("torchvision", "resnet50")
        batch["images"] = np.stack([(im.permute(1, 2, 0).numpy() * 255.0 - spec.pixel_mean) / spec.pixel_std
                                    for im in tv_images]).astype(np.float32)
        tv_params = [p for p in tv_train_model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(tv_params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
        last_loss = {}

        def tv_train():
            tv_train_model.train()
            with autocast():
                losses = tv_train_model(tv_images, tv_targets)
                total = sum(losses.values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            last_loss["torchvision"] = float(total.detach())

        def ours_train():
            losses = step(fixed)
            last_loss["ours"] = float(sum(v.numpy() for v in tf.nest.flatten(losses)))

        fixed = {k: tf.constant(v) for k, v in batch.items()}
        start = time.perf_counter()
        # The Trainer sets Keras's global policy (the precision) before it calls the model function.
        _, step = Trainer.on_fixed_batch(tempfile.mkdtemp(prefix="compare_torchvision_"), lambda: our_model(tv),
                                         fixed, base_lr=args.lr, mixed_precision=policy)
        ours_train()
        print(f"ours: first train step (trace + run) {time.perf_counter() - start:.1f} s", flush=True)
        tv_train()
        tasks[f"train step, batch {args.batch}, {args.size}x{args.size}"] = {
            "ours": ours_train, "torchvision": tv_train}

    rng = np.random.default_rng(0)
    for size in args.predict_sizes:
        image = rng.integers(0, 256, (size, size, 3), np.uint8)
        start = time.perf_counter()
        with precision.inference_policy(policy, "--precision"):  # as `rethink_tf.export` exports
            export_dir = export_ours(ours, size, os.path.join(tempfile.mkdtemp(prefix="compare_tv_"), str(size)))
        serve = tf.saved_model.load(export_dir).signatures["serving_default"]
        uint8 = tf.constant(image[None])
        ours_out = {k: v.numpy() for k, v in serve(images=uint8).items()}
        print(f"ours: SavedModel at {size} exported and first call in {time.perf_counter() - start:.1f} s; "
              f"{int(ours_out['num_detections'][0])} detections", flush=True)
        tv_image = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0

        def tv_predict(tv_image=tv_image):
            tv.eval()
            with torch.no_grad(), autocast():
                out = tv([tv_image])
            return out

        print(f"torchvision: {len(tv_predict()[0]['boxes'])} detections at {size}", flush=True)
        if size == args.predict_sizes[0]:
            features = ours.backbone(tf.zeros([1, 64, 64, 3]))
            print(f"compute dtype: ours' backbone features {features[2].dtype.name}, torchvision's stem "
                  f"convolution {conv_output_dtype(tv, tv_predict)}", flush=True)
        tasks[f"predict per image, {size}x{size}"] = {
            "ours": lambda serve=serve, uint8=uint8: {k: v.numpy() for k, v in serve(images=uint8).items()},
            "torchvision": tv_predict}

    times = {name: {"ours": [], "torchvision": []} for name in tasks}
    for round_index in range(args.rounds):
        order = ("ours", "torchvision") if round_index % 2 == 0 else ("torchvision", "ours")
        for framework in order:
            for name, fns in tasks.items():
                run = timed(fns[framework], args.steps)
                times[name][framework] += run
                print(f"round {round_index + 1} {framework:11s} {name}: "
                      f"{', '.join(f'{t:.3f}' for t in run)} s", flush=True)

    print(f"\nmedian seconds over {args.rounds} round(s) x {args.steps} call(s), {args.precision} "
          f"(load average now {os.getloadavg()[0]:.1f}):")
    print(f"{'task':40s} {'ours':>9s} {'torchvision':>12s} {'ours/theirs':>12s}")
    for name, by in times.items():
        o, t = statistics.median(by["ours"]), statistics.median(by["torchvision"])
        print(f"{name:40s} {o:9.3f} {t:12.3f} {o / t:12.2f}")
    if not args.skip_train:
        print(f"summed train losses after the last step (lr {args.lr:g}): ours {last_loss['ours']:.4g}, "
              f"torchvision {last_loss['torchvision']:.4g}")


if __name__ == "__main__":
    main()
