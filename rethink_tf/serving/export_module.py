"""The SavedModel wrapper: raw images in, detections in original-image pixels and COCO ids out.

`DetectionExportModule` holds the trained Keras `MaskRCNN`, the inference preprocessing (the same
`resize_and_pad` + `normalize_image` the input pipeline calls, with the run's eval sizes) and the
label -> category table, and exposes three signatures:

- `serving_default(images)`: uint8 [B, H, W, C] with C = 3 (RGB), 1 (gray: copied to R, G, B) or 4
  (RGBA: alpha dropped, as PIL's convert("RGB") does).
- `image_bytes(image_bytes)`: string [B], encoded JPEG / PNG / GIF / BMP; sizes may differ; gray and
  RGBA files are decoded to RGB the same way.
- `tf_example(serialized_tf_example)`: string [B], serialized tf.Example with `image/encoded`.

Input limits, checked per image at each signature's entry (an InvalidArgumentError naming the input,
the image's index and size; the whole request fails):
- each side of the original image >= MIN_IMAGE_SIDE (8) pixels: below that there is no picture to
  speak of, only an upsampled block of a few pixels (typically a broken decode or a placeholder);
- after the eval resize (shorter side -> short_side, longer side capped at max_size) the shorter side
  >= MIN_RESIZED_SIDE (32) pixels, or >= short_side if that is smaller: one cell of the stride-32 level
  (P5), the coarsest level the box and mask heads pool from. An image thinner than that is mostly
  padding to the network, and a model trained on COCO-like images answers it with confident
  1-pixel-thick boxes. Equivalently the aspect ratio (longer / shorter side) must be at most
  max_size / 32: 41.6 for the paper's 800 / 1333 px, 4 for the quickstart's 128 / 128 px.
An empty batch (B = 0) returns empty outputs with the shapes below (B = 0, H = W = 0).

Every signature returns (D = the model's max detections, 100 by default; H, W = the largest
original image height / width in the batch):
- `detection_boxes`: float32 [B, D, 4], yxyx in original image pixels.
- `detection_scores`: float32 [B, D]; empty slots 0.
- `detection_classes`: int32 [B, D], dataset (COCO) category ids; empty slots 0.
- `num_detections`: int32 [B]; slots [0, num_detections) are filled, in decreasing score.
- `image_shape`: int32 [B, 2], each image's original (height, width).
and when the model has a mask head:
- `detection_masks`: uint8 [B, D, H, W] in {0, 1}, the instance masks pasted at the original image
  size (probability >= mask_threshold) at the top-left; rows/cols beyond `image_shape[b]` are 0.
  Only exported when `paste_masks=True` (the default).
- `detection_box_masks`: float32 [B, D, M, M] (M = 28), the mask probabilities in each detection
  box's frame: what a client needs to paste masks itself (bilinear resize of mask i onto the box
  `detection_boxes[b, i]`, then threshold), e.g. with `rethink_tf.ops.masks.paste_masks`.
and when the model has a keypoint branch (`build_model.keypoints = True`):
- `detection_keypoints`: float32 [B, D, K, 3] (K = 17 for COCO persons), (x, y, score) per keypoint,
  x / y in original image pixels, score the heatmap logit at the keypoint; empty slots 0.

Images in a batch are preprocessed one by one (tf.map_fn), so their sizes may differ; each runs on
the canvas of its orientation as in evaluation (landscape, h <= w: `landscape_canvas`; portrait:
`portrait_canvas`; see `rethink_tf.data.preprocess.canvas_shapes`). Each image is first padded to the
L x L square holding both canvases (L = their longer side); the model sees the top-left crop of that
square, which is exactly the canvas the input pipeline builds (the padding is zero).
- by default, and for B = 1 (and B = 0) always: one model call per image, a tf.cond between two
  calls with static shapes [1, H, W, 3], one per canvas.
- with `batch_images=True` (`python -m rethink_tf.export --batch_images`), B >= 2: the images are
  grouped by canvas and each group goes through the model as one batch
  [N, H, W, 3] (N unknown when exported; every model layer treats images independently), then the
  outputs are put back in input order. A batch of same-size images (serving_default's [B, H, W, C])
  is one group: one model call for B images. Each image's outputs equal those of a call with that
  image alone up to float32 rounding (oneDNN blocks batched convolutions differently: ~1e-5 px on
  boxes, ~1e-6 on scores); labels and counts match, and a pasted mask pixel can flip only where its
  probability is within rounding of mask_threshold. Memory grows with B: send a few images per call.
  The batched call is a second trace of the model per canvas: the export takes about twice as long
  and the loaded SavedModel needs more memory, which is why it is a choice. On the 2-core CPU it was
  measured on it gained little: per image, B = 4 was 0-10 % faster than B = 1, within the run-to-run
  noise (R50-FPN at 512 px, benchmarks/serving_latency.py --batch=1,4); one image already keeps
  every core busy there.

With a `tta_detector` (`python -m rethink_tf.export --tta`) a fourth signature `serving_tta(images)`
takes what `serving_default` takes, checks the same input limits (those of the base eval size) and
returns the same outputs, computed with test-time augmentation (`rethink_tf.modeling.tta`: every
variant of each image, boxes merged by the model's post-processor, masks averaged); `config()`
records its settings under "tta".

Besides the signatures the SavedModel carries `label_map()` (a tf.function returning
`category_ids` int32 [K] and `category_names` string [K] for labels 1..K) so clients can name
classes without the training dataset.
"""
from typing import Sequence

