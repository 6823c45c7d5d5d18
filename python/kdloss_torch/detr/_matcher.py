"""A drop-in for the scipy HungarianMatcher of DETR-family code (DETR, Deformable DETR, DINO, ...).

    from kdloss_torch.detr import HungarianMatcher
    matcher = HungarianMatcher(cost_class=2, cost_bbox=5, cost_giou=2, focal=True)   # Deformable DETR's
    indices = matcher(outputs, targets)     # outputs: {"pred_logits": [B, Q, C], "pred_boxes": [B, Q, 4]}
                                            # targets: [{"labels": [T_b], "boxes": [T_b, 4]}, ...]
    # -> [(index_i, index_j), ...] per image, int64, exactly scipy's assignment of the same cost

The cost is DETR's / Deformable DETR's (models/matcher.py, losses.md 5.2), built batched into a padded
[B, Q, T_max] tensor on the outputs' device in the same arithmetic order; the assignment is
kdloss_torch.detr.linear_sum_assignment_padded (scipy's exact pairs, ties included, all images in one call,
no device-to-host copy of the cost). focal=True: Deformable DETR's focal class cost (alpha 0.25, gamma 2,
eps 1e-8); focal=False: DETR's -softmax cost. Boxes are normalised cxcywh; GIoU in DETR's form (no eps).
"""

import torch

from ._assignment import linear_sum_assignment_padded

__all__ = ["HungarianMatcher", "matching_cost"]


def _xyxy(b):
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)


def _giou(a, b):
    """Pairwise GIoU of xyxy boxes, batched: a [B, Q, 4], b [B, T, 4] -> [B, Q, T] (DETR's box_ops form)."""
    area1 = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area2 = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    lt = torch.max(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.min(a[:, :, None, 2:], b[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, :, None] + area2[:, None, :] - inter
    iou = inter / union
    lt = torch.min(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.max(a[:, :, None, 2:], b[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[..., 0] * wh[..., 1]
    return iou - (area - union) / area


def matching_cost(pred_logits, pred_boxes, labels, boxes, cost_class=1.0, cost_bbox=1.0, cost_giou=1.0, focal=False,
                  alpha=0.25, gamma=2.0, eps=1e-8):
    """The matcher's cost, padded: pred_logits [B, Q, C], pred_boxes [B, Q, 4]; labels [B, T] int64 and boxes
    [B, T, 4] padded (any label/box in the padding). Returns [B, Q, T] (padding columns hold finite garbage)."""
    if focal:
        prob = pred_logits.sigmoid()
        neg = (1 - alpha) * (prob ** gamma) * (-(1 - prob + eps).log())
        pos = alpha * ((1 - prob) ** gamma) * (-(prob + eps).log())
        idx = labels[:, None, :].expand(-1, prob.shape[1], -1)
        c_class = pos.gather(2, idx) - neg.gather(2, idx)
    else:
        prob = pred_logits.softmax(-1)
        c_class = -prob.gather(2, labels[:, None, :].expand(-1, prob.shape[1], -1))
    c_bbox = torch.cdist(pred_boxes, boxes, p=1)
    c_giou = -_giou(_xyxy(pred_boxes), _xyxy(boxes))
    return cost_bbox * c_bbox + cost_class * c_class + cost_giou * c_giou


class HungarianMatcher(torch.nn.Module):
    """DETR's HungarianMatcher call signature with kdloss's batched scipy-exact assignment.

    cost_class, cost_bbox, cost_giou: the weights (DETR main.py: 1, 5, 2; Deformable DETR: 2, 5, 2).
    focal: Deformable DETR's focal class cost (alpha, gamma, eps 1e-8) instead of DETR's softmax.
    to_cpu: return the indices on the CPU as the scipy matcher does (False: on the outputs' device, no sync).
    """

    def __init__(self, cost_class=1.0, cost_bbox=1.0, cost_giou=1.0, focal=False, alpha=0.25, gamma=2.0, eps=1e-8,
                 to_cpu=True):
        super().__init__()
        assert cost_class != 0 or cost_bbox != 0 or cost_giou != 0, "all costs cant be 0"
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou
        self.focal, self.alpha, self.gamma, self.eps, self.to_cpu = focal, alpha, gamma, eps, to_cpu

    @torch.no_grad()
    def forward(self, outputs, targets):
        logits, pred = outputs["pred_logits"], outputs["pred_boxes"]
        B, Q = logits.shape[:2]
        sizes = [int(t["boxes"].shape[0]) for t in targets]
        T = max(sizes + [1])
        labels = torch.zeros((B, T), dtype=torch.int64, device=logits.device)
        boxes = torch.zeros((B, T, 4), dtype=pred.dtype, device=pred.device)
        boxes[..., 2:] = 1  # a valid box in the padding: the cost stays finite there
        for b, t in enumerate(targets):
            labels[b, :sizes[b]] = t["labels"]
            boxes[b, :sizes[b]] = t["boxes"].to(pred.dtype)
        cost = matching_cost(logits, pred, labels, boxes, self.cost_class, self.cost_bbox, self.cost_giou,
                             self.focal, self.alpha, self.gamma, self.eps)
        cols = torch.tensor(sizes, dtype=torch.int64, device=logits.device)
        row_ind, col_ind, count, _ = linear_sum_assignment_padded(cost, None, cols)
        if self.to_cpu:
            row_ind, col_ind, count = row_ind.cpu(), col_ind.cpu(), count.cpu()
        n = count.tolist() if self.to_cpu else [min(Q, s) for s in sizes]
        return [(row_ind[b, :n[b]], col_ind[b, :n[b]]) for b in range(B)]
