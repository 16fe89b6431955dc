"""`Detector`: run a trained detector on images from Python, from a run directory or a SavedModel.

    from rethink_tf import Detector
    detector = Detector.from_run_dir("runs/quickstart")          # Keras model + latest checkpoint
    detector = Detector.from_saved_model("exported/quickstart")  # or what rethink_tf.export wrote
    detections = detector.predict("photo.jpg")   # a path, encoded bytes or a uint8 RGB array
    picture = detector.draw("photo.jpg", detections)             # uint8 [H', W', 3]

Both constructors give the same `Detections` for the same image (the round trip is tested): boxes in
original-image pixels, dataset category ids and names, full-image masks. Inside, the run directory's
Keras model returns contiguous labels 1..K and 28x28 box-frame masks; the API maps labels to
category ids and pastes the masks (at the run's mask threshold) exactly as the SavedModel does.

Images: an encoded JPEG / PNG / GIF / BMP file (path or bytes) is decoded as the SavedModel decodes
it (`preprocess.decode_image_bytes`); an array / tf.Tensor must be uint8 [H, W, 3] RGB, [H, W] or
[H, W, 1] gray (copied to R, G, B) or [H, W, 4] RGBA (alpha dropped). A list of images, or a uint8
[B, H, W, C] array, gives a list of `Detections`, one per image. The input limits of
`rethink_tf.serving.export_module` (each side >= 8 px, shorter side >= 32 px after the eval resize)
apply on both paths and are reported as ValueError naming the image.
"""
from __future__ import annotations

import dataclasses
import json
import os
import numpy as np

from rethink_tf.utils import validate, visualize


@dataclasses.dataclass(frozen=True)
class Detections:
    """One image's detections, N of them in decreasing score (all the model kept, no threshold).

    Attributes:
        boxes: float32 [N, 4] xyxy = (x0, y0, x1, y1) in original-image pixels (x right, y down).
            Note: xyxy, as detectron2 / torchvision; the SavedModel's own `detection_boxes` are yxyx.
        scores: float32 [N] in [0, 1].
        category_ids: int64 [N] dataset category ids (COCO's for a COCO run), not contiguous labels.
        category_names: N str, the names of those categories.
        masks: bool [N, H, W] full-image instance masks, or None when the model has no mask head.
        keypoints: float32 [N, K, 3] (x, y, score) in original-image pixels when the model predicts
            keypoints (built with build_model.keypoints = True), else None; score: heatmap logit.
        image_size: (H, W) of the original image in pixels.
    """
    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray
    category_names: tuple
    masks: np.ndarray | None
    image_size: tuple
    keypoints: np.ndarray | None = None

    def __len__(self):
        return len(self.scores)

    def above(self, min_score: float = visualize.SCORE_THRESHOLD) -> "Detections":
        """The detections with score >= min_score (default: the drawing threshold)."""
        keep = np.flatnonzero(self.scores >= min_score)
        return dataclasses.replace(
            self, boxes=self.boxes[keep], scores=self.scores[keep],
            category_ids=self.category_ids[keep],
            category_names=tuple(self.category_names[i] for i in keep),
            masks=None if self.masks is None else self.masks[keep],
            keypoints=None if self.keypoints is None else self.keypoints[keep])


def load_image(image, what: str | None = None) -> np.ndarray:
    """A path, encoded bytes, or uint8 array / tf.Tensor -> uint8 RGB [H, W, 3] (module docstring).

    Raises FileNotFoundError / ValueError naming the path (or `what`).
    """
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such image file")
        with open(path, "rb") as f:
            return _decode(f.read(), path)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(bytes(image), what or "image bytes")
    if hasattr(image, "numpy") and not isinstance(image, np.ndarray):  # tf.Tensor / EagerTensor
        image = image.numpy()
    return visualize.as_rgb(image, what or "image array")


