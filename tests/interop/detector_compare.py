"""End-to-end comparison of a torchvision detector with its rethink_tf import on real images.

Both run on the same pixels at the same size: torchvision's GeneralizedRCNNTransform normalizes and pads
(to a multiple of 32) but its resize is replaced by the identity; rethink_tf gets the same normalized
pixels on a canvas of the padded size, zero-padded, with image_info's scaled size = the image's own.
Rows are compared in score order; two rows may trade places only when their scores are tied within
`TIE_TOLERANCE` (float round-off decides the order of such near-ties in NMS and top-k, differently in
torch and TF), and the comparison says how many did.
"""
import numpy as np
import tensorflow as tf

TIE_TOLERANCE = 1e-5


def images_of_sizes(paths, sizes):
    """Real JPEGs resized (bilinear) to the (h, w) in `sizes`: list of float32 RGB 0..255 [h, w, 3]."""
    out = []
    for path, size in zip(paths, sizes):
        raw = tf.io.decode_jpeg(tf.io.read_file(str(path)), channels=3)
        out.append(tf.image.resize(tf.cast(raw, tf.float32), size).numpy())
    return out


def torchvision_outputs(model, images):
    """torchvision's proposals (with sigmoid scores), detections, 28x28 mask probabilities and pasted
    masks for `images` (list of [h, w, 3] 0..255); boxes yxyx."""
    import torch
    from torchvision.models.detection.rpn import concat_box_prediction_layers

    model.eval()
    model.transform.resize = lambda image, target=None: (image, target)  # same input size
    x = [torch.from_numpy(im).permute(2, 0, 1) / 255.0 for im in images]
    sizes = [im.shape[:2] for im in images]
    with torch.no_grad():
        image_list, _ = model.transform(x)
        features = model.backbone(image_list.tensors)
        levels = list(features.values())
        objectness, deltas = model.rpn.head(levels)
        anchors = model.rpn.anchor_generator(image_list, levels)
        per_level = [o[0].numel() for o in objectness]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        proposals = model.rpn.box_coder.decode(deltas, anchors).view(len(x), -1, 4)
        boxes, scores = model.rpn.filter_proposals(proposals, objectness, image_list.image_sizes, per_level)
        detections, _ = model.roi_heads(features, boxes, image_list.image_sizes)
        masks28 = [d["masks"][:, 0].numpy().copy() if "masks" in d else None for d in detections]
        final = model.transform.postprocess([dict(d) for d in detections], image_list.image_sizes, sizes)
    yx = [1, 0, 3, 2]
    return {"canvas": tuple(image_list.tensors.shape[-2:]),
            "proposals": [b.numpy()[:, yx] for b in boxes], "proposal_scores": [s.numpy() for s in scores],
            "boxes": [d["boxes"].numpy()[:, yx] for d in final], "scores": [d["scores"].numpy() for d in final],
            "classes": [d["labels"].numpy() for d in final], "masks28": masks28,
            "pasted": [d["masks"][:, 0].numpy() if "masks" in d else None for d in final]}


def rethink_outputs(model, images, canvas, pixel_mean, pixel_std):
    """The same quantities from a rethink_tf MaskRCNN on a zero-padded canvas (H, W)."""
    from rethink_tf.data import preprocess
    from rethink_tf.ops.masks import paste_masks_torchvision

    batch = np.zeros((len(images), canvas[0], canvas[1], 3), np.float32)
    info = np.zeros((len(images), 4, 2), np.float32)
    for i, im in enumerate(images):
        h, w = im.shape[:2]
        batch[i, :h, :w] = preprocess.normalize_image(im, pixel_mean, pixel_std)
        info[i] = [[h, w], [h, w], [1, 1], [0, 0]]
    features = model.features(batch)
    logits, deltas = model.rpn.outputs(features)
    boxes, valid, scores = model.rpn.proposals(logits, deltas, canvas, info, training=False, with_scores=True)
    det = model.detect(features, info, proposals=(boxes, valid))
    out = {k: [] for k in ("proposals", "proposal_scores", "boxes", "scores", "classes", "masks28", "pasted")}
    for i, im in enumerate(images):
        v = np.asarray(valid[i])
        out["proposals"].append(np.asarray(boxes[i])[v])
        out["proposal_scores"].append(np.asarray(scores[i])[v])
        n = int(det["num_detections"][i])
        out["boxes"].append(np.asarray(det["detection_boxes"][i][:n]))
        out["scores"].append(np.asarray(det["detection_scores"][i][:n]))
        out["classes"].append(np.asarray(det["detection_classes"][i][:n]))
        if "detection_masks" in det:
            masks = np.asarray(det["detection_masks"][i][:n])
            out["masks28"].append(masks)
            out["pasted"].append(paste_masks_torchvision(masks, out["boxes"][-1], im.shape[:2]))
    return out


