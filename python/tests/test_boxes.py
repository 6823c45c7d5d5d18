"""kdloss_torch.detr box ops, element losses and matching costs against their peers:
torchvision.ops (box_convert, box_iou, generalized_box_iou, generalized_box_iou_loss,
sigmoid_focal_loss; the real package, installed), values and autograd gradients; mmdet's
bbox_overlaps / GIoULoss and the matchers' cost code (DETR, Deformable DETR, mmdet's
HungarianAssigner, DETRDistill's DistillHungarianAssigner) as PyTorch re-implementations of the
reference code (losses.md 4.2, 5.2, 5.3), since mmdet itself is not installed here."""

import pytest
import torch
import torch.nn.functional as F

tv = pytest.importorskip("torchvision.ops")
import kdloss_torch.detr as kdetr  # noqa: E402

FLT_EPS = torch.finfo(torch.float32).eps


def boxes(n, dtype=torch.float64, seed=0, batch=None):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 4) if batch is None else (batch, n, 4)
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    c = 10 * u[..., :2]
    wh = 0.5 + 4 * u[..., 2:]
    return torch.cat([c - wh / 2, c + wh / 2], -1).to(dtype)


def tol(dtype):
    return dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fmts", [("xyxy", "cxcywh"), ("cxcywh", "xyxy"), ("xywh", "cxcywh"), ("xyxy", "xywh")])
def test_box_convert_matches_torchvision(dtype, fmts):
    b = boxes(17, dtype).requires_grad_()
    x = tv.box_convert(b, "xyxy", fmts[0]).detach().requires_grad_()
    got = kdetr.box_convert(x, *fmts)
    want_x = x.detach().clone().requires_grad_()
    want = tv.box_convert(want_x, *fmts)
    torch.testing.assert_close(got, want, **tol(dtype))
    g = torch.randn_like(got)
    got.backward(g)
    want.backward(g)
    torch.testing.assert_close(x.grad, want_x.grad, **tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_iou_and_generalized_box_iou_match_torchvision(dtype):
    a, b = boxes(13, dtype, 1), boxes(9, dtype, 2)
    b[0] = a[0]
    torch.testing.assert_close(kdetr.box_iou(a, b), tv.box_iou(a, b), **tol(dtype))
    torch.testing.assert_close(kdetr.generalized_box_iou(a, b), tv.generalized_box_iou(a, b), **tol(dtype))
    assert kdetr.box_iou(a, b)[0, 0].item() == 1.0  # identical boxes: exactly 1
    # batched [B, N, 4] x [B, M, 4]
    A, Bb = boxes(5, dtype, 3, batch=2), boxes(4, dtype, 4, batch=2)
    want = torch.stack([tv.generalized_box_iou(A[i], Bb[i]) for i in range(2)])
    torch.testing.assert_close(kdetr.generalized_box_iou(A, Bb), want, **tol(dtype))


def mmdet_bbox_overlaps_aligned(b1, b2, eps=1e-6):
    """mmdet.core.bbox.bbox_overlaps(mode='giou', is_aligned=True) (mmdet 2.x), written out."""
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    lt = torch.max(b1[..., :2], b2[..., :2])
    rb = torch.min(b1[..., 2:], b2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = area1 + area2 - overlap
    enclosed_lt = torch.min(b1[..., :2], b2[..., :2])
    enclosed_rb = torch.max(b1[..., 2:], b2[..., 2:])
    e = union.new_tensor([eps])
    union = torch.max(union, e)
    ious = overlap / union
    enclose_wh = (enclosed_rb - enclosed_lt).clamp(min=0)
    enclose_area = torch.max(enclose_wh[..., 0] * enclose_wh[..., 1], e)
    return ious - (enclose_area - union) / enclose_area


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_generalized_box_iou_loss_matches_torchvision_values_and_gradients(dtype, reduction):
    a, b = boxes(31, dtype, 5), boxes(31, dtype, 6)
    b[3] = a[3]  # identical
    b[4] = torch.tensor([a[4, 2], a[4, 1], a[4, 2] + 1, a[4, 3]], dtype=dtype)  # touching in x
    p1, t1 = a.clone().requires_grad_(), b.clone().requires_grad_()
    p2, t2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    got = kdetr.generalized_box_iou_loss(p1, t1, reduction=reduction)
    want = tv.generalized_box_iou_loss(p2, t2, reduction=reduction)
    torch.testing.assert_close(got, want, **tol(dtype))
    g = torch.rand_like(got) + 0.5
    got.backward(g)
    want.backward(g)
    t = dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(p1.grad, p2.grad, **t)
    torch.testing.assert_close(t1.grad, t2.grad, **t)


@pytest.mark.parametrize("form", ["mmdet", "detr"])
def test_generalized_box_iou_loss_mmdet_and_detr_forms_match_their_code(form):
    dtype = torch.float64
    a, b = boxes(23, dtype, 7), boxes(23, dtype, 8)
    b[0] = a[0]
    b[1, :2] = a[1, :2]  # ties on x1, y1: max/min split the gradient 1/2 : 1/2
    a[2] = torch.tensor([0, 0, 1e-4, 1e-4], dtype=dtype)  # tiny: mmdet's eps branch
    b[2] = torch.tensor([5e-5, 0, 2e-4, 1e-4], dtype=dtype)
    w = torch.rand(23, dtype=dtype) + 0.5
    p1, p2 = a.clone().requires_grad_(), a.clone().requires_grad_()
    scale = 2.0 / (7 + FLT_EPS)  # GIoULoss(loss_weight=2) with avg_factor 7
    got = kdetr.generalized_box_iou_loss(p1, b, reduction="sum", form=form, eps=1e-6 if form == "mmdet" else 0.0,
                                         weight=w, scale=scale)
    if form == "mmdet":
        g = mmdet_bbox_overlaps_aligned(p2, b)
    else:
        g = torch.diagonal(tv.generalized_box_iou(p2, b))
    want = ((1 - g) * w).sum() * scale
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    got.backward()
    want.backward()
    torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sigmoid_focal_loss_matches_torchvision(dtype, reduction):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(6, 7, generator=g, dtype=torch.float64) * 3).to(dtype)
    t = (torch.rand(6, 7, generator=g, dtype=torch.float64) > 0.7).to(dtype)
    t[0, :3] = torch.tensor([0.2, 0.5, 0.9], dtype=dtype)  # soft targets too
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    got = kdetr.sigmoid_focal_loss(x1, t, alpha=0.25, gamma=2, reduction=reduction)
    want = tv.sigmoid_focal_loss(x2, t, alpha=0.25, gamma=2, reduction=reduction)
    torch.testing.assert_close(got, want, **tol(dtype))
    up = torch.rand_like(got) + 0.5
    got.backward(up)
    want.backward(up)
    t_ = dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(x1.grad, x2.grad, **t_)


def test_sigmoid_focal_loss_is_precise_at_large_logits():
    # torchvision computes 1 - p_t and loses precision; kdloss uses mmdet's form (losses.md 5.3)
    x = torch.tensor([-30.0, 30.0, -60.0], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    got = kdetr.sigmoid_focal_loss(x, t, reduction="none")
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    pt = (1 - p) * t + p * (1 - t)  # mmdet's pt, exact here
    want = ce * (0.25 * t + 0.75 * (1 - t)) * pt.pow(2)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


# ---- the matchers' cost code, re-implemented in PyTorch -------------------------------------------

def box_cxcywh_to_xyxy(x):
    cx, cy, w, h = x.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)


def box_xyxy_to_cxcywh(x):
    x0, y0, x1, y1 = x.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1)