def _decode(encoded: bytes, what: str) -> np.ndarray:
    if not encoded:
        raise ValueError(f"{what}: empty file")
    if not encoded.startswith(validate.ENCODED_IMAGE_SIGNATURES):
        raise ValueError(f"{what}: not an encoded image (expected JPEG, PNG, GIF or BMP bytes); its first "
                         f"bytes are {encoded[:4]!r}")
    import tensorflow as tf

    from rethink_tf.data import preprocess
    try:
        return preprocess.decode_image_bytes(encoded).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        raise ValueError(f"{what}: cannot be decoded ({e.message.strip().splitlines()[-1]})") from e


def _check_limits(image_hw, what, short_side, max_size):
    """The SavedModel's input limits (export_module), as a ValueError naming the image."""
    from rethink_tf.serving.export_module import MIN_IMAGE_SIDE, within_input_limits
    h, w = image_hw
    ok, need, *resized = within_input_limits(h, w, short_side, max_size)
    resized = [int(v) for v in resized]
    if not bool(ok):
        raise ValueError(
            f"{what} is {h}x{w} px (height x width): each side must be >= {MIN_IMAGE_SIDE} px and, after "
            f"the eval resize (shorter side -> {short_side}, longer <= {max_size}), the shorter side >= "
            f"{need} px; it would be {resized[0]}x{resized[1]}")


class _KerasRunner:
    """A run directory's restored Keras MaskRCNN, one image per call (the evaluation preprocessing)."""

    def __init__(self, model, inference, mask_threshold):
        self.model, self.inference, self.mask_threshold = model, inference, float(mask_threshold)
        self.has_masks = bool(model.has_masks)
        self.has_keypoints = bool(model.has_keypoints)

    def check(self, image_hw, what):
        _check_limits(image_hw, what, self.inference.short_side, self.inference.max_size)

    def __call__(self, image):
        """uint8 [H, W, 3] -> (boxes yxyx [n, 4], scores [n], labels [n], masks uint8 [n, H, W] | None,
        keypoints [n, K, 3] | None)."""
        from rethink_tf.data import preprocess
        from rethink_tf.ops.masks import paste_function
        cfg = self.inference
        height, width = image.shape[:2]
        canvas_hw = cfg.portrait_canvas if preprocess.is_portrait(height, width) else cfg.landscape_canvas
        canvas, info = preprocess.resize_and_pad(image, cfg.short_side, cfg.max_size, tuple(canvas_hw))
        canvas = preprocess.normalize_image(canvas, mean=cfg.pixel_mean, std=cfg.pixel_std,
                                            channel_order=cfg.channel_order, image_info=info)
        # Eager, one image per call: tracing the model (tens of seconds) would cost more than it saves
        # for a few images; serve many from the SavedModel.
        outputs = self.model({"images": canvas[None], "image_info": info[None]}, training=False)
        out = {k: v.numpy()[0] for k, v in outputs.items()}
        num = int(out["num_detections"])
        boxes = out["detection_boxes"][:num]
        masks = None
        if "detection_masks" in out:  # pasted as the SavedModel pastes them
            paste = paste_function(getattr(self.model.postprocessor, "mask_paste", "detectron"), "tf")
            masks = paste(out["detection_masks"][:num], boxes, (height, width), threshold=self.mask_threshold).numpy()
        keypoints = out["detection_keypoints"][:num] if "detection_keypoints" in out else None
        return boxes, out["detection_scores"][:num], out["detection_classes"][:num], masks, keypoints


