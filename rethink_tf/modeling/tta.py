"""Test-time augmentation: Detectron's TEST.BBOX_AUG + MASK_AUG (detectron2's GeneralizedRCNNWithTTA).

Variants of one image (`TestTimeAugmentation.variants`), in Detectron's order of use:
    the base variant: the run's own eval resize (shorter side `short_side`, longer <= `max_size`, on the
        run's eval canvases), which alone is plain inference;
    its horizontal flip (`flip=True`);
    each of `scales` at the longer-side cap `TestTimeAugmentation.max_size`, and its flip.
Detectron's TTA configs (test_time_aug/e2e_mask_rcnn_R-50-FPN_2x, the X-152 1.44x baseline the
large from-scratch model follows) use scales (400, 500, 600, 700, 900, 1000, 1100, 1200) at max 2000,
flip at every scale, plus the base 800 / 1333 and its flip: 18 variants. Those are the defaults here.

Per variant the image is resized (bilinear, as the input pipeline), flipped after the resize (as the
training flip), placed at the top-left of the variant's canvas and normalized; the model's
features -> propose -> `roi_heads.predict_boxes` give pre-NMS class boxes [P, K', 4] and scores [P, K]
(Detectron's `im_detect_bbox`). Canvases: the base variant uses the run's eval canvases (the same
pixels as plain evaluation); a scale s uses `preprocess.canvas_shapes(s, max_size)` (one per
orientation: ceil32(s) x ceil32(max_size) and its transpose). Each canvas is one tf.function (one
trace, XLA with `jit_compile=True`), shared by a variant and its flip.

Boxes of every variant are mapped to the base variant's canvas frame (flip undone: x -> scaled_w - x,
then / variant scale * base scale; the base variant is left untouched, so a lone base variant is bit
for bit plain inference). IoU and weighted box averages are invariant under per-axis scaling, so
merging there is merging in original pixels (Detectron's frame) up to rounding; the post-processor's
`to_original` maps the result to original pixels at the end. Merge (Detectron's SCORE_HEUR /
COORD_HEUR = UNION): the candidates of all variants are concatenated and go through the model's one
post-processor (`DetectionPostProcessor.select`: score > threshold, per-class NMS, top-k), then with
`merge="vote"` (Detectron's TEST.BBOX_VOTE, enabled with VOTE_TH 0.9 in both configs above) each
kept box is replaced by the score-weighted mean of the same class's candidates above the score
threshold with IoU >= vote_iou to it (itself included), its score kept (SCORING_METHOD 'ID').
IoU here has no "+1" pixel (the project's continuous coordinates). `merge="nms"` keeps the NMS boxes
(detectron2's TTA). Detectron keeps every detection scoring at least the 100th score (ties may give
more); the post-processor's top-k keeps exactly `detections_per_image`.

Masks (MASK_AUG HEUR SOFT_AVG): for the final boxes, each variant runs its backbone again and the
mask branch (`roi_heads.forward_with_given_boxes`) on the boxes mapped into its canvas (mirrored for
flip variants); the M x M probabilities of flip variants are mirrored back (columns reversed) and the
probabilities averaged over variants. Empty detection slots stay 0.

Cost: 2 backbone passes per variant (boxes, then masks for the merged boxes, as Detectron; keeping
18 variants' FPN features instead would need ~0.2 GB each at 1200 / 2000), and the box head on every
variant's proposals. With the defaults and COCO's 800 / 1333 base the canvases add up to
2 x 800x1344 + 2 x 2016 x (416 + 512 + 608 + 704 + 928 + 1024 + 1120 + 1216) = 26.5 base canvases,
so about 53 plain backbone passes per image (the scale canvases are as wide as max_size allows, 2016,
whatever the image's aspect: static shapes; Detectron pads each image only to its own size).
Memory: one variant's activations at a time (the largest canvas, 1216 x 2016, is 2.3x the 800 x 1344
base canvas), plus the candidates, V x P x K' x 4 floats (18 x 1000 x 80 x 4 x 4 B = 23 MB).
Traces: eagerly (evaluation) two per canvas used (boxes, masks), at most 2 x 2 x (1 + len(scales)),
plus the merge; inside a SavedModel signature both orientations are in the graph.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import gin
import tensorflow as tf

from rethink_tf.data import preprocess
from rethink_tf.modeling.roi_heads.mask_branch import MaskBranch
from rethink_tf.utils import validate

MERGE_METHODS = ("vote", "nms")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One transformation of the input: shorter side and longer-side cap (pixels), horizontal flip."""
    short_side: int
    max_size: int
    flip: bool


