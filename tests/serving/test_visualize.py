"""Tests for rethink_tf.utils.visualize: what is drawn, where, and which inputs are refused."""
import numpy as np
import pytest

from rethink_tf.utils import visualize


def _blank(h=96, w=128):
    return np.zeros((h, w, 3), np.uint8)


def test_box_outline_has_class_color_and_input_untouched():
    image = _blank()
    out = visualize.draw_detections(image, [[40, 30, 80, 100]], [7], [0.9], line_width=1,
                                    font_size=10, min_side=None)
    color = visualize.color_for_class(7)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not image.any(), "the caller's image must not be modified"
    # Bottom edge and right edge (the label sits above the top edge) carry the class color.
    np.testing.assert_array_equal(out[80, 50], color)
    np.testing.assert_array_equal(out[60, 100], color)
    # Inside the box, away from the label, nothing is drawn.
    np.testing.assert_array_equal(out[65, 60], (0, 0, 0))


def test_mask_is_blended_with_alpha_and_outlined():
    image = np.full((64, 64, 3), 100, np.uint8)
    mask = np.zeros((1, 64, 64), np.uint8)
    mask[0, 20:40, 20:40] = 1
    out = visualize.draw_detections(image, [[0, 0, 63, 63]], [3], [1.0], mask,
                                    mask_alpha=0.5, line_width=1, font_size=10, min_side=None)
    color = np.asarray(visualize.color_for_class(3), np.float32)
    expected_fill = np.round(0.5 * 100 + 0.5 * color)
    np.testing.assert_array_equal(out[30, 30], expected_fill)
    np.testing.assert_array_equal(out[20, 30], color)  # contour pixel
    np.testing.assert_array_equal(out[50, 50], (100, 100, 100))  # outside the mask


def test_threshold_and_padding_slots_are_skipped():
    image = _blank()
    out = visualize.draw_detections(
        image, [[10, 10, 50, 50], [20, 20, 60, 60], [0, 0, 0, 0]], [1, 2, 0], [0.2, 0.9, 0.0],
        score_threshold=0.5, min_side=None)
    color1 = visualize.color_for_class(1)
    assert not (out == np.asarray(color1, np.uint8)).all(-1).any(), "below-threshold box drawn"
    assert (out == np.asarray(visualize.color_for_class(2), np.uint8)).all(-1).any()


def test_class_names_appear_as_text_pixels():
    image = _blank(64, 200)
    named = visualize.draw_detections(image, [[40, 10, 60, 190]], [5], None,
                                      class_names={5: "airplane"}, font_size=12, min_side=None)
    numbered = visualize.draw_detections(image, [[40, 10, 60, 190]], [5], None, font_size=12,
                                         min_side=None)
    # The label band above the box is wider for "airplane" than for "5".
    color = np.asarray(visualize.color_for_class(5), np.uint8)
    band = lambda im: (im[:38] == color).all(-1).any(0).sum()
    assert band(named) > band(numbered) > 0


def test_bad_inputs_are_refused_with_clear_errors():
    with pytest.raises(ValueError, match="uint8"):
        visualize.draw_detections(np.zeros((8, 8, 3), np.float32), [], [])
    with pytest.raises(ValueError, match="classes"):
        visualize.draw_detections(_blank(), [[0, 0, 1, 1]], [1, 2])
    with pytest.raises(ValueError, match="masks"):
        visualize.draw_detections(_blank(), [[0, 0, 1, 1]], [1], masks=np.zeros((1, 4, 4)))


def test_empty_detections_and_grayscale():
    out = visualize.draw_detections(np.full((16, 16), 9, np.uint8), np.zeros((0, 4)), [],
                                    min_side=None)
    assert out.shape == (16, 16, 3) and (out == 9).all()
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 3] = 255
    out = visualize.draw_detections(rgba, np.zeros((0, 4)), [], min_side=None)
    assert out.shape == (16, 16, 3) and not out.any(), "alpha must be dropped, not drawn"


def test_denormalize_inverts_pipeline_normalization():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (5, 7, 3)).astype(np.float32)
    mean, std = np.asarray(visualize.PIXEL_MEAN), np.asarray(visualize.PIXEL_STD)
    np.testing.assert_array_equal(visualize.denormalize_image(image - mean), image)
    np.testing.assert_array_equal(
        visualize.denormalize_image((image - mean) / std, std=visualize.PIXEL_STD), image)