def mmdet_giou_pairwise(b1, b2, eps=1e-6):
    return mmdet_bbox_overlaps_aligned(b1[:, None, :], b2[None, :, :], eps)


def detr_cost(logits, boxes_, labels, tboxes):
    """facebookresearch/detr models/matcher.py (class 1, bbox 5, giou 2), one image."""
    prob = logits.softmax(-1)
    cost_class = -prob[:, labels]
    cost_bbox = torch.cdist(boxes_, tboxes, p=1)
    cost_giou = -tv.generalized_box_iou(box_cxcywh_to_xyxy(boxes_), box_cxcywh_to_xyxy(tboxes))
    return 5 * cost_bbox + 1 * cost_class + 2 * cost_giou


def deformable_cost(logits, boxes_, labels, tboxes, eps=1e-8):
    """fundamentalvision/Deformable-DETR models/matcher.py (focal, weights 2 / 5 / 2), one image."""
    out_prob = logits.sigmoid()
    alpha, gamma = 0.25, 2.0
    neg = (1 - alpha) * (out_prob ** gamma) * (-(1 - out_prob + eps).log())
    pos = alpha * ((1 - out_prob) ** gamma) * (-(out_prob + eps).log())
    cost_class = pos[:, labels] - neg[:, labels]
    cost_bbox = torch.cdist(boxes_, tboxes, p=1)
    cost_giou = -tv.generalized_box_iou(box_cxcywh_to_xyxy(boxes_), box_cxcywh_to_xyxy(tboxes))
    return 5 * cost_bbox + 2 * cost_class + 2 * cost_giou


