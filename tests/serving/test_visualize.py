"""Tests for rethink_tf.utils.visualize: what is drawn, where, and which inputs are refused."""
import numpy as np
import pytest

from rethink_tf.utils import visualize


def _blank(h=96, w=128):
    return np.zeros((h, w, 3), np.uint8)


def test_box_outline_has_class_color_and_input_untouched():
    image = _blank()
    out = visualize.draw_detections(image, [[40, 30, 80, 100]], [7], [0.9], line_width=1,
                                    font_size=10)
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
                                    mask_alpha=0.5, line_width=1, font_size=10)
    color = np.asarray(visualize.color_for_class(3), np.float32)
    expected_fill = np.round(0.5 * 100 + 0.5 * color)
    np.testing.assert_array_equal(out[30, 30], expected_fill)
    np.testing.assert_array_equal(out[20, 30], color)  # contour pixel
    np.testing.assert_array_equal(out[50, 50], (100, 100, 100))  # outside the mask


def test_threshold_and_padding_slots_are_skipped():
    image = _blank()
    out = visualize.draw_detections(
        image, [[10, 10, 50, 50], [20, 20, 60, 60], [0, 0, 0, 0]], [1, 2, 0], [0.2, 0.9, 0.0],
        score_threshold=0.5)
    color1 = visualize.color_for_class(1)
    assert not (out == np.asarray(color1, np.uint8)).all(-1).any(), "below-threshold box drawn"
    assert (out == np.asarray(visualize.color_for_class(2), np.uint8)).all(-1).any()


def test_class_names_appear_as_text_pixels():
    image = _blank(64, 200)
    named = visualize.draw_detections(image, [[40, 10, 60, 190]], [5], None,
                                      class_names={5: "airplane"}, font_size=12)
    numbered = visualize.draw_detections(image, [[40, 10, 60, 190]], [5], None, font_size=12)
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
    out = visualize.draw_detections(np.full((16, 16), 9, np.uint8), np.zeros((0, 4)), [])
    assert out.shape == (16, 16, 3) and (out == 9).all()


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
