"""Under mixed_bfloat16 the detector keeps boxes in float32 and returns finite float32 losses."""
import keras
import numpy as np
import tensorflow as tf


def test_mixed_bfloat16_training_and_inference(make_tiny_model, make_batch):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = make_tiny_model()
        batch = {k: tf.constant(v) for k, v in make_batch(batch_size=2).items()}
        losses = model(batch, training=True)
        assert set(losses) == {"rpn_objectness", "rpn_box", "roi_class", "roi_box", "mask"}
        for key, value in losses.items():
            assert value.dtype == tf.float32 and np.isfinite(float(value)), key
        det = model({"images": batch["images"], "image_info": batch["image_info"]}, training=False)
        assert det["detection_boxes"].dtype == tf.float32
        # Boxes in original pixels stay inside the 96x128 original image (float32, not bfloat16-rounded).
        boxes = det["detection_boxes"].numpy()
        assert boxes.min() >= 0 and boxes[..., 2].max() <= 96 and boxes[..., 3].max() <= 128
    finally:
        keras.mixed_precision.set_global_policy("float32")
