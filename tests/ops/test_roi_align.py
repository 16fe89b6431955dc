"""multilevel_roi_align / assign_levels against a loop-based Detectron ROIAlign in numpy."""
import numpy as np
import pytest
import tensorflow as tf

from rethink_tf.ops import roi_align

from . import reference as ref


def _features(rng, canvas, levels, channels):
    return {
        level: rng.normal(size=(2, canvas // 2**level, canvas // 2**level, channels)).astype(np.float32)
        for level in levels
    }


def test_assign_levels_matches_reference():
    rng = np.random.default_rng(4)
    boxes = np.concatenate([ref.random_boxes(rng, 30, 1000, 1, 900), [[0, 0, 0, 0], [0, 0, 224, 224], [0, 0, 112, 112]]])
    got = roi_align.assign_levels(boxes, 2, 5).numpy()
    np.testing.assert_array_equal(got, [ref.fpn_level(b, 2, 5) for b in boxes])
    assert got[-2] == 4 and got[-1] == 3 and got[-3] == 2


@pytest.mark.parametrize("method", roi_align.ROI_ALIGN_METHODS)
@pytest.mark.parametrize("output_size,sampling_ratio", [(7, 2), (4, 1), (3, 3)])
def test_multilevel_roi_align_matches_reference(output_size, sampling_ratio, method):
    rng = np.random.default_rng(5)
    canvas = 256
    features = _features(rng, canvas, range(2, 6), 3)
    # Sizes spread over all levels (sqrt area from ~3 to ~250 px), some crossing the canvas edge.
    boxes = np.stack([ref.random_boxes(rng, 12, canvas + 40, 2, 250) - 20 for _ in range(2)])
    got = roi_align.multilevel_roi_align(
        features, boxes, output_size, sampling_ratio, 2, 5, canonical_size=224 / 4, canonical_level=4,
        method=method).numpy()
    assert got.shape == (2, 12, output_size, output_size, 3)
    levels = roi_align.assign_levels(boxes, 2, 5, 224 / 4).numpy()
    assert len(set(levels.ravel())) >= 3, "test boxes should exercise several levels"
    for b in range(2):
        for r in range(12):
            level = levels[b, r]
            want = ref.roi_align(features[level][b], boxes[b, r], 1 / 2**level, output_size, sampling_ratio)
            np.testing.assert_allclose(got[b, r], want, atol=1e-4)


def test_single_level_roi_align_and_jit_gradients():
    rng = np.random.default_rng(6)
    features = {4: rng.normal(size=(1, 8, 8, 2)).astype(np.float32)}
    boxes = ref.random_boxes(rng, 5, 128, 4, 100)[None]

    @tf.function(jit_compile=True)
    def run(feature, boxes):
        with tf.GradientTape() as tape:
            tape.watch(feature)
            out = roi_align.multilevel_roi_align({4: feature}, boxes, 7, 2, 4, 4)  # "auto" -> gather
            loss = tf.reduce_sum(out)
        return out, tape.gradient(loss, feature)

    out, grad = run(tf.constant(features[4]), tf.constant(boxes))
    for r in range(5):
        want = ref.roi_align(features[4][0], boxes[0, r], 1 / 16, 7, 2)
        np.testing.assert_allclose(out.numpy()[0, r], want, atol=1e-4)
    assert np.isfinite(grad.numpy()).all() and np.abs(grad.numpy()).sum() > 0


def test_auto_method_is_crop_and_resize_in_graph_mode_and_gather_under_xla():
    def pool(feature, boxes):
        return roi_align.multilevel_roi_align({4: feature}, boxes, 7, 2, 4, 4)

    specs = (tf.TensorSpec([1, 8, 8, 2]), tf.TensorSpec([1, 5, 4]))
    graph_ops = {op.type for op in tf.function(pool).get_concrete_function(*specs).graph.get_operations()}
    xla_ops = {op.type for op in
               tf.function(pool, jit_compile=True).get_concrete_function(*specs).graph.get_operations()}
    assert "CropAndResize" in graph_ops
    assert "CropAndResize" not in xla_ops and "GatherV2" in xla_ops