@gin.configurable
class TestTimeAugmentation:
    """The TTA settings (module docstring); `evaluate --tta` and `export --tta` use the bound values.

    Args:
      scales: shorter sides (pixels) besides the run's eval size; () = the base variant only.
      max_size: longer-side cap (pixels) of the `scales` variants (the base keeps the run's own).
      flip: add the horizontal flip of every scale, base included.
      merge: "vote" (Detectron: NMS then box voting) or "nms" (detectron2: NMS only).
      vote_iou: box voting's IoU threshold (Detectron's TEST.BBOX_VOTE.VOTE_TH).
    """

    def __init__(self, scales: Sequence[int] = (400, 500, 600, 700, 900, 1000, 1100, 1200),
                 max_size: int = 2000, flip: bool = True, merge: str = "vote", vote_iou: float = 0.9):
        self.scales = validate.integers("TestTimeAugmentation.scales", scales, minimum=1)
        self.max_size = validate.integer("TestTimeAugmentation.max_size", max_size, minimum=1)
        validate.boolean("TestTimeAugmentation.flip", flip)
        self.flip = bool(flip)
        validate.one_of("TestTimeAugmentation.merge", merge, MERGE_METHODS)
        self.merge = merge
        self.vote_iou = float(validate.number("TestTimeAugmentation.vote_iou", vote_iou, minimum=0.0,
                                              maximum=1.0, exclusive_minimum=True))
        if len(set(self.scales)) != len(self.scales):
            raise validate.ConfigError(f"TestTimeAugmentation.scales={list(scales)!r}: repeated scale")

    def variants(self, short_side: int, max_size: int) -> list[Variant]:
        """The variants for a run whose eval resize is (short_side, max_size); the base one first."""
        sizes = [(int(short_side), int(max_size))] + [(s, self.max_size) for s in self.scales]
        if len(set(sizes)) != len(sizes):
            raise validate.ConfigError(
                f"TestTimeAugmentation.scales={list(self.scales)!r} with max_size={self.max_size} repeats the "
                f"run's eval size {short_side} / {max_size}, which is always the base variant: drop it")
        return [Variant(s, m, f) for s, m in sizes for f in ((False, True) if self.flip else (False,))]

    def config(self) -> dict:
        return {"scales": list(self.scales), "max_size": self.max_size, "flip": self.flip,
                "merge": self.merge, "vote_iou": self.vote_iou}


# ---- variant inputs -------------------------------------------------------------------------------

def variant_input(image, variant: Variant, canvas, pixel_mean=preprocess.PIXEL_MEAN, pixel_std=None,
                  channel_order="rgb"):
    """uint8 [h, w, 3] -> (normalized float32 [H, W, 3] on `canvas` (H, W), image_info float32 [4, 2]).

    The input pipeline's resize / pad / normalize, with the variant's flip applied after the resize.
    image_info describes the (flipped) resized image exactly as for an unflipped one.
    """
    resized, image_info = preprocess.resize_image(image, variant.short_side, variant.max_size)
    if variant.flip:
        resized = tf.reverse(resized, axis=[1])
    padded = preprocess.pad_to_canvas(resized, tuple(canvas))
    return (preprocess.normalize_image(padded, pixel_mean, pixel_std, image_info=image_info,
                                       channel_order=channel_order), image_info)