def mmdet_cost(logits, boxes_, labels, gt_px, hw, class_cost):
    """mmdet 2.x HungarianAssigner / DETRDistill's DistillHungarianAssigner, one image; gt in pixel xyxy.
    class_cost: ("focal", eps 1e-12, weight 2) or ("soft_bce", probs, weight 1)."""
    h, w = hw
    factor = gt_px.new_tensor([w, h, w, h]).unsqueeze(0)
    if class_cost[0] == "focal":
        out_prob = logits.sigmoid()
        neg = -(1 - out_prob + 1e-12).log() * (1 - 0.25) * out_prob.pow(2)
        pos = -(out_prob + 1e-12).log() * 0.25 * (1 - out_prob).pow(2)
        cls = 2.0 * (pos[:, labels] - neg[:, labels])
    else:
        p = class_cost[1]
        z = logits
        cls = 1.0 * (p[None] * F.softplus(-z)[:, None] + (1 - p[None]) * F.softplus(z)[:, None]).sum(-1)
    normalize_gt = gt_px / factor
    reg = 5.0 * torch.cdist(boxes_, box_xyxy_to_cxcywh(normalize_gt), p=1)
    bboxes = box_cxcywh_to_xyxy(boxes_) * factor
    iou = 2.0 * -mmdet_giou_pairwise(bboxes, gt_px)
    return cls + reg + iou


def batch(dtype, counts=(5, 0, 3), Q=7, C=6, seed=11):
    g = torch.Generator().manual_seed(seed)
    B = len(counts)
    logits = (torch.randn(B, Q, C, generator=g, dtype=torch.float64) * 2).to(dtype)
    cx = 0.2 + 0.6 * torch.rand(B, Q, 2, generator=g, dtype=torch.float64)
    wh = 0.05 + 0.3 * torch.rand(B, Q, 2, generator=g, dtype=torch.float64)
    pboxes = torch.cat([cx, wh], -1).to(dtype)
    tn = []
    labels, probs = [], []
    for n in counts:
        c = 0.2 + 0.6 * torch.rand(n, 2, generator=g, dtype=torch.float64)
        s = 0.05 + 0.3 * torch.rand(n, 2, generator=g, dtype=torch.float64)
        tn.append(torch.cat([c, s], -1).to(dtype))
        labels.append(torch.randint(0, C, (n,), generator=g))
        probs.append(torch.rand(n, C, generator=g, dtype=torch.float64).to(dtype))
    hw = torch.tensor([[480.0, 640.0], [100.0, 120.0], [300.0, 200.0]][:B], dtype=dtype)
    tpx = [box_cxcywh_to_xyxy(t) * t.new_tensor([hw[b, 1], hw[b, 0], hw[b, 1], hw[b, 0]]) for b, t in enumerate(tn)]
    return logits, pboxes, tn, tpx, labels, probs, hw


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("preset", ["detr", "deformable_detr", "mmdet", "detrdistill"])
def test_matching_cost_matches_the_matchers_code(dtype, preset):
    logits, pboxes, tn, tpx, labels, probs, hw = batch(dtype)
    if preset in ("detr", "deformable_detr"):
        got = kdetr.matching_cost(logits, pboxes, tn, target_labels=labels, preset=preset)
    elif preset == "mmdet":
        got = kdetr.matching_cost(logits, pboxes, tpx, target_labels=labels, sizes=hw, preset=preset)
    else:
        got = kdetr.matching_cost(logits, pboxes, tpx, target_probs=probs, sizes=hw, preset=preset)
    assert got.shape == (3, 7, 5)
    t = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-5)
    for b in range(3):
        n = tn[b].shape[0]
        if n == 0:
            continue
        if preset == "detr":
            want = detr_cost(logits[b], pboxes[b], labels[b], tn[b])
        elif preset == "deformable_detr":
            want = deformable_cost(logits[b], pboxes[b], labels[b], tn[b])
        elif preset == "mmdet":
            want = mmdet_cost(logits[b], pboxes[b], labels[b], tpx[b], hw[b], ("focal",))
        else:
            want = mmdet_cost(logits[b], pboxes[b], labels[b], tpx[b], hw[b], ("soft_bce", probs[b]))
        torch.testing.assert_close(got[b, :, :n], want, **t)
        assert (got[b, :, n:] == 0).all()  # padding


