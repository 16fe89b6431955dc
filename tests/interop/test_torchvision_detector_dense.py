"""torchvision maskrcnn_resnet50_fpn -> rethink_tf layers: equal P2-P6 and RPN outputs on real images
(random weights, randomized frozen-BN statistics), equal RoI-head outputs on the same RoI features, and
every variable of the equivalent rethink_tf MaskRCNN filled by the state dict. (Slow: full-size models.)"""
import numpy as np
import pytest

from rethink_tf.data import preprocess
from rethink_tf.interop import archs, torchvision_detection
from rethink_tf.interop.mapping import WeightMapper
from rethink_tf.modeling.fpn import FPN
from rethink_tf.modeling.heads.rpn_head import RPNHead
from tests.interop.conftest import max_differences, randomize_torch_batchnorm

torch = pytest.importorskip("torch", reason="torch is in the `interop` extra (pip install -e '.[interop]')")
torchvision = pytest.importorskip("torchvision", reason="torchvision is in the `interop` extra")


@pytest.mark.slow
def test_maskrcnn_backbone_fpn_rpn_equal_torchvision(real_images):
    torch.manual_seed(0)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    # Without weights torchvision builds BatchNorm2d (eval mode: frozen statistics); with COCO weights
    # FrozenBatchNorm2d. Both kinds get random statistics.
    model = randomize_torch_batchnorm(model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.backbone.body.modules():
            if type(m).__name__ == "FrozenBatchNorm2d":
                c = m.weight.shape[0]
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
        for p in list(model.backbone.fpn.parameters()) + list(model.rpn.head.parameters()):
            if p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    # torchvision's own normalization (GeneralizedRCNNTransform.normalize), no resize: same input size.
    x = torch.from_numpy(real_images).permute(0, 3, 1, 2) / 255.0
    x = model.transform.normalize(x[0])[None], model.transform.normalize(x[1])[None]
    x = torch.cat(x)
    with torch.no_grad():
        feats = model.backbone(x)
        logits, boxes = model.rpn.head(list(feats.values()))
    ref_p = {lvl: f.permute(0, 2, 3, 1).numpy() for lvl, f in zip((2, 3, 4, 5, 6), feats.values())}

    spec = archs.get_spec("torchvision", "resnet50")
    body = archs.build_target(spec)
    fpn, head = FPN(num_channels=256, norm="none"), RPNHead(num_anchors=3, num_channels=256)
    ours_in = preprocess.normalize_image(real_images, spec.pixel_mean, spec.pixel_std)
    ours_p = fpn(body(ours_in))
    head(ours_p)
    mapper = WeightMapper({k: v.numpy() for k, v in model.state_dict().items()}, "maskrcnn_resnet50_fpn")
    torchvision_detection.map_dense(mapper, body, fpn, head)
    for layer in (body, fpn, head):
        assert not [v.path for v in layer.weights if id(v) not in mapper._assigned]
    ours_p = fpn(body(ours_in))
    ours_logits, ours_deltas = head(ours_p)
    diffs = {f"P{l}": max_differences(np.asarray(ours_p[l]), ref_p[l]) for l in ref_p}
    for i, level in enumerate((2, 3, 4, 5, 6)):
        ref_logits = logits[i].permute(0, 2, 3, 1).reshape(2, -1).numpy()
        b = boxes[i].permute(0, 2, 3, 1).numpy()
        ref_deltas = b.reshape(2, -1, 4)[..., [1, 0, 3, 2]]  # (dx, dy, dw, dh) -> (dy, dx, dh, dw)
        diffs[f"logits{level}"] = max_differences(np.asarray(ours_logits[level]), ref_logits)
        diffs[f"deltas{level}"] = max_differences(np.asarray(ours_deltas[level]), ref_deltas)
    print({k: f"max abs {a:.2e}, rel {r:.2e}" for k, (a, r) in diffs.items()})
    assert all(rel < 1e-4 for _, rel in diffs.values()), diffs


@pytest.mark.slow
def test_roi_heads_equal_torchvision_on_the_same_pooled_features():
    """2fc box head + predictor and mask head + predictor, fed the same RoI features (random: the
    heads never see pixels), give torchvision's class logits, box deltas (class 0 dropped, (dy, dx, dh,
    dw)) and mask logits (class 0 dropped)."""
    from rethink_tf.modeling.heads.box_head import BoxPredictor, TwoFCHead
    from rethink_tf.modeling.heads.mask_head import MaskHead
    torch.manual_seed(0)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.roi_heads.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.02 if p.dim() > 1 else 0.1))
    rng = np.random.default_rng(0)
    box_x = rng.normal(size=(6, 256, 7, 7)).astype("float32")
    mask_x = rng.normal(size=(6, 256, 14, 14)).astype("float32")
    with torch.no_grad():
        logits, deltas = model.roi_heads.box_predictor(model.roi_heads.box_head(torch.from_numpy(box_x)))
        mask_logits = model.roi_heads.mask_predictor(model.roi_heads.mask_head(torch.from_numpy(mask_x)))
    head, predictor = TwoFCHead(1024), BoxPredictor(90)
    mask_head = MaskHead(num_classes=90, num_convs=4, conv_dim=256, norm="none")
    ours_box_in = box_x.transpose(0, 2, 3, 1)[None]
    ours_mask_in = mask_x.transpose(0, 2, 3, 1)[None]
    predictor(head(ours_box_in))
    mask_head(ours_mask_in)
    mapper = WeightMapper({k: v.numpy() for k, v in model.state_dict().items()}, "maskrcnn_resnet50_fpn")
    torchvision_detection.map_box_head(mapper, head, predictor)
    torchvision_detection.map_mask_head(mapper, mask_head)
    ours_logits, ours_deltas = predictor(head(ours_box_in))
    ours_masks = mask_head(ours_mask_in)
    ref_deltas = deltas.numpy().reshape(6, 91, 4)[:, 1:, [1, 0, 3, 2]]
    ref_masks = mask_logits.numpy()[:, 1:].transpose(0, 2, 3, 1)
    diffs = {"class logits": max_differences(np.asarray(ours_logits)[0], logits.numpy()),
             "box deltas": max_differences(np.asarray(ours_deltas)[0], ref_deltas),
             "mask logits": max_differences(np.asarray(ours_masks)[0], ref_masks)}
    print({k: f"max abs {a:.2e}, rel {r:.2e}" for k, (a, r) in diffs.items()})
    assert all(rel < 1e-4 for _, rel in diffs.values()), diffs


@pytest.mark.slow
def test_every_maskrcnn_variable_comes_from_the_state_dict():
    from rethink_tf.modeling.factory import build_model
    model = build_model(90, norm="frozen_bn", backbone_norm="frozen_bn", fpn_norm="none", head_norm="none",
                        box_head="2fc", mask=True).build_networks(image_size=64)
    tv = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    mapper = WeightMapper({k: v.numpy() for k, v in tv.state_dict().items()}, "maskrcnn_resnet50_fpn")
    torchvision_detection.map_detector(mapper, model)
    report = mapper.finish(model)
    assert not report.missing
    # Built without weights torchvision uses BatchNorm2d (its COCO files: FrozenBatchNorm2d, no counters).
    assert report.unused and all(k.endswith("num_batches_tracked") for k in report.unused)