import tensorflow as tf

from rethink_tf.data import preprocess
from rethink_tf.ops import masks as mask_ops
from rethink_tf.utils import validate

# Input limits in pixels (module docstring).
MIN_IMAGE_SIDE = 8
MIN_RESIZED_SIDE = 32


def within_input_limits(height, width, short_side, max_size):
    """The input limits (module docstring) for an image of height x width pixels (ints or int32 scalar
    tensors) at the eval resize (short_side, max_size) -> (ok bool tensor, the resized shorter side
    needed, resized height, resized width int32 tensors)."""
    resized_h, resized_w = preprocess.scaled_size(tf.maximum(height, 1), tf.maximum(width, 1), short_side,
                                                  max_size)
    need = min(MIN_RESIZED_SIDE, short_side)
    ok = tf.logical_and(tf.minimum(height, width) >= MIN_IMAGE_SIDE, tf.minimum(resized_h, resized_w) >= need)
    return ok, need, resized_h, resized_w


class _Untracked:
    """Holds an object out of tf.Module's dependency tracking (see DetectionExportModule)."""

    def __init__(self, value):
        self.value = value


class DetectionExportModule(tf.Module):
    """Wraps a Mask R-CNN for export; see the module docstring for the signatures."""

    def __init__(self,
                 model,
                 *,
                 category_ids: Sequence[int],
                 category_names: Sequence[str],
                 short_side: int,
                 max_size: int,
                 landscape_canvas: Sequence[int],
                 portrait_canvas: Sequence[int] | None = None,
                 pixel_mean: Sequence[float] = preprocess.PIXEL_MEAN,
                 pixel_std: Sequence[float] | None = None,
                 channel_order: str = "rgb",
                 paste_masks: bool = True,
                 mask_threshold: float = 0.5,
                 batch_images: bool = False,
                 tta_detector=None,
                 name: str = "detection_export"):
        """
        Args:
            model: the Keras MaskRCNN (built, weights restored); called as
                `model({"images", "image_info"}, training=False)`.
            category_ids, category_names: dataset category id and name of labels 1..K, in order.
            short_side, max_size: the eval resize (pixels), as in the input pipeline.
            landscape_canvas, portrait_canvas: (H, W) canvases of images with h <= w and h > w
                (model_dir.InferenceConfig); portrait default: the landscape canvas transposed.
            pixel_mean, pixel_std, channel_order: the normalization used in training (std None = mean
                only; preprocess.input_normalization).
            paste_masks: also output masks pasted at the original image size.
            mask_threshold: probability at which pasted masks are binarized.
            batch_images: run batches of B >= 2 images through the model one call per canvas
                (module docstring); costs a second model trace per canvas (export about twice as
                long, more memory when loaded).
            tta_detector: a `rethink_tf.modeling.tta.TTADetector` of `model` for the `serving_tta`
                signature, or None.
        """
        super().__init__(name=name)
        if len(category_ids) != len(category_names):
            raise ValueError(f"{len(category_ids)} category ids but {len(category_names)} names")
        landscape = tuple(int(v) for v in landscape_canvas)
        portrait = landscape[::-1] if portrait_canvas is None else tuple(int(v) for v in portrait_canvas)
        fits = {"landscape_canvas": min(short_side, max_size) <= landscape[0] and max_size <= landscape[1],
                "portrait_canvas": max_size <= portrait[0] and min(short_side, max_size) <= portrait[1]}
        for name, ok in fits.items():
            if not ok:
                raise ValueError(f"{name} {landscape if name[0] == 'l' else portrait} cannot hold an image "
                                 f"resized to short side {short_side}, max_size {max_size}")
        if not model.variables:
            raise ValueError("DetectionExportModule: the model has no variables yet; build it first "
                             "(e.g. MaskRCNN.build_networks) and restore its weights")
        # The SavedModel tracks the model's variables, not the Keras object: the functions capture
        # only variables, and Keras layers may hold attributes the SavedModel format cannot store.
        self._model = _Untracked(model)
        self.model_variables = [v.value if hasattr(v, "value") else v for v in model.variables]
        self._category_ids = [int(i) for i in category_ids]
        self._category_names = [str(n) for n in category_names]
        self._short_side = int(short_side)
        self._max_size = int(max_size)
        self._canvases = {"landscape": landscape, "portrait": portrait}
        self._square = max(landscape + portrait)  # side of the square holding both canvases
        self._pixel_mean = tuple(float(v) for v in pixel_mean)
        self._pixel_std = None if pixel_std is None else tuple(float(v) for v in pixel_std)
        self._channel_order = str(channel_order)
        self._paste_masks = bool(paste_masks)
        self._mask_threshold = float(mask_threshold)
        # The model's paste convention (build_postprocessor.mask_paste; "torchvision" for its imports).
        self._paste_fn = mask_ops.paste_function(
            getattr(getattr(model, "postprocessor", None), "mask_paste", "detectron"), "tf")
        self._detect_fn = None
        if hasattr(model, "anchors"):
            # MaskRCNN caches its anchors as numpy on first use, which cannot happen inside a
            # tf.function: fill the cache for our canvases now, eagerly.
            for canvas in self._canvases.values():
                model.anchors(canvas)
        # The per-image model call, traced once: its outputs give the structure tf.map_fn needs,
        # and every signature reuses this trace.
        canvas_spec = tf.TensorSpec([self._square, self._square, 3], tf.float32)
        info_spec = tf.TensorSpec([4, 2], tf.float32)
        self._run_model_fn = _Untracked(tf.function(self._run_model,
                                                    input_signature=[canvas_spec, info_spec]))
        example = self._run_model_fn.value.get_concrete_function().structured_outputs
        self._output_spec = {k: tf.TensorSpec(v.shape, v.dtype) for k, v in example.items()}
        # With batch_images, the batched model call per canvas (B >= 2, see _detect), traced once each.
        self._batch_images = bool(batch_images)
        self._run_batch_fns = {
            canvas: _Untracked(tf.function(
                self._run_batch, input_signature=[tf.TensorSpec([None, *canvas, 3], tf.float32),
                                                  tf.TensorSpec([None, 4, 2], tf.float32)]))
            for canvas in set(self._canvases.values())} if self._batch_images else {}
        for fn in self._run_batch_fns.values():
            fn.value.get_concrete_function()
        self._tta = None if tta_detector is None else _Untracked(tta_detector)
        if tta_detector is not None:  # traced once here (both orientations), reused by serving_tta
            self._tta_fn = _Untracked(tf.function(
                tta_detector.detect, input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)]))
            example = self._tta_fn.value.get_concrete_function().structured_outputs
            self._tta_output_spec = {k: tf.TensorSpec(v.shape[1:], v.dtype) for k, v in example.items()}
            self.serve_images_tta = tf.function(
                self._serve_images_tta,
                input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8, name="images")])

    # ---- signatures ---------------------------------------------------------------------------

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8, name="images")])
    def serve_images(self, images):
        """uint8 [B, H, W, C] RGB / gray / RGBA -> detections (see module docstring)."""
        images = _to_rgb(images, "serving_default: images")
        canvases, image_info = tf.map_fn(
            lambda args: self._preprocess(self._check_image(args[0], "serving_default: images", args[1])),
            (images, tf.range(tf.shape(images)[0])),
            fn_output_signature=(tf.TensorSpec([self._square] * 2 + [3], tf.float32),
                                 tf.TensorSpec([4, 2], tf.float32)))
        return self.detect(canvases, image_info)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_image_bytes(self, image_bytes):
        """string [B] encoded JPEG/PNG/GIF/BMP -> detections (see module docstring)."""
        return self.detect(*self._decode_and_preprocess(image_bytes, "image_bytes"))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="serialized_tf_example")])
    def serve_tf_example(self, serialized_tf_example):
        """string [B] serialized tf.Example with an `image/encoded` bytes feature -> detections."""
        features = tf.io.parse_example(
            serialized_tf_example, {"image/encoded": tf.io.FixedLenFeature([], tf.string)})
        return self.detect(*self._decode_and_preprocess(features["image/encoded"],
                                                        "tf_example image/encoded"))

    def _serve_images_tta(self, images):
        """uint8 [B, H, W, C] RGB / gray / RGBA -> detections with test-time augmentation
        (`serve_images_tta`, a tf.function made in __init__ when there is a tta_detector)."""
        images = _to_rgb(images, "serving_tta: images")

        def one(args):
            image = self._check_image(args[0], "serving_tta: images", args[1])
            outputs = self._tta_fn.value(image)
            return {k: v[0] for k, v in outputs.items()}

        outputs = tf.map_fn(one, (images, tf.range(tf.shape(images)[0])),
                            fn_output_signature=self._tta_output_spec, parallel_iterations=1)
        image_info = outputs.pop("image_info")
        return self._finish(outputs, image_info)

    @tf.function(input_signature=[])
    def label_map(self):
        """Returns {"category_ids": int32 [K], "category_names": string [K]} for labels 1..K."""
        return {"category_ids": tf.constant(self._category_ids, tf.int32),
                "category_names": tf.constant(self._category_names, tf.string)}

    def config(self):
        """The preprocessing and mask settings baked into the export (a json-able dict)."""
        return {"short_side": self._short_side, "max_size": self._max_size,
                "landscape_canvas": list(self._canvases["landscape"]),
                "portrait_canvas": list(self._canvases["portrait"]), "pixel_mean": list(self._pixel_mean),
                "pixel_std": None if self._pixel_std is None else list(self._pixel_std),
                "channel_order": self._channel_order,
                "paste_masks": self._paste_masks, "mask_threshold": self._mask_threshold,
                "batch_images": self._batch_images,
                "min_image_side": MIN_IMAGE_SIDE,
                "min_resized_side": min(MIN_RESIZED_SIDE, self._short_side),
                "outputs": sorted(self._output_names()),
                "tta": None if self._tta is None else self._tta.value.augmentation.config()}

    def _output_names(self):
        names = {"detection_boxes", "detection_scores", "detection_classes", "num_detections",
                 "image_shape"}
        if "detection_keypoints" in self._output_spec:
            names.add("detection_keypoints")
        if "detection_masks" in self._output_spec:
            names.add("detection_box_masks")
            if self._paste_masks:
                names.add("detection_masks")
        return names

    def signatures(self):
        """The serving signatures (three; serving_tta too with a tta_detector), keyed by SavedModel name."""
        signatures = {"serving_default": self.serve_images.get_concrete_function(),
                      "image_bytes": self.serve_image_bytes.get_concrete_function(),
                      "tf_example": self.serve_tf_example.get_concrete_function()}
        if self._tta is not None:
            signatures["serving_tta"] = self.serve_images_tta.get_concrete_function()
        return signatures

    # ---- pieces -------------------------------------------------------------------------------

    def _check_image(self, image, what, index):
        """uint8 [h, w, 3] -> the same image, after asserting the input limits (module docstring)."""
        shape = tf.shape(image)
        h, w = shape[0], shape[1]
        ok, need, resized_h, resized_w = within_input_limits(h, w, self._short_side, self._max_size)
        message = tf.strings.format(
            what + "[{}] is {}x{} px (height x width): the detector cannot mean anything on it. Each "
            f"side must be >= {MIN_IMAGE_SIDE} px, and after the eval resize (shorter side -> "
            f"{self._short_side}, longer side <= {self._max_size}) the shorter side must be >= {need} px "
            f"(aspect ratio <= {self._max_size / need:.4g}); it would be {{}}x{{}}.",
            (index, h, w, resized_h, resized_w))
        with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
            return tf.identity(image)

    def _preprocess(self, image):
        """uint8 [h, w, 3] -> (normalized square float32 [L, L, 3], image_info float32 [4, 2])."""
        canvas, image_info = preprocess.resize_and_pad(
            image, self._short_side, self._max_size, self._square)
        canvas = preprocess.normalize_image(canvas, mean=self._pixel_mean, std=self._pixel_std,
                                            channel_order=self._channel_order,
                                            image_info=image_info)
        return canvas, image_info

    def _decode_and_preprocess(self, encoded, what):
        """string [B] -> squares [B, L, L, 3] and image_info [B, 4, 2]; refuses non-images."""
        def one(args):
            data, index = args
            head = tf.strings.substr(data, 0, 4)
            is_image = tf.reduce_any(tf.stack([
                tf.strings.substr(head, 0, len(sig)) == sig for sig in validate.ENCODED_IMAGE_SIGNATURES]))
            message = tf.strings.format(
                what + "[{}] is not an encoded image (expected JPEG, PNG, GIF or BMP bytes); "
                "its first bytes are {}", (index, head))
            with tf.control_dependencies([tf.debugging.Assert(is_image, [message])]):
                # The input pipeline's decoder: the same pixels as in training (accurate JPEG IDCT).
                image = preprocess.decode_image_bytes(data)
            return self._preprocess(self._check_image(image, what, index))

        return tf.map_fn(
            one, (encoded, tf.range(tf.shape(encoded)[0])),
            fn_output_signature=(tf.TensorSpec([self._square] * 2 + [3], tf.float32),
                                 tf.TensorSpec([4, 2], tf.float32)))

    @property
    def model(self):
        return self._model.value

    def _run_model(self, square, image_info):
        """One image: square [L, L, 3], image_info [4, 2] -> the model's outputs without batch dim,
        computed on the canvas of the image's orientation (a top-left crop of the square)."""
        def on(canvas_hw):
            canvas = square[:canvas_hw[0], :canvas_hw[1]]
            outputs = self.model({"images": canvas[None], "image_info": image_info[None]},
                                 training=False)
            return {key: value[0] for key, value in outputs.items()}

        landscape, portrait = self._canvases["landscape"], self._canvases["portrait"]
        if landscape == portrait:
            return on(landscape)
        return tf.cond(preprocess.is_portrait(image_info[0, 0], image_info[0, 1]),
                       lambda: on(portrait), lambda: on(landscape))

    def _run_batch(self, canvases, image_info):
        """Images of one canvas: canvases [N, h, w, 3], image_info [N, 4, 2] -> the model's
        outputs [N, ...] from one model call (N unknown when traced)."""
        return self.model({"images": canvases, "image_info": image_info}, training=False)

    def detect(self, canvases, image_info):
        """Preprocessed batch -> detections: the part shared by the three signatures.

        Args:
            canvases: float32 [B, L, L, 3] normalized images padded at the bottom/right to the square
                holding both canvases (L = their longer side); image_info: float32 [B, 4, 2].
        Returns:
            the signatures' output dict (module docstring).
        """
        if self._detect_fn is None:  # one trace shared by every signature
            spec = [tf.TensorSpec([None, self._square, self._square, 3], tf.float32),
                    tf.TensorSpec([None, 4, 2], tf.float32)]
            self._detect_fn = _Untracked(tf.function(self._detect, input_signature=spec))
        return self._detect_fn.value(canvases, image_info)

    def _detect(self, canvases, image_info):
        """Runs the model (one static-shape call per image; with batch_images, B >= 2 images: one
        call per canvas on the images of that canvas), maps labels to category ids and pastes masks
        if asked."""
        if not self._batch_images:
            return self._finish(self._detect_one_by_one(canvases, image_info), image_info)
        outputs = tf.cond(tf.shape(canvases)[0] <= 1,
                          lambda: self._detect_one_by_one(canvases, image_info),
                          lambda: self._detect_batched(canvases, image_info))
        outputs = {k: tf.ensure_shape(v, [None, *self._output_spec[k].shape]) for k, v in outputs.items()}
        return self._finish(outputs, image_info)

    def _detect_one_by_one(self, canvases, image_info):
        """[B, L, L, 3] squares -> the model's outputs [B, ...], one static [1, h, w, 3] call each."""
        return tf.map_fn(lambda args: self._run_model_fn.value(*args), (canvases, image_info),
                         fn_output_signature=self._output_spec, parallel_iterations=1)

    def _detect_batched(self, canvases, image_info):
        """[B, L, L, 3] squares -> the model's outputs [B, ...] in input order: the images of each
        canvas (orientation) go through the model as one batch, cropped to that canvas."""
        portrait = preprocess.is_portrait(image_info[:, 0, 0], image_info[:, 0, 1])
        landscape_hw, portrait_hw = self._canvases["landscape"], self._canvases["portrait"]
        groups = ([(landscape_hw, tf.ones_like(portrait))] if landscape_hw == portrait_hw else
                  [(landscape_hw, tf.logical_not(portrait)), (portrait_hw, portrait)])
        indices, parts = [], []
        for (h, w), member in groups:
            index = tf.cast(tf.where(member)[:, 0], tf.int32)
            fn = self._run_batch_fns[(h, w)].value
            group_canvases = tf.gather(canvases, index)[:, :h, :w]
            group_info = tf.gather(image_info, index)
            empty = {k: tf.zeros([0, *spec.shape], spec.dtype) for k, spec in self._output_spec.items()}
            parts.append(tf.cond(tf.size(index) > 0, lambda: fn(group_canvases, group_info),
                                 lambda: empty))
            indices.append(index)
        return {k: tf.dynamic_stitch(indices, [part[k] for part in parts]) for k in self._output_spec}

    def _finish(self, outputs, image_info):
        """The model's detections [B, ...] (labels, original pixels) -> the signatures' outputs."""
        num = tf.cast(outputs["num_detections"], tf.int32)
        max_det = tf.shape(outputs["detection_scores"])[1]
        valid = tf.range(max_det)[None, :] < num[:, None]  # [B, D]
        labels = tf.cast(outputs["detection_classes"], tf.int32)
        table = tf.constant([0] + self._category_ids, tf.int32)
        classes = tf.where(valid, tf.gather(table, tf.clip_by_value(labels, 0, len(self._category_ids))),
                           0)
        validf = tf.cast(valid, tf.float32)
        result = {
            "detection_boxes": outputs["detection_boxes"] * validf[..., None],
            "detection_scores": outputs["detection_scores"] * validf,
            "detection_classes": classes,
            "num_detections": num,
            "image_shape": tf.cast(tf.round(image_info[:, 0, :]), tf.int32),
        }
        if "detection_keypoints" in outputs:
            result["detection_keypoints"] = outputs["detection_keypoints"] * validf[..., None, None]
        if "detection_masks" in outputs:
            box_masks = outputs["detection_masks"] * validf[..., None, None]
            result["detection_box_masks"] = box_masks
            if self._paste_masks:
                result["detection_masks"] = self._paste(box_masks, result["detection_boxes"],
                                                        result["image_shape"], valid)
        return result

    def _paste(self, box_masks, boxes, image_shape, valid):
        """[B, D, M, M] probs + [B, D, 4] boxes -> uint8 [B, D, H, W] (H, W = batch max size)."""
        max_hw = tf.maximum(tf.reduce_max(image_shape, axis=0), 0)  # empty batch: 0, not INT_MIN

        def one(args):
            masks, image_boxes, hw, keep = args
            pasted = self._paste_fn(masks, image_boxes, (hw[0], hw[1]), threshold=self._mask_threshold)
            pasted = tf.cast(pasted, tf.uint8) * tf.cast(keep, tf.uint8)[:, None, None]
            return tf.pad(pasted, [[0, 0], [0, max_hw[0] - hw[0]], [0, max_hw[1] - hw[1]]])

        # An empty batch: map_fn cannot stack zero masks of unknown size, and there are none to paste.
        return tf.cond(
            tf.shape(box_masks)[0] > 0,
            lambda: tf.map_fn(one, (box_masks, boxes, image_shape, valid),
                              fn_output_signature=tf.TensorSpec([None, None, None], tf.uint8),
                              parallel_iterations=1),
            lambda: tf.zeros([0, tf.shape(box_masks)[1], 0, 0], tf.uint8))


def _to_rgb(images, what):
    """uint8 [B, H, W, C], C in {1, 3, 4} -> [B, H, W, 3]: gray copied to R, G, B; alpha dropped."""
    channels = tf.shape(images)[-1]
    ok = tf.reduce_any(tf.equal(channels, [1, 3, 4]))
    message = tf.strings.format(what + " have {} channels; expected 3 (RGB), 1 (gray) or 4 (RGBA)",
                                channels)
    with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
        rgb = tf.cond(tf.equal(channels, 1), lambda: tf.tile(images[..., :1], [1, 1, 1, 3]),
                      lambda: images[..., :3])
    return tf.ensure_shape(rgb, [None, None, None, 3])