def test_detrdistill_logits_loss_matches_the_reference_code():
    """losses.md 4.2 for one layer: soft-label BCE / (N_pos + eps) + 5 L1 / N' + 2 (1 - GIoU) / N' over
    all 300-style matched pairs (here a random permutation), with gradients to the student."""
    dtype = torch.float64
    B, Q, C = 2, 9, 5
    g = torch.Generator().manual_seed(4)
    z = torch.randn(B, Q, C, generator=g, dtype=dtype, requires_grad=True)
    cx = 0.2 + 0.6 * torch.rand(B, Q, 2, generator=g, dtype=dtype)
    wh = 0.05 + 0.3 * torch.rand(B, Q, 2, generator=g, dtype=dtype)
    sb = torch.cat([cx, wh], -1).requires_grad_()
    tp = torch.rand(B, Q, C, generator=g, dtype=dtype)  # teacher sigmoid scores
    tb = torch.cat([0.2 + 0.6 * torch.rand(B, Q, 2, generator=g, dtype=dtype),
                    0.05 + 0.3 * torch.rand(B, Q, 2, generator=g, dtype=dtype)], -1)  # normalised cxcywh
    hw = torch.tensor([[480.0, 640.0], [300.0, 200.0]], dtype=dtype)
    perm = [torch.randperm(Q, generator=g) for _ in range(B)]  # student i <-> teacher perm[b][i]
    pred_rows = torch.cat([b * Q + torch.arange(Q) for b in range(B)])
    target_rows = torch.cat([b * Q + perm[b] for b in range(B)])
    n_pos = B * Q
    n_prime = float(n_pos)  # one device: reduce_mean is the count itself
    cls = kdetr.matched_class_loss(z, pred_rows, target_rows, target_probs=tp.reshape(-1, C), normalizer="num_pos")
    l1, giou = kdetr.matched_box_loss(sb, tb.reshape(-1, 4), pred_rows, target_rows, sizes=hw, normalizer=n_prime)
    (cls + l1 + giou).backward()
    # reference: the mmdet code path, written out
    z2 = z.detach().clone().requires_grad_()
    sb2 = sb.detach().clone().requires_grad_()
    tgt_p = torch.stack([tp[b][perm[b]] for b in range(B)])
    tgt_b = torch.stack([tb[b][perm[b]] for b in range(B)])
    ref_cls = F.binary_cross_entropy_with_logits(z2, tgt_p, reduction="none").sum() / (n_pos + FLT_EPS)
    ref_l1 = 5.0 * (sb2 - tgt_b).abs().sum() / (n_prime + FLT_EPS)
    fac = torch.stack([torch.stack([hw[b, 1], hw[b, 0], hw[b, 1], hw[b, 0]]) for b in range(B)])[:, None, :]
    g_ = mmdet_bbox_overlaps_aligned(box_cxcywh_to_xyxy(sb2) * fac, box_cxcywh_to_xyxy(tgt_b) * fac)
    ref_giou = 2.0 * (1 - g_).sum() / (n_prime + FLT_EPS)
    (ref_cls + ref_l1 + ref_giou).backward()
    torch.testing.assert_close(cls, ref_cls, rtol=1e-12, atol=0)
    torch.testing.assert_close(l1, ref_l1, rtol=1e-12, atol=0)
    torch.testing.assert_close(giou, ref_giou, rtol=1e-12, atol=0)
    torch.testing.assert_close(z.grad, z2.grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(sb.grad, sb2.grad, rtol=1e-9, atol=1e-12)


def test_deformable_detr_focal_loss_with_labels_matches_its_code():
    """Deformable DETR loss_labels: sigmoid_focal_loss(one-hot of the matched labels) * Q summed =
    sum focal / num_boxes."""
    dtype = torch.float64
    B, Q, C = 2, 6, 4
    z = torch.randn(B, Q, C, dtype=dtype, requires_grad=True)
    labels = torch.tensor([1, 3, 0, 2, 2])
    pred_rows = torch.tensor([0, 4, 6, 7, 11])
    target_rows = torch.tensor([2, 0, 1, 4, 3])
    num_boxes = 5.0
    got = kdetr.matched_class_loss(z, pred_rows, target_rows, target_labels=labels, loss="focal",
                                   normalizer={"kind": "value", "value": num_boxes, "clamp": True})
    onehot = torch.zeros(B * Q, C, dtype=dtype)
    onehot[pred_rows, labels[target_rows]] = 1
    z2 = z.detach().clone().requires_grad_()
    want = tv.sigmoid_focal_loss(z2.reshape(-1, C), onehot, reduction="none").mean(1).sum() / num_boxes * C
    got.backward()
    want.backward()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    torch.testing.assert_close(z.grad, z2.grad, rtol=1e-10, atol=1e-14)


def test_bad_input_errors_name_the_argument():
    a = boxes(3)
    with pytest.raises(Exception, match="argument 'boxes' must be boxes of shape"):
        kdetr.box_convert(a[:, :3], "xyxy", "cxcywh")
    with pytest.raises(ValueError, match="argument 'in_fmt' must be one of"):
        kdetr.box_convert(a, "xyzw", "cxcywh")
    with pytest.raises(Exception, match="arguments 'pred' \\[3, 4\\] and 'target' \\[2, 4\\] must have the same shape"):
        kdetr.generalized_box_iou_loss(a, a[:2])
    with pytest.raises(Exception, match="lists row 1 twice"):
        kdetr.matched_class_loss(torch.zeros(1, 3, 2), [1, 1], [0, 1], target_probs=torch.zeros(2, 2))
