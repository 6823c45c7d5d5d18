"""kdloss_torch.detr.HungarianMatcher against the scipy HungarianMatcher of DETR / Deformable DETR
(models/matcher.py, re-implemented here from losses.md 5.2 with scipy.optimize.linear_sum_assignment per image):
identical indices for both class costs, ragged targets, an image without targets, more targets than queries,
float32 and float64."""

import pytest
import torch
from scipy.optimize import linear_sum_assignment

import kdloss_torch.detr as kdetr


def box_cxcywh_to_xyxy(x):
    x_c, y_c, w, h = x.unbind(-1)
    return torch.stack([x_c - 0.5 * w, y_c - 0.5 * h, x_c + 0.5 * w, y_c + 0.5 * h], dim=-1)


def generalized_box_iou(boxes1, boxes2):
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    union = area1[:, None] + area2 - inter
    iou = inter / union
    lt = torch.min(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[:, :, 0] * wh[:, :, 1]
    return iou - (area - union) / area


@torch.no_grad()
def scipy_matcher(outputs, targets, cost_class, cost_bbox, cost_giou, focal):
    """DETR's / Deformable DETR's HungarianMatcher.forward."""
    bs, num_queries = outputs["pred_logits"].shape[:2]
    if focal:
        out_prob = outputs["pred_logits"].flatten(0, 1).sigmoid()
    else:
        out_prob = outputs["pred_logits"].flatten(0, 1).softmax(-1)
    out_bbox = outputs["pred_boxes"].flatten(0, 1)
    tgt_ids = torch.cat([v["labels"] for v in targets])
    tgt_bbox = torch.cat([v["boxes"] for v in targets])
    if focal:
        alpha, gamma = 0.25, 2.0
        neg = (1 - alpha) * (out_prob ** gamma) * (-(1 - out_prob + 1e-8).log())
        pos = alpha * ((1 - out_prob) ** gamma) * (-(out_prob + 1e-8).log())
        c_class = pos[:, tgt_ids] - neg[:, tgt_ids]
    else:
        c_class = -out_prob[:, tgt_ids]
    c_bbox = torch.cdist(out_bbox, tgt_bbox, p=1)
    c_giou = -generalized_box_iou(box_cxcywh_to_xyxy(out_bbox), box_cxcywh_to_xyxy(tgt_bbox))
    C = cost_bbox * c_bbox + cost_class * c_class + cost_giou * c_giou
    C = C.view(bs, num_queries, -1).cpu()
    sizes = [len(v["boxes"]) for v in targets]
    indices = [linear_sum_assignment(c[i]) for i, c in enumerate(C.split(sizes, -1))]
    return [(torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64)) for i, j in indices]


def make(B, Q, C, sizes, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    outputs = {"pred_logits": torch.randn(B, Q, C, generator=g, dtype=dtype),
               "pred_boxes": torch.cat([0.2 + 0.6 * torch.rand(B, Q, 2, generator=g, dtype=dtype),
                                        0.05 + 0.3 * torch.rand(B, Q, 2, generator=g, dtype=dtype)], -1)}
    targets = [{"labels": torch.randint(0, C, (n,), generator=g),
                "boxes": torch.cat([0.2 + 0.6 * torch.rand(n, 2, generator=g, dtype=dtype),
                                    0.05 + 0.3 * torch.rand(n, 2, generator=g, dtype=dtype)], -1)} for n in sizes]
    return outputs, targets


@pytest.mark.parametrize("focal,weights", [(True, (2, 5, 2)), (False, (1, 5, 2))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sizes", [(7, 0, 3), (12, 5), (1,)])
@pytest.mark.parametrize("seed", [0, 1])
def test_matcher_identical_to_scipy(focal, weights, dtype, sizes, seed):
    outputs, targets = make(len(sizes), 10, 6, sizes, dtype, seed)
    want = scipy_matcher(outputs, targets, *weights, focal)
    got = kdetr.HungarianMatcher(*weights, focal=focal)(outputs, targets)
    assert len(got) == len(want)
    for (gi, gj), (wi, wj) in zip(got, want):
        assert gi.dtype == torch.int64 and gj.dtype == torch.int64
        assert torch.equal(gi, wi) and torch.equal(gj, wj), (gi, gj, wi, wj)


def test_matcher_deformable_detr_sizes():
    outputs, targets = make(4, 300, 91, (20, 0, 57, 3), torch.float32, 5)
    want = scipy_matcher(outputs, targets, 2, 5, 2, True)
    got = kdetr.HungarianMatcher(2, 5, 2, focal=True)(outputs, targets)
    for (gi, gj), (wi, wj) in zip(got, want):
        assert torch.equal(gi, wi) and torch.equal(gj, wj)