class _SavedModelRunner:
    """A SavedModel written by rethink_tf.export, through its `serving_default` signature."""

    def __init__(self, export_dir):
        import tensorflow as tf
        self._tf = tf
        self.loaded = tf.saved_model.load(export_dir)
        self._serve = self.loaded.signatures["serving_default"]
        outputs = self._serve.structured_outputs
        self.has_masks = "detection_box_masks" in outputs
        self.has_keypoints = "detection_keypoints" in outputs
        config_path = os.path.join(export_dir, "assets.extra", "export_config.json")
        self.config = {}
        if os.path.isfile(config_path):
            with open(config_path) as f:
                self.config = json.load(f)
        self.mask_threshold = float(self.config.get("mask_threshold", 0.5))

    def check(self, image_hw, what):
        if "short_side" in self.config:  # else the SavedModel's own assertion speaks (see __call__)
            _check_limits(image_hw, what, int(self.config["short_side"]), int(self.config["max_size"]))

    def __call__(self, image):
        """uint8 [H, W, 3] -> (boxes yxyx [n, 4], scores [n], category ids [n], masks | None, keypoints | None)."""
        from rethink_tf.ops.masks import paste_masks_tf
        tf = self._tf
        try:
            out = {k: v.numpy()[0] for k, v in self._serve(images=tf.constant(image[None])).items()}
        except tf.errors.InvalidArgumentError as e:
            from rethink_tf.predict import _reason
            raise ValueError(_reason(e.message)) from e
        num = int(out["num_detections"])
        height, width = image.shape[:2]
        boxes = out["detection_boxes"][:num]
        masks = None
        if "detection_masks" in out:
            masks = out["detection_masks"][:num, :height, :width]
        elif "detection_box_masks" in out:  # exported with --nopaste_masks
            masks = paste_masks_tf(out["detection_box_masks"][:num], boxes, (height, width),
                                   threshold=self.mask_threshold).numpy()
        keypoints = out["detection_keypoints"][:num] if "detection_keypoints" in out else None
        return boxes, out["detection_scores"][:num], out["detection_classes"][:num], masks, keypoints


