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
