"""Imports ImageNet backbone weights of other libraries into a rethink_tf backbone file.

    python -m rethink_tf.import_weights --source=torchvision --arch=resnet50 \
        --input=resnet50-0676ba61.pth --output=weights/r50_torchvision.h5

Sources and architectures (rethink_tf.interop.archs): keras (keras.applications weight files: resnet50,
resnet101, resnet152, vgg16), torchvision (state dicts: resnet50, resnet101, resnet152,
resnext101_32x8d, vgg16; needs torch, the `interop` extra), detectron (Detectron's ImageNet .pkl:
R-50, R-101, R-50-GN, R-101-GN, X-101-32x8d, X-101-64x4d, X-152-32x8d-IN5k).

Whole torchvision detectors (state dicts of maskrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn; needs torch):

    python -m rethink_tf.import_weights --source=torchvision --arch=maskrcnn_resnet50_fpn \
        --input=maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth --output=runs/tv_maskrcnn
    python -m rethink_tf.export --model_dir=runs/tv_maskrcnn --export_dir=runs/tv_maskrcnn/saved_model

write OUTPUT as a model directory (config.gin, label_map.json, run_config.json, inference_config.json,
ckpt-0, import_report.json; rethink_tf.interop.detector_dir) with torchvision's conventions set
(gin_configs/interop/torchvision_maskrcnn_r50_fpn.gin); labels 1..90 are COCO category ids.

For backbones, writes OUTPUT (the backbone file `experiment.backbone_weights` reads, rethink_tf.modeling.weights),
OUTPUT's stem + ".gin" (the body and input-normalization bindings the weights need: include it in the
training config) and OUTPUT's stem + ".report.json" (matched / reshaped / derived / unused tensors);
prints the report's summary. A tensor that is missing or does not fit is an error naming it (exit 2).
VGG-16's fc6 / fc7 go into OUTPUT too (the detector's box head starts from them,
`experiment.vgg16_fc_from_weights`); a keras file without the top has none, and then OUTPUT holds the
body only, with a warning.
Nothing is downloaded.
"""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402

from rethink_tf.utils import cli  # noqa: E402
from rethink_tf.utils.validate import InputError  # noqa: E402

flags.DEFINE_enum("source", None, ["keras", "torchvision", "detectron"], "Library the weights come from.")
flags.DEFINE_string("arch", None, "Architecture, e.g. resnet50 (keras, torchvision) or R-50-GN (detectron).")
flags.DEFINE_string("input", None, "The source weight file (.h5 / .pth / .pkl).")
flags.DEFINE_string("output", None, "The rethink_tf backbone file to write (.h5); for a detector --arch, the "
                    "model directory to write.")
FLAGS = flags.FLAGS


def side_files(output):
    """(gin file, report file) written next to `output`."""
    stem = os.path.splitext(output)[0]
    return stem + ".gin", stem + ".report.json"


def read_source(source, arch, path):
    """-> ({name: numpy array}, keras BN epsilon) of the source file."""
    from rethink_tf.interop import detectron, keras_apps, torchvision
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--input: no file {path}")
    try:
        if source == "torchvision":
            return torchvision.read_state_dict(path), None
        if source == "detectron":
            return detectron.read_pkl(path), None
        model = keras_apps.build_application(arch, path)
        return keras_apps.model_tensors(model), keras_apps.bn_epsilon(model)
    except ImportError as err:
        raise InputError(str(err)) from err
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        raise InputError(f"--input={path}: cannot read it as a {source} weight file: {err}") from err


DETECTOR_ARCHS = ("maskrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn")


def import_detector(arch, input_path, output):
    """A torchvision detector state dict -> the model directory `output`; returns the ImportReport."""
    from rethink_tf.interop import detector_dir
    tensors, _ = read_source("torchvision", arch, input_path)
    return detector_dir.write_model_dir(arch, tensors, f"torchvision {arch} file {input_path}", output)


def import_weights(source, arch, input_path, output):
    """Converts `input_path` and writes `output`, its .gin and .report.json; returns the ImportReport."""
    from rethink_tf.interop import archs, convert
    from rethink_tf.modeling import weights

    try:
        spec = archs.get_spec(source, arch)
    except ValueError as err:
        raise InputError(str(err)) from err
    tensors, epsilon = read_source(source, arch, input_path)
    body, report = convert.convert_backbone(source, arch, tensors, input_path,
                                            keras_bn_epsilon=epsilon or 1.001e-5)
    head = None
    if spec.backbone["kind"] == "vgg16":  # fc6 / fc7 go with the body, for the detector's box head
        head, read = convert.vgg16_fc(source, tensors, body.out_channels[4], input_path)
        report.unused = [k for k in report.unused if k not in read]
        report.matched += [(key, f"{weights.HEAD_PREFIX}{part}") for key, part in zip(read, head or {})]
        if head is None:
            logging.warning("%s has no VGG-16 fc6 / fc7: %s holds the body only, which the VGG-16 detector "
                            "configs refuse unless experiment.vgg16_fc_from_weights = False", input_path, output)
    weights.save_backbone_weights(body, output, head=head)
    gin_path, report_path = side_files(output)
    with open(gin_path, "w") as f:
        f.write(archs.gin_bindings(spec, os.path.abspath(output)))
    with open(report_path, "w") as f:
        json.dump(report.to_json(), f, indent=1)
    return report


def main(argv):
    del argv
    for name in ("source", "arch", "input", "output"):
        if not getattr(FLAGS, name):
            raise InputError(f"--{name} is required")
    if FLAGS.arch in DETECTOR_ARCHS:
        if FLAGS.source != "torchvision":
            raise InputError(f"--arch={FLAGS.arch} is a torchvision detector: use --source=torchvision")
        report = import_detector(FLAGS.arch, FLAGS.input, FLAGS.output)
        print(report.summary())
        print(f"wrote the model directory {FLAGS.output}; export it with: python -m rethink_tf.export "
              f"--model_dir={FLAGS.output} --export_dir={os.path.join(FLAGS.output, 'saved_model')}")
        return
    report = import_weights(FLAGS.source, FLAGS.arch, FLAGS.input, FLAGS.output)
    gin_path, report_path = side_files(FLAGS.output)
    print(report.summary())
    for key, src, dst in report.reshaped[:3]:
        print(f"  reshaped {key}: {src} -> {dst}")
    if report.unused:
        print(f"  unused in source: {', '.join(report.unused[:8])}{' ...' if len(report.unused) > 8 else ''}")
    print(f"wrote {FLAGS.output}, {gin_path}, {report_path}")


def run():
    """Console script `rethink-import-weights`."""
    cli.run(main)


if __name__ == "__main__":
    run()
