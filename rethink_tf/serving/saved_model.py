"""Writes a DetectionExportModule as a SavedModel (three signatures, serving_tta if asked, + label map)."""
import json
import os

import tensorflow as tf

from rethink_tf.modeling.tta import TTADetector
from rethink_tf.serving.export_module import DetectionExportModule

EXTRA_DIR = "assets.extra"  # TF Serving's place for files it does not read itself


def build_export_module(model, categories, inference_config, tta=None, **kwargs):
    """DetectionExportModule for `model` with a run's label map and eval preprocessing.

    Args:
        model: the built, restored Keras MaskRCNN.
        categories: [{"id", "name"}] for labels 1..K (DIR/label_map.json).
        inference_config: a `model_dir.InferenceConfig`.
        tta: a `rethink_tf.modeling.tta.TestTimeAugmentation` to also export `serving_tta`, or None.
        **kwargs: `paste_masks`, `mask_threshold`, `batch_images` (see DetectionExportModule).
    """
    return DetectionExportModule(
        model, category_ids=[c["id"] for c in categories],
        category_names=[c["name"] for c in categories],
        short_side=inference_config.short_side, max_size=inference_config.max_size,
        landscape_canvas=inference_config.landscape_canvas,
        portrait_canvas=inference_config.portrait_canvas, pixel_mean=inference_config.pixel_mean,
        pixel_std=inference_config.pixel_std, channel_order=inference_config.channel_order,
        tta_detector=None if tta is None else TTADetector(model, tta, inference_config), **kwargs)


def save(module, export_dir, metadata=None, overwrite=False):
    """Saves `module` to `export_dir` with its three signatures.

    Also writes `export_dir/assets.extra/label_map.json` ({"categories": [{"id", "name"}]}) and
    `export_config.json` (preprocessing and `metadata`, e.g. the checkpoint) for people and tools.
    Refuses to overwrite an existing SavedModel unless `overwrite`. The SavedModel is for inference:
    the gradient functions of the model's custom-gradient ops (GroupNorm, Cascade R-CNN's gradient
    scaling) are not traced into it, which saves a third of the export time; gradients through the
    loaded SavedModel are not supported (fine-tune from the run's checkpoint instead).
    """
    if tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")) and not overwrite:
        raise FileExistsError(f"{export_dir} already holds a SavedModel (pass overwrite=True / "
                              "--overwrite to replace it)")
    tf.saved_model.save(module, export_dir, signatures=module.signatures(),
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    extra = os.path.join(export_dir, EXTRA_DIR)
    tf.io.gfile.makedirs(extra)
    label_map = module.label_map()
    categories = [{"id": int(i), "name": n.decode("utf-8")}
                  for i, n in zip(label_map["category_ids"].numpy(),
                                  label_map["category_names"].numpy())]
    with tf.io.gfile.GFile(os.path.join(extra, "label_map.json"), "w") as f:
        json.dump({"categories": categories}, f, indent=1)
    with tf.io.gfile.GFile(os.path.join(extra, "export_config.json"), "w") as f:
        json.dump({**module.config(), **(metadata or {})}, f, indent=1)
    return export_dir
