"""torchvision's Mask R-CNNs vs their rethink_tf imports, end to end on two real coco128 images (150x213,
padded by both to 160x224, and 160x224), with the gin values of torchvision's conventions
(rethink_tf.interop.torchvision_detection.DETECTOR_BINDINGS / GN_DETECTOR_BINDINGS).

Random weights: randomized norm affines and BN statistics, random FPN / RPN biases, a box predictor with
class biases of std 2 so that real detections pass the 0.05 threshold (100 per image). Rows pair in
score order; a row may trade places only with one whose score ties within 1e-5 (float round-off orders
such near-ties differently in torch and TF). Measured on this machine under load, 2026-12-02
(`pytest --run-slow -m slow tests/interop/test_torchvision_detector_e2e.py -s`, 188 s for the file):
- maskrcnn_resnet50_fpn (frozen BN, 2fc): all 1216 proposals and 200 detections paired, classes equal;
  max differences: proposal boxes 8.2e-3 px, proposal scores (sigmoid) 3.5e-6, detection boxes 1.3e-2 px,
  scores 1.2e-7, 28x28 mask probabilities 3.9e-3, pasted masks (torchvision's paste on both sides)
  1.8e-3 (mean 1.5e-7; binarized at 0.5, IoU >= 0.989: pixels within round-off of 0.5); 2 proposals and
  4 detections traded places with a tied row.
- GN build from torchvision's components (the paper's architecture): 1341 proposals, 200 detections;
  proposal boxes 3.1e-5 px, proposal scores 1.2e-7, detection boxes 3.1e-5 px, scores 1.0e-6, mask
  probabilities 3.3e-6, pasted masks 2.9e-6 (binarized IoU 1.0); 8 proposals traded places with a tie.
"""
import numpy as np
import pytest

from rethink_tf.interop import archs, torchvision_detection
from rethink_tf.interop.mapping import WeightMapper
from rethink_tf.modeling.factory import build_model_from_bindings
from tests.interop import detector_compare
from tests.interop.conftest import DATA, IMAGE_FILES, randomize_torch_batchnorm

torch = pytest.importorskip("torch", reason="torch is in the `interop` extra (pip install -e '.[interop]')")
torchvision = pytest.importorskip("torchvision", reason="torchvision is in the `interop` extra")

SIZES = ((150, 213), (160, 224))


