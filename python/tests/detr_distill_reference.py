"""PyTorch eager re-implementations of the DETRDistill code paths (losses.md 4.3, 4.5), written from the
formulas as the official code (BIVLab-USTC/DETRDistill, Distiller.forward_train and MoCoCLHead) computes them.
Shared by python/tests/test_detrdistill.py and bench/compare_detrdistill_torch.py."""

import torch
import torch.nn.functional as F


def contrastive(pt, ps, temperature=0.07, weight=0.2):
    """MoCoCLHead's loss after its projections: CE(normalize(P_T) normalize(P_S)^T / T, arange) * weight,
    summed over layers ([K, N, D] or [N, D])."""
    if pt.dim() == 2:
        pt, ps = pt[None], ps[None]
    total = 0
    for t, s in zip(pt, ps):
        logits = F.normalize(t, dim=1) @ F.normalize(s, dim=1).t() / temperature
        total = total + F.cross_entropy(logits, torch.arange(t.shape[0])) * weight
    return total


def bbox_overlaps_iou(a, b, eps=1e-6):
    """mmdet bbox_overlaps(a, b, mode='iou', eps) for pixel xyxy boxes: [N, M]."""
    area1 = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area2 = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = (area1[:, None] + area2[None] - overlap).clamp(min=eps)
    return overlap / union


def feature(scores, boxes, queries, gts, fts, fss, topk=100):
    """Target-aware feature distillation (4.3): for every layer k and level l, the [n, H, W] cosine
    similarities of the top-k queries with the channel-normalised teacher map, weighted by score * max IoU
    (score alone without GT), summed, clamped at 0.01, divided by the per-image max; MSE of the masked maps."""
    K, B, Q, C = scores.shape
    total = 0
    for k in range(K):
        for ft, fs in zip(fts, fss):
            masks = []
            for b in range(B):
                s, idx = scores[k, b].reshape(-1).topk(topk)
                q = idx // C
                if gts[b].shape[0] > 0:
                    z = s * bbox_overlaps_iou(boxes[k, b][q], gts[b]).max(dim=1).values
                else:
                    z = s
                e = F.normalize(queries[k, b][q], dim=1)
                f = F.normalize(ft[b], dim=0)
                sim = torch.einsum("nd,dhw->nhw", e, f)
                m = (z[:, None, None] * sim).sum(0).clamp(min=0.01)
                masks.append(m / m.max())
            psi = torch.stack(masks)[:, None]
            total = total + F.mse_loss(psi * ft, psi * fs)
    return total


def _xyxy(b):
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)


def _cxcywh(b):
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


def bbox_overlaps_giou(a, b, eps=1e-6, aligned=False):
    """mmdet bbox_overlaps(mode='giou', eps) in pixel xyxy: [N, M], or [N] when aligned."""
    if aligned:
        a, b = a[:, None], b[:, None]
        area1 = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
        area2 = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
        lt, rb = torch.max(a[..., :2], b[..., :2]), torch.min(a[..., 2:], b[..., 2:])
        elt, erb = torch.min(a[..., :2], b[..., :2]), torch.max(a[..., 2:], b[..., 2:])
        wh = (rb - lt).clamp(min=0)
        overlap = wh[..., 0] * wh[..., 1]
        union = (area1 + area2 - overlap).clamp(min=eps)
        ewh = (erb - elt).clamp(min=0)
        enclose = (ewh[..., 0] * ewh[..., 1]).clamp(min=eps)
        return (overlap / union - (enclose - union) / enclose)[:, 0]
    area1 = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area2 = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt, rb = torch.max(a[:, None, :2], b[None, :, :2]), torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = (area1[:, None] + area2[None] - overlap).clamp(min=eps)
    elt, erb = torch.min(a[:, None, :2], b[None, :, :2]), torch.max(a[:, None, 2:], b[None, :, 2:])
    ewh = (erb - elt).clamp(min=0)
    enclose = (ewh[..., 0] * ewh[..., 1]).clamp(min=eps)
    return overlap / union - (enclose - union) / enclose