def _unflip_x(boxes, width):
    """yxyx [..., 4] -> mirrored about the vertical line x = width / 2 (width broadcast to [..., 1])."""
    y0, x0, y1, x1 = tf.unstack(boxes, axis=-1)
    return tf.stack([y0, width - x1, y1, width - x0], axis=-1)


def _per_box(values, rank):
    """[B, 2] per-image (y, x) values -> [B, 1, ..., 4] (yxyx) broadcastable to boxes of `rank`."""
    yxyx = tf.concat([values, values], axis=-1)
    return tf.reshape(yxyx, [-1] + [1] * (rank - 2) + [4])


def to_reference(boxes, image_info, flip: bool, reference_info):
    """Boxes in a variant's canvas pixels -> the reference (base variant's) canvas pixels.

    Args:
      boxes: float32 [B, ..., 4] yxyx in the variant's canvas (of the flipped image if `flip`).
      image_info: float32 [B, 4, 2] of the variant; reference_info: that of the reference variant.
    Returns:
      float32 boxes of the same shape: flip undone (x -> scaled_w - x), then scaled by
      reference scale / variant scale per axis.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    rank = boxes.shape.rank
    if flip:
        width = tf.reshape(image_info[:, 1, 1], [-1] + [1] * (rank - 2))
        boxes = _unflip_x(boxes, width)
    return boxes / _per_box(image_info[:, 2, :], rank) * _per_box(reference_info[:, 2, :], rank)


def from_reference(boxes, reference_info, image_info, flip: bool):
    """The inverse of `to_reference`: reference canvas pixels -> a variant's canvas (mirrored if flip)."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    rank = boxes.shape.rank
    boxes = boxes / _per_box(reference_info[:, 2, :], rank) * _per_box(image_info[:, 2, :], rank)
    if flip:
        boxes = _unflip_x(boxes, tf.reshape(image_info[:, 1, 1], [-1] + [1] * (rank - 2)))
    return boxes


# ---- merge ------------------------------------------------------------------------------------------

def _elementwise_iou(a, b):
    """IoU of yxyx boxes a [..., 4] and b [..., 4] (broadcast), continuous coordinates; 0 if no union."""
    ih = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    iw = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = ih * iw
    area = lambda t: tf.maximum(t[..., 2] - t[..., 0], 0.0) * tf.maximum(t[..., 3] - t[..., 1], 0.0)
    union = area(a) + area(b) - inter
    return tf.math.divide_no_nan(inter, union)


def box_voting(det_boxes, det_classes, boxes, scores, score_threshold: float, vote_iou: float):
    """Detectron's box voting: each detection's box -> the score-weighted mean of its class's candidates
    (score > score_threshold) with IoU >= vote_iou to it.

    Args:
      det_boxes: float32 [B, D, 4]; det_classes: int32 [B, D], 1..K (0 = empty slot, left unchanged).
      boxes: candidates float32 [B, N, K', 4] (K' = K, or 1 shared by every class); scores [B, N, K].
    Returns:
      float32 [B, D, 4] voted boxes (a detection without any voter, e.g. a degenerate box, keeps its box).
    """
    channel = tf.maximum(det_classes - 1, 0) if boxes.shape[2] != 1 else tf.zeros_like(det_classes)
    class_boxes = tf.gather(tf.transpose(boxes, [0, 2, 1, 3]), channel, batch_dims=1)  # [B, D, N, 4]
    class_scores = tf.gather(tf.transpose(scores, [0, 2, 1]), tf.maximum(det_classes - 1, 0),
                             batch_dims=1)  # [B, D, N]
    iou = _elementwise_iou(det_boxes[:, :, None, :], class_boxes)
    voter = tf.logical_and(iou >= vote_iou, class_scores > score_threshold)
    weights = tf.where(voter, class_scores, 0.0)
    total = tf.reduce_sum(weights, axis=2)
    voted = tf.reduce_sum(weights[..., None] * class_boxes, axis=2) / tf.maximum(total, 1e-12)[..., None]
    keep = tf.logical_and(det_classes > 0, total > 0)
    return tf.where(keep[..., None], voted, det_boxes)