def detector_with_detections(tv, seed=1):
    """Random FPN / RPN biases and a box predictor whose class biases (std 2) give confident classes."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in list(tv.backbone.fpn.parameters()) + list(tv.rpn.head.parameters()):
            if p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        predictor = tv.roi_heads.box_predictor
        predictor.cls_score.weight.copy_(torch.randn(predictor.cls_score.weight.shape, generator=gen) * 0.05)
        predictor.cls_score.bias.copy_(torch.randn(predictor.cls_score.bias.shape, generator=gen) * 2.0)
        predictor.bbox_pred.weight.copy_(torch.randn(predictor.bbox_pred.weight.shape, generator=gen) * 0.01)
    return tv


def imported(tv, bindings, map_fn, num_classes=torchvision_detection.NUM_CLASSES):
    model = build_model_from_bindings(num_classes, bindings).build_networks(image_size=64)
    mapper = WeightMapper({k: v.numpy() for k, v in tv.state_dict().items()}, "torchvision detector")
    map_fn(mapper, model)
    mapper.finish(model)
    return model


def run_comparison(tv, model, ref=None):
    images = detector_compare.images_of_sizes([DATA / "coco128" / "train2017" / n for n in IMAGE_FILES], SIZES)
    ref = ref or detector_compare.torchvision_outputs(tv, images)
    spec = archs.get_spec("torchvision", "resnet50")
    ours = detector_compare.rethink_outputs(model, images, ref["canvas"], spec.pixel_mean, spec.pixel_std)
    diffs = detector_compare.compare(ref, ours)
    print(diffs)
    return diffs


@pytest.fixture(scope="module")
def frozen_bn_reference():
    """(torchvision maskrcnn_resnet50_fpn with random weights, its outputs on the two images)."""
    torch.manual_seed(0)
    tv = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    tv = detector_with_detections(randomize_torch_batchnorm(tv))
    images = detector_compare.images_of_sizes([DATA / "coco128" / "train2017" / n for n in IMAGE_FILES], SIZES)
    return tv, detector_compare.torchvision_outputs(tv, images)


@pytest.mark.slow
def test_maskrcnn_resnet50_fpn_detections_equal_torchvision(frozen_bn_reference):
    tv, ref = frozen_bn_reference
    model = imported(tv, torchvision_detection.DETECTOR_BINDINGS, torchvision_detection.map_detector)
    d = run_comparison(tv, model, ref)
    assert d["detections"] == 200 and d["proposals"] > 1000, d
    assert d["proposal_box"] < 0.02 and d["proposal_score"] < 1e-5, d
    assert d["box"] < 0.1 and d["score"] < 1e-5 and d["mask28"] < 0.02, d
    assert d["pasted_mean"] < 0.01 and d["pasted_binary_iou_min"] > 0.9, d
    assert d["proposals_moved"] <= 0.01 * d["proposals"] and d["detections_moved"] <= 0.05 * d["detections"], d


@pytest.mark.slow
def test_without_the_torchvision_switches_detections_differ(frozen_bn_reference):
    """The switches matter: with Detectron's defaults for the anchors the same weights do not pair up."""
    tv, ref = frozen_bn_reference
    bindings = {**torchvision_detection.DETECTOR_BINDINGS, "build_rpn.anchor_offset": 0.5,
                "build_rpn.round_anchors": False, "build_rpn.anchor_stride_from_grid": False}
    model = imported(tv, bindings, torchvision_detection.map_detector)
    with pytest.raises(AssertionError, match="partner|reference rows"):
        run_comparison(tv, model, ref)



def torchvision_gn_maskrcnn():
    """The paper's GN Mask R-CNN from torchvision's components: ResNet-50 and FPN with GroupNorm(32),
    RPNHead(conv_depth=1), FastRCNNConvFCHead 4conv1fc and MaskRCNNHeads with GroupNorm."""
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
    from torchvision.models.detection.rpn import RPNHead

    def gn(channels):
        return torch.nn.GroupNorm(32, channels)

    backbone = _resnet_fpn_extractor(torchvision.models.resnet50(weights=None, norm_layer=gn), 5, norm_layer=gn)
    return MaskRCNN(backbone, num_classes=91, rpn_head=RPNHead(256, 3, conv_depth=1),
                    box_head=FastRCNNConvFCHead((256, 7, 7), [256] * 4, [1024], norm_layer=gn),
                    mask_head=MaskRCNNHeads(256, [256] * 4, 1, norm_layer=gn))


@pytest.mark.slow
def test_gn_maskrcnn_from_torchvision_components_equals_rethink_tf_gn_model():
    """The strongest independent check: rethink_tf's GN Mask R-CNN (the paper's model, 4conv1fc box head)
    against the same network assembled from torchvision's components, end to end."""
    torch.manual_seed(0)
    tv = detector_with_detections(randomize_torch_batchnorm(torchvision_gn_maskrcnn()))
    model = imported(tv, torchvision_detection.GN_DETECTOR_BINDINGS, torchvision_detection.map_gn_detector)
    d = run_comparison(tv, model)
    assert d["detections"] == 200 and d["proposals"] > 1000, d
    assert d["proposal_box"] < 0.02 and d["proposal_score"] < 1e-5, d
    assert d["box"] < 0.1 and d["score"] < 1e-5 and d["mask28"] < 0.02, d
    assert d["pasted_mean"] < 0.01 and d["pasted_binary_iou_min"] > 0.9, d
    assert d["proposals_moved"] <= 0.01 * d["proposals"] and d["detections_moved"] <= 0.05 * d["detections"], d