def test_class_names_by_id_and_label():
    cats = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    assert visualize.class_names_by_id(cats) == {1: "person", 18: "dog"}
    assert visualize.class_names_by_id(cats, key="label") == {1: "person", 2: "dog"}


def _crowd(count=40, seed=0, size=512):
    """`count` boxes (yxyx) crowded into the middle of a size x size image, overlapping each other."""
    rng = np.random.default_rng(seed)
    y0 = rng.uniform(0.15, 0.75, count) * size
    x0 = rng.uniform(0.1, 0.75, count) * size
    h = rng.uniform(0.04, 0.2, count) * size
    w = rng.uniform(0.04, 0.2, count) * size
    return np.stack([y0, x0, y0 + h, x0 + w], 1)


def test_labels_of_crowded_boxes_never_overlap_and_avoid_box_edges():
    boxes = _crowd()
    xyxy = boxes[:, [1, 0, 3, 2]]
    sizes = np.tile([[70.0, 16.0]], (len(boxes), 1))
    rects = visualize.place_labels(xyxy, sizes, (512, 512), line_width=2)
    assert rects.shape == (len(boxes), 4)
    np.testing.assert_allclose(rects[:, 2:] - rects[:, :2], sizes)
    assert (rects[:, :2] >= 0).all() and (rects[:, 2:] <= 512).all(), "label outside the picture"
    overlap = visualize._overlap(rects, rects)
    np.fill_diagonal(overlap, 0)
    assert overlap.max() == 0, "two labels overlap"
    # Over box outlines: far less than where the old layout put labels (above each box's top-left).
    naive = np.stack([xyxy[:, 0], xyxy[:, 1] - 18, xyxy[:, 0] + 70, xyxy[:, 1] - 2], 1)
    edges = visualize.box_edges(xyxy, 2)
    covered = visualize._overlap(rects, edges).sum()
    assert covered < 0.25 * visualize._overlap(naive, edges).sum()
    # With room around it, a lone box's label sits right above it, covering no outline.
    lone = visualize.place_labels([[100, 100, 200, 200]], [[60, 15]], (512, 512), 2)
    np.testing.assert_allclose(lone, [[100, 83, 160, 98]])


def test_small_images_are_upscaled_for_drawing():
    image = np.full((60, 80, 3), 50, np.uint8)
    assert visualize.drawing_scale((60, 80)) == pytest.approx(visualize.DRAW_MIN_SIDE / 60)
    assert visualize.drawing_scale((600, 800)) == 1.0
    assert visualize.drawing_scale((60, 80), None) == 1.0
    mask = np.zeros((1, 60, 80), np.uint8)
    mask[0, 10:30, 20:40] = 1
    out = visualize.draw_detections(image, [[10, 20, 30, 40]], [3], [0.9], mask, {3: "cat"})
    scale = visualize.DRAW_MIN_SIDE / 60
    assert out.shape == (512, round(80 * scale), 3)
    color = np.asarray(visualize.color_for_class(3), np.uint8)
    # The box outline moved with the picture: its bottom edge is at y = 30 * scale.
    assert (out[int(30 * scale) - 1, int(25 * scale):int(35 * scale)] == color).all()
    # The mask fill is blended inside the scaled box, and the background is untouched far from it.
    assert (out[int(20 * scale), int(30 * scale)] != 50).any()
    assert (out[int(50 * scale), int(70 * scale)] == 50).all()
    # Text height follows the drawn picture, not the tiny input: the label block is >= 10 px high.
    label_rows = np.flatnonzero((out == color).all(-1).sum(1) > 20)
    assert len(label_rows) >= 10


def test_one_score_threshold_is_the_default():
    image = np.zeros((512, 512, 3), np.uint8)
    boxes = [[100, 100, 200, 200], [300, 300, 400, 400]]
    threshold = visualize.SCORE_THRESHOLD
    out = visualize.draw_detections(image, boxes, [1, 2], [threshold - 0.01, threshold])
    assert not (out == np.asarray(visualize.color_for_class(1), np.uint8)).all(-1).any()
    assert (out == np.asarray(visualize.color_for_class(2), np.uint8)).all(-1).any()