def merge_detections(boxes, scores, postprocessor, method: str = "vote", vote_iou: float = 0.9):
    """Merges the concatenated candidates of all variants (one frame) into detections.

    Args:
      boxes: float32 [B, N, K', 4]; scores: float32 [B, N, K] (0 for invalid candidates).
      postprocessor: the model's `DetectionPostProcessor` (its `select` and `score_threshold`).
      method: "nms" or "vote" (module docstring).
    Returns:
      `postprocessor.select`'s dict (detection_boxes / scores / classes / num_detections), with the
      boxes voted when method == "vote".
    """
    validate.one_of("merge_detections.method", method, MERGE_METHODS)
    detections = dict(postprocessor.select(boxes, scores))
    if method == "vote":
        detections["detection_boxes"] = box_voting(
            detections["detection_boxes"], detections["detection_classes"], boxes, scores,
            float(postprocessor.score_threshold), vote_iou)
    return detections


def average_masks(mask_probs, flips):
    """Mean of the variants' mask probabilities, those of flip variants mirrored back first.

    Args:
      mask_probs: list of float32 [B, D, M, M], one per variant (each in its own box frame);
      flips: list of bool, the variants' flips.
    Returns:
      float32 [B, D, M, M].
    """
    if len(mask_probs) != len(flips) or not mask_probs:
        raise ValueError(f"average_masks: {len(mask_probs)} mask sets for {len(flips)} variants")
    unflipped = [tf.reverse(m, axis=[-1]) if f else m for m, f in zip(mask_probs, flips)]
    return tf.add_n(unflipped) / float(len(unflipped))


# ---- the augmented detector -------------------------------------------------------------------------

