"""multilevel_anchors (keras-cv AnchorGenerator inside) against detectron2-style numpy anchors."""
import numpy as np
import pytest

from rethink_tf.ops import anchors

from . import reference as ref


@pytest.mark.parametrize("image_size", [(64, 64), (96, 128)])
def test_multilevel_anchors_match_reference(image_size):
    sizes = (32, 64, 128, 256, 512)
    ratios = (0.5, 1.0, 2.0)
    got = anchors.multilevel_anchors(image_size, 2, 6, sizes, ratios)
    counts = anchors.num_anchors_per_level(image_size, 2, 6, len(ratios))
    assert sorted(got) == [2, 3, 4, 5, 6]
    for level, size in zip(range(2, 7), sizes):
        want = ref.anchors_for_level(image_size, 2**level, size, ratios)
        assert got[level].shape == (counts[level], 4)
        np.testing.assert_allclose(got[level].numpy(), want, atol=1e-3)


def test_aspect_ratio_is_height_over_width_and_single_level():
    got = anchors.multilevel_anchors((32, 32), 4, 4, (128,), (2.0,))[4].numpy()
    heights, widths = got[:, 2] - got[:, 0], got[:, 3] - got[:, 1]
    np.testing.assert_allclose(heights / widths, 2.0, rtol=1e-5)
    np.testing.assert_allclose(heights * widths, 128.0**2, rtol=1e-5)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="sizes"):
        anchors.multilevel_anchors((64, 64), 2, 6, (32, 64))
