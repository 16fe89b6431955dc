"""A torchvision detector state dict -> a rethink_tf model directory that `rethink_tf.export` (and
`rethink_tf.serving.model_dir.load_model`) reads as if a training run had written it:

  DIR/config.gin             the model's bindings (torchvision_detection.DETECTOR_BINDINGS), torchvision's
                             normalization and eval resize (shorter side 800, longer <= 1333)
  DIR/label_map.json         labels 1..90 = torchvision's slots = COCO category ids ("N/A" for the 10 unused)
  DIR/run_config.json        the run record (rethink_tf.training.run_record), also stored in the checkpoint
  DIR/inference_config.json  the resolved eval preprocessing / post-processing
  DIR/ckpt-0.*               the model variables by Keras path (rethink_tf.training.checkpointing)
  DIR/import_report.json     matched / reshaped / unused tensors

The class layout keeps torchvision's 91 slots (softmax over all of them, as torchvision): label l is COCO
category id l, so exported `detection_classes` are COCO ids and COCO evaluation needs no id table.
"""
import json
import os

import gin

from rethink_tf.interop import torchvision_detection

# torchvision's GeneralizedRCNNTransform defaults (min_size=800, max_size=1333); canvases are multiples of 32.
EVAL_BINDINGS = {"build_dataset.eval_short_side": 800, "build_dataset.max_size": 1333}
REPORT_FILE = "import_report.json"


def config_text(arch):
    """config.gin of an imported torchvision detector."""
    header = (f"# Written by rethink_tf.import_weights --source=torchvision --arch={arch}: torchvision's model, "
              "normalization and inference conventions\n# (gin_configs/interop/torchvision_maskrcnn_r50_fpn.gin).\n")
    return header + torchvision_detection.gin_text(
        {**torchvision_detection.model_bindings(arch), **torchvision_detection.INPUT_BINDINGS, **EVAL_BINDINGS})


def write_model_dir(arch, tensors, source, model_dir):
    """Builds the rethink_tf detector of `arch`, fills it from `tensors` ({name: numpy array}: a torchvision
    state dict) and writes `model_dir` (module docstring). Returns the ImportReport; WeightImportError
    names the first tensor that is missing or does not fit. Uses the global gin configuration for the
    build and clears it before and after."""
    from rethink_tf.interop.mapping import WeightMapper
    from rethink_tf.modeling.factory import build_model
    from rethink_tf.serving import model_dir as model_dir_lib
    from rethink_tf.training import checkpointing, config, run_record

    text = config_text(arch)
    os.makedirs(model_dir, exist_ok=True)
    config_path = os.path.join(model_dir, model_dir_lib.CONFIG_FILE)
    with open(config_path, "w") as f:
        f.write(text)
    gin.clear_config()
    try:
        config.parse([config_path], [], finalize=False)
        model = build_model(num_classes=torchvision_detection.NUM_CLASSES).build_networks(image_size=64)
        mapper = WeightMapper(tensors, source)
        torchvision_detection.map_detector(mapper, model)
        report = mapper.finish(model)

        categories = torchvision_detection.label_map()
        with open(os.path.join(model_dir, model_dir_lib.LABEL_MAP_FILE), "w") as f:
            json.dump({"source": "torchvision COCO (91 slots)", "categories": categories,
                       "label_to_category_id": [0] + [c["id"] for c in categories]}, f, indent=1)
        record = run_record.describe(model, [c["id"] for c in categories])
        run_record.write(model_dir, record)
        record_variable = run_record.checkpoint_variable()
        record_variable.assign(run_record.to_json(record))
        checkpointer = checkpointing.ModelCheckpointer(
            model_dir, {"model_variables": checkpointing.model_trackable(model), run_record.RECORD_KEY: record_variable})
        checkpointer.save(0)
        model_dir_lib.write_inference_config(model_dir, model)
        with open(os.path.join(model_dir, REPORT_FILE), "w") as f:
            json.dump(report.to_json(), f, indent=1)
    finally:  # the import's bindings must not outlive it (they would configure the caller's next model)
        gin.clear_config()
    return report