class Detector:
    """A trained detector: `predict` images, `draw` detections. Build with `from_run_dir` or
    `from_saved_model`.

    Attributes:
        categories: [{"id", "name"}] of the model's classes (labels 1..K in order).
        has_masks: whether `predict` returns masks; has_keypoints: whether it returns keypoints.
        source: "run_dir" or "saved_model"; path: the directory it was loaded from.
    """

    def __init__(self, runner, categories, source, path, labels_are_ids):
        self._runner = runner
        self.categories = [{"id": int(c["id"]), "name": str(c["name"])} for c in categories]
        self.has_masks = runner.has_masks
        self.has_keypoints = runner.has_keypoints
        self.source, self.path = source, path
        self._names = {c["id"]: c["name"] for c in self.categories}
        # Keras path: label l -> categories[l - 1]; the SavedModel already outputs category ids.
        self._label_to_id = None if labels_are_ids else np.asarray(
            [0] + [c["id"] for c in self.categories], np.int64)

    @classmethod
    def from_run_dir(cls, model_dir: str, checkpoint: str | None = None) -> "Detector":
        """The Keras model of a training run directory, as `rethink_tf.export` rebuilds it.

        Parses DIR/config.gin into gin's global configuration (refused if it is not what the checkpoint
        was trained with), restores `checkpoint` (default: DIR's latest ckpt-N) and takes the
        preprocessing and mask threshold from DIR/inference_config.json.
        """
        if not os.path.isdir(model_dir):
            raise FileNotFoundError(f"{model_dir}: no such training run directory (expected config.gin, "
                                    "label_map.json and ckpt-N files written by rethink_tf.train)")
        from rethink_tf.serving import model_dir as model_dir_lib
        model, categories, inference, _ = model_dir_lib.load_model(model_dir, checkpoint)
        runner = _KerasRunner(model, inference, model_dir_lib.mask_threshold(model_dir))
        return cls(runner, categories, "run_dir", model_dir, labels_are_ids=False)

    @classmethod
    def from_saved_model(cls, export_dir: str) -> "Detector":
        """A SavedModel directory written by `python -m rethink_tf.export` (its label map names classes)."""
        if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
            raise FileNotFoundError(f"{export_dir}: no saved_model.pb there (write one with "
                                    "python -m rethink_tf.export)")
        runner = _SavedModelRunner(export_dir)
        label_map = runner.loaded.label_map()
        categories = [{"id": int(i), "name": n.decode("utf-8")}
                      for i, n in zip(label_map["category_ids"].numpy(),
                                      label_map["category_names"].numpy())]
        return cls(runner, categories, "saved_model", export_dir, labels_are_ids=True)

    def __repr__(self):
        return (f"Detector({self.source}={self.path!r}, {len(self.categories)} categories, "
                f"masks={self.has_masks})")

    def predict(self, image) -> Detections | list[Detections]:
        """Detects objects in one image (path, encoded bytes, uint8 array / tf.Tensor) -> Detections;
        in a list of images or a uint8 [B, H, W, C] array -> a list of Detections, one per image."""
        if isinstance(image, (list, tuple)):
            return [self._predict_one(item, f"images[{i}]") for i, item in enumerate(image)]
        if isinstance(image, np.ndarray) and image.ndim == 4:
            return [self._predict_one(item, f"images[{i}]") for i, item in enumerate(image)]
        return self._predict_one(image, None)

    def _predict_one(self, image, what):
        if isinstance(image, (str, os.PathLike)):
            what = os.fspath(image)
        pixels = load_image(image, what)
        what = what or "image"
        self._runner.check(pixels.shape[:2], what)
        try:
            boxes, scores, classes, masks, keypoints = self._runner(pixels)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from e
        classes = np.asarray(classes, np.int64)
        if self._label_to_id is not None:
            classes = self._label_to_id[np.clip(classes, 0, len(self._label_to_id) - 1)]
        return Detections(
            boxes=np.asarray(boxes, np.float32)[:, [1, 0, 3, 2]].reshape(-1, 4),
            scores=np.asarray(scores, np.float32),
            category_ids=classes,
            category_names=tuple(self._names.get(int(c), str(int(c))) for c in classes),
            masks=None if masks is None else np.asarray(masks) > 0,
            image_size=(int(pixels.shape[0]), int(pixels.shape[1])),
            keypoints=None if keypoints is None else np.asarray(keypoints, np.float32))

    def draw(self, image, detections: Detections, *,
             score_threshold: float = visualize.SCORE_THRESHOLD,
             min_side: int | None = visualize.DRAW_MIN_SIDE) -> np.ndarray:
        """The image with `detections` drawn (boxes, masks, "name score%" labels, keypoint skeletons) by
        `rethink_tf.utils.visualize.draw_detections`.

        Args:
            image: what was given to `predict` (path, bytes or array).
            detections: its `Detections`.
            score_threshold: detections scoring below it are not drawn.
            min_side: pictures with a shorter side below it are enlarged to it (None: never).
        Returns:
            uint8 [H', W', 3]: the image's size, or larger when enlarged.
        """
        return draw(image, detections, score_threshold=score_threshold, min_side=min_side)


def draw(image, detections: Detections, *, score_threshold: float = visualize.SCORE_THRESHOLD,
         min_side: int | None = visualize.DRAW_MIN_SIDE) -> np.ndarray:
    """`Detector.draw` without a detector (see there)."""
    pixels = load_image(image)
    if tuple(pixels.shape[:2]) != tuple(detections.image_size):
        raise ValueError(f"the image is {pixels.shape[0]}x{pixels.shape[1]} px but the detections are "
                         f"for a {detections.image_size[0]}x{detections.image_size[1]} image")
    names = dict(zip((int(c) for c in detections.category_ids), detections.category_names))
    return visualize.draw_detections(
        pixels, detections.boxes[:, [1, 0, 3, 2]], detections.category_ids, detections.scores,
        detections.masks, names, score_threshold=score_threshold, min_side=min_side,
        keypoints=detections.keypoints)