class TTADetector:
    """A trained detector run with test-time augmentation on one original image at a time.

    `detect(image)`: uint8 [h, w, 3] -> the keys `model(batch, training=False)` returns, with a batch
    dimension of 1 (detection_boxes in original pixels, detection_scores, detection_classes,
    num_detections, detection_masks when the model has a mask branch), plus `image_info` [1, 4, 2] of
    the base variant (row 0: the original size). A tf.function (one trace; images of either
    orientation), usable inside a SavedModel signature.

    Args:
      model: the built, restored MaskRCNN (features / propose / roi_heads / postprocessor).
      augmentation: a `TestTimeAugmentation`.
      inference: the run's eval preprocessing (`rethink_tf.serving.model_dir.InferenceConfig`:
        short_side, max_size, landscape_canvas, portrait_canvas, pixel_mean, pixel_std).
      jit_compile: compile each per-canvas function with XLA.
    """

    def __init__(self, model, augmentation: TestTimeAugmentation, inference, jit_compile: bool = False):
        self.model = model
        self.augmentation = augmentation
        self.variants = augmentation.variants(inference.short_side, inference.max_size)
        self.pixel_mean = tuple(inference.pixel_mean)
        self.pixel_std = None if inference.pixel_std is None else tuple(inference.pixel_std)
        self.channel_order = getattr(inference, "channel_order", "rgb")
        base = (tuple(inference.landscape_canvas), tuple(inference.portrait_canvas))
        is_base = lambda v: (v.short_side, v.max_size) == (inference.short_side, inference.max_size)
        self.canvases = {v: base if is_base(v) else preprocess.canvas_shapes(v.short_side, v.max_size)
                         for v in self.variants}
        self.jit_compile = bool(jit_compile)
        self.has_masks = bool(model.has_masks)
        self._boxes_fns, self._masks_fns = {}, {}
        for pair in self.canvases.values():
            for canvas in pair:
                if hasattr(model, "anchors"):  # fill the model's eager anchor cache outside any trace
                    model.anchors(canvas)
        self._merge_fn = tf.function(self._merge)
        self._variant_boxes_fn = tf.function(self._variant_boxes)
        self._finish_fn = tf.function(self._finish)
        self._square = all(pair[0] == pair[1] for pair in self.canvases.values())

    def detect(self, image):
        """uint8 [h, w, 3] -> detections (class docstring). Eagerly, the image's orientation picks the
        canvases in Python and only the per-canvas functions and the merge are traced; in a graph
        (a SavedModel signature) a tf.cond on the orientation holds both."""
        image = tf.convert_to_tensor(image, tf.uint8)
        if self._square:
            return self._detect_on(image, 0)
        if tf.executing_eagerly():
            return self._detect_on(image, int(preprocess.is_portrait(int(image.shape[0]), int(image.shape[1]))))
        portrait = preprocess.is_portrait(tf.shape(image)[0], tf.shape(image)[1])
        return tf.cond(portrait, lambda: self._detect_on(image, 1), lambda: self._detect_on(image, 0))

    # one tf.function per canvas, shared by the variants (a scale and its flip) drawn on it
    def _boxes_fn(self, canvas):
        if canvas not in self._boxes_fns:
            def boxes(images, image_info):
                features = self.model.features(images, training=False)
                proposals, valid = self.model.propose(features, image_info, training=False,
                                                      image_size=canvas)
                return self.model.roi_heads.predict_boxes(features, proposals, valid, image_info)
            self._boxes_fns[canvas] = tf.function(boxes, jit_compile=self.jit_compile)
        return self._boxes_fns[canvas]

    def _masks_fn(self, canvas):
        if canvas not in self._masks_fns:
            def masks(images, boxes, classes):
                features = self.model.features(images, training=False)
                return self.model.roi_heads.forward_with_given_boxes(
                    features, boxes, classes, training=False)[MaskBranch.output_key]
            self._masks_fns[canvas] = tf.function(masks, jit_compile=self.jit_compile)
        return self._masks_fns[canvas]

    def _detect_on(self, image, orientation):
        """All variants on their canvases of `orientation` (0 landscape, 1 portrait)."""
        inputs, all_boxes, all_scores = [], [], []
        for variant in self.variants:
            canvas = self.canvases[variant][orientation]
            images, image_info = variant_input(image, variant, canvas, self.pixel_mean, self.pixel_std,
                                                self.channel_order)
            images, image_info = images[None], image_info[None]
            boxes, scores = self._boxes_fn(canvas)(images, image_info)
            inputs.append((canvas, images, image_info))
            all_boxes.append(boxes)
            all_scores.append(scores)
        infos = [info for _, _, info in inputs]
        detections = self._merge_fn(all_boxes, all_scores, infos)
        if not self.has_masks:
            return self._finish_fn(detections, infos, None)
        probs = []
        for variant, (canvas, images, image_info), boxes in zip(
                self.variants, inputs, self._variant_boxes_fn(detections["detection_boxes"], infos)):
            probs.append(self._masks_fn(canvas)(images, boxes, detections["detection_classes"]))
        return self._finish_fn(detections, infos, probs)

    def _merge(self, all_boxes, all_scores, infos):
        """Per-variant candidates -> merged detections in the base variant's canvas frame."""
        reference = infos[0]  # the base variant: its frame is the reference, its boxes untouched
        mapped = [all_boxes[0]] + [to_reference(b, info, v.flip, reference)
                                   for b, info, v in zip(all_boxes[1:], infos[1:], self.variants[1:])]
        return merge_detections(tf.concat(mapped, axis=1), tf.concat(all_scores, axis=1),
                                self.model.postprocessor, self.augmentation.merge, self.augmentation.vote_iou)

    def _variant_boxes(self, boxes, infos):
        """Merged boxes (base canvas frame) -> each variant's canvas (mirrored for flip variants)."""
        return [boxes] + [from_reference(boxes, infos[0], info, v.flip)
                          for info, v in zip(infos[1:], self.variants[1:])]

    def _finish(self, detections, infos, probs):
        out = dict(self.model.postprocessor.to_original(detections, infos[0]))
        if probs is not None:
            masks = average_masks(probs, [v.flip for v in self.variants])
            out["detection_masks"] = tf.where((detections["detection_classes"] > 0)[..., None, None], masks, 0.0)
        out["image_info"] = infos[0]
        return out