def match_rows(ref_boxes, ref_scores, ours_boxes, ours_scores, ref_classes=None, ours_classes=None,
               box_tolerance=0.1):
    """Pairs rows in score order: row i with row i, else with a row of the same class whose score is
    tied with row i's (within TIE_TOLERANCE) and whose box is within box_tolerance pixels.

    Returns (pairs [(ref index, ours index)], number of rows that changed places); AssertionError when
    the counts differ or a row finds no partner."""
    assert len(ref_boxes) == len(ours_boxes), f"{len(ref_boxes)} reference rows, {len(ours_boxes)} ours"
    same_class = (lambda i, j: True) if ref_classes is None else (lambda i, j: ref_classes[i] == ours_classes[j])
    taken, pairs, moved = set(), [], 0
    for i in range(len(ref_boxes)):
        candidates = [i] + [j for j in np.flatnonzero(np.abs(ours_scores - ref_scores[i]) <= TIE_TOLERANCE)
                            if j != i]
        for j in candidates:
            if j < len(ours_boxes) and j not in taken and same_class(i, j) and \
                    np.abs(ours_boxes[j] - ref_boxes[i]).max() <= box_tolerance:
                taken.add(j)
                pairs.append((i, j))
                moved += int(i != j)
                break
        else:
            raise AssertionError(f"reference row {i} (score {ref_scores[i]:.6f}, box {ref_boxes[i]}) has no "
                                 f"partner; ours at {i}: score {ours_scores[i]:.6f}, box {ours_boxes[i]}")
    return pairs, moved


def compare(ref, ours, box_tolerance=0.1):
    """Max differences over matched rows of every image: {name: value} plus counts."""
    d = {"proposal_box": 0.0, "proposal_score": 0.0, "box": 0.0, "score": 0.0, "mask28": 0.0,
         "pasted_max": 0.0, "pasted_mean": 0.0, "pasted_binary_iou_min": 1.0, "proposals": 0, "detections": 0,
         "proposals_moved": 0, "detections_moved": 0}
    for i in range(len(ref["boxes"])):
        pairs, moved = match_rows(ref["proposals"][i], ref["proposal_scores"][i], ours["proposals"][i],
                                  ours["proposal_scores"][i], box_tolerance=box_tolerance)
        r, o = map(list, zip(*pairs))
        d["proposal_box"] = max(d["proposal_box"], float(np.abs(ref["proposals"][i][r] - ours["proposals"][i][o]).max()))
        d["proposal_score"] = max(d["proposal_score"],
                                  float(np.abs(ref["proposal_scores"][i][r] - ours["proposal_scores"][i][o]).max()))
        d["proposals"] += len(pairs)
        d["proposals_moved"] += moved
        pairs, moved = match_rows(ref["boxes"][i], ref["scores"][i], ours["boxes"][i], ours["scores"][i],
                                  ref["classes"][i], ours["classes"][i], box_tolerance=box_tolerance)
        d["detections"] += len(pairs)
        d["detections_moved"] += moved
        if not pairs:
            continue
        r, o = map(list, zip(*pairs))
        d["box"] = max(d["box"], float(np.abs(ref["boxes"][i][r] - ours["boxes"][i][o]).max()))
        d["score"] = max(d["score"], float(np.abs(ref["scores"][i][r] - ours["scores"][i][o]).max()))
        if ref["masks28"][i] is not None:
            d["mask28"] = max(d["mask28"], float(np.abs(ref["masks28"][i][r] - ours["masks28"][i][o]).max()))
            diff = np.abs(ref["pasted"][i][r] - ours["pasted"][i][o])
            d["pasted_max"] = max(d["pasted_max"], float(diff.max()))
            d["pasted_mean"] = max(d["pasted_mean"], float(diff.mean()))
            a, b = ref["pasted"][i][r] >= 0.5, ours["pasted"][i][o] >= 0.5
            inter, union = (a & b).sum((1, 2)), (a | b).sum((1, 2))
            iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
            d["pasted_binary_iou_min"] = min(d["pasted_binary_iou_min"], float(iou.min()))
    return d