def logits_distillation(sl, sb, tl, tb, sizes):
    """Hungarian-matching logits distillation (4.2) as the official code path: per layer and image the teacher's
    sigmoid scores and clamped pixel boxes as targets, DistillHungarianAssigner's cost (soft-BCE summed over classes
    + 5 L1 + 2 (-GIoU), scipy), then DistillCrossEntropyLoss / (N_pos + eps) + 5 L1 / (N' + eps) +
    2 GIoULoss / (N' + eps) with N_pos = N' = B * min(Q, N). Returns the sum over layers of the three terms."""
    from scipy.optimize import linear_sum_assignment
    eps = torch.finfo(torch.float32).eps
    K, B, Q, C = sl.shape
    total = 0
    for k in range(K):
        cls = l1 = giou = 0
        npairs = 0
        for b in range(B):
            h, w = sizes[b].tolist()
            factor = torch.tensor([w, h, w, h], dtype=sl.dtype)
            p = tl[k, b].sigmoid()
            tpx = _xyxy(tb[k, b]) * factor
            tpx = torch.stack([tpx[:, 0].clamp(0, w), tpx[:, 1].clamp(0, h), tpx[:, 2].clamp(0, w),
                               tpx[:, 3].clamp(0, h)], -1)
            tnorm = _cxcywh(tpx / factor)
            z = sl[k, b]
            with torch.no_grad():
                c_cls = F.softplus(z).sum(-1, keepdim=True) - z @ p.t()
                c_l1 = torch.cdist(sb[k, b], tnorm, p=1)
                c_giou = -bbox_overlaps_giou(_xyxy(sb[k, b]) * factor, tpx)
                cost = c_cls + 5 * c_l1 + 2 * c_giou
            rows, cols = linear_sum_assignment(cost.detach().double().numpy())
            rows, cols = torch.as_tensor(rows), torch.as_tensor(cols)
            target = torch.zeros_like(z)
            target[rows] = p[cols]
            cls = cls + F.binary_cross_entropy_with_logits(z, target, reduction="sum")
            l1 = l1 + (sb[k, b][rows] - tnorm[cols]).abs().sum()
            giou = giou + (1 - bbox_overlaps_giou(_xyxy(sb[k, b][rows]) * factor, tpx[cols], aligned=True)).sum()
            npairs += len(rows)
        total = total + cls / (npairs + eps) + 5 * l1 / (max(npairs, 1) + eps) + 2 * giou / (max(npairs, 1) + eps)
    return total


def query_prior(logits, boxes, gt_labels, gt_boxes, indices, sizes=None, num_pos=0.0):
    """Query-prior assignment distillation (4.4) as the code path: per student layer k the Deformable-DETR (mmdet)
    loss under the teacher's fixed layer-k assignment indices[k][b] = (query_idx, gt_idx): mmdet's sigmoid focal
    loss (alpha 0.25, gamma 2, weight 2) over every query and class against the one-hot matched labels, L1 (weight 5)
    on normalised cxcywh and GIoULoss (weight 2, mmdet eps 1e-6, pixel xyxy when sizes are given) over the matched
    pairs, each / (max(N', 1) + float32 eps), N' = num_pos or the layer's matched pairs. Sum over layers."""
    eps = torch.finfo(torch.float32).eps
    K, B, Q, C = logits.shape
    total = 0
    for k in range(K):
        cls = l1 = giou = 0
        npairs = 0
        for b in range(B):
            q, j = (torch.as_tensor(x, dtype=torch.int64) for x in indices[k][b])
            z = logits[k, b]
            t = torch.zeros_like(z)
            t[q, gt_labels[b][j]] = 1
            p = z.sigmoid()
            pt = (1 - p) * t + p * (1 - t)
            focal_weight = (0.25 * t + 0.75 * (1 - t)) * pt.pow(2)
            cls = cls + (F.binary_cross_entropy_with_logits(z, t, reduction="none") * focal_weight).sum()
            pb, gb = boxes[k, b][q], gt_boxes[b][j]
            l1 = l1 + (pb - gb).abs().sum()
            if sizes is not None:
                h, w = sizes[b].tolist()
                factor = torch.tensor([w, h, w, h], dtype=logits.dtype)
            else:
                factor = torch.ones(4, dtype=logits.dtype)
            if len(q):
                giou = giou + (1 - bbox_overlaps_giou(_xyxy(pb) * factor, _xyxy(gb) * factor, aligned=True)).sum()
            npairs += len(q)
        avg = max(num_pos if num_pos > 0 else npairs, 1) + eps
        total = total + 2 * cls / avg + 5 * l1 / avg + 2 * giou / avg
    return total
