"""Side by side: kdloss_torch.detr against torchvision / PyTorch eager at DETRDistill's shapes
(batch 2, 300 queries, 80 classes, ~20 targets per image), one thread, medians of repeats.

    OMP_NUM_THREADS=1 python3 bench/compare_boxes_torch.py [--repeats 50]

Cases: generalized_box_iou_loss forward + backward over 600 pairs (torchvision.ops vs kdloss, the
mmdet form); the mmdet HungarianAssigner cost [2, 300, 20] (focal + L1 + GIoU) and DETRDistill's
soft-BCE cost [2, 300, 300] (PyTorch re-implementations of the matchers' code vs kdloss.matching_cost).
"""

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import torchvision.ops as tv  # noqa: E402

import kdloss_torch.detr as kdetr  # noqa: E402


def median_ms(fn, repeats):
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def cxcywh_to_xyxy(b):
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def xyxy_to_cxcywh(b):
    x0, y0, x1, y1 = b.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1)


def mmdet_giou_pairwise(b1, b2, eps=1e-6):
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    lt = torch.max(b1[:, None, :2], b2[None, :, :2])
    rb = torch.min(b1[:, None, 2:], b2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    ov = wh[..., 0] * wh[..., 1]
    union = torch.max(area1[:, None] + area2[None] - ov, ov.new_tensor([eps]))
    elt = torch.min(b1[:, None, :2], b2[None, :, :2])
    erb = torch.max(b1[:, None, 2:], b2[None, :, 2:])
    ewh = (erb - elt).clamp(min=0)
    ea = torch.max(ewh[..., 0] * ewh[..., 1], ov.new_tensor([eps]))
    return ov / union - (ea - union) / ea


def torch_cost(logits, boxes, tboxes, labels, probs, hw, soft):
    out = []
    for b in range(logits.shape[0]):
        h, w = hw[b]
        factor = tboxes[b].new_tensor([w, h, w, h])[None]
        z = logits[b]
        if soft:
            p = probs[b]
            cls = (p[None] * F.softplus(-z)[:, None] + (1 - p[None]) * F.softplus(z)[:, None]).sum(-1)
        else:
            prob = z.sigmoid()
            neg = -(1 - prob + 1e-12).log() * 0.75 * prob.pow(2)
            pos = -(prob + 1e-12).log() * 0.25 * (1 - prob).pow(2)
            cls = 2.0 * (pos[:, labels[b]] - neg[:, labels[b]])
        reg = 5.0 * torch.cdist(boxes[b], xyxy_to_cxcywh(tboxes[b] / factor), p=1)
        iou = -2.0 * mmdet_giou_pairwise(cxcywh_to_xyxy(boxes[b]) * factor, tboxes[b])
        out.append(cls + reg + iou)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    # GIoU loss fwd + bwd, 600 pairs
    p = torch.cat([0.2 + 0.6 * torch.rand(600, 2), 0.05 + 0.2 * torch.rand(600, 2)], -1)
    t = torch.cat([0.2 + 0.6 * torch.rand(600, 2), 0.05 + 0.2 * torch.rand(600, 2)], -1)
    px, tx = cxcywh_to_xyxy(p), cxcywh_to_xyxy(t)

    def tv_giou():
        x = px.clone().requires_grad_()
        tv.generalized_box_iou_loss(x, tx, reduction="sum").backward()

    def kd_giou():
        x = px.clone().requires_grad_()
        kdetr.generalized_box_iou_loss(x, tx, reduction="sum", form="mmdet", eps=1e-6).backward()

    rows.append(("giou_loss fwd+bwd, 600 pairs", median_ms(tv_giou, args.repeats), median_ms(kd_giou, args.repeats)))
    # costs
    B, Q, C = 2, 300, 80
    logits = torch.randn(B, Q, C) * 2
    boxes = torch.cat([0.2 + 0.6 * torch.rand(B, Q, 2), 0.05 + 0.2 * torch.rand(B, Q, 2)], -1)
    hw = [(480.0, 640.0), (480.0, 640.0)]
    sizes = torch.tensor(hw)
    for soft, per in ((False, 20), (True, 300)):
        tb = [cxcywh_to_xyxy(torch.cat([0.2 + 0.6 * torch.rand(per, 2), 0.05 + 0.2 * torch.rand(per, 2)], -1)) *
              torch.tensor([640.0, 480.0, 640.0, 480.0]) for _ in range(B)]
        labels = [torch.randint(0, C, (per,)) for _ in range(B)]
        probs = [torch.rand(per, C) for _ in range(B)]
        preset = "detrdistill" if soft else "mmdet"

        def tc():
            with torch.no_grad():
                torch_cost(logits, boxes, tb, labels, probs, hw, soft)

        def kc():
            kdetr.matching_cost(logits, boxes, tb, target_labels=None if soft else labels,
                                target_probs=probs if soft else None, sizes=sizes, preset=preset)

        got = kdetr.matching_cost(logits, boxes, tb, target_labels=None if soft else labels,
                                  target_probs=probs if soft else None, sizes=sizes, preset=preset)
        want = torch_cost(logits, boxes, tb, labels, probs, hw, soft)
        for b in range(B):
            torch.testing.assert_close(got[b], want[b], rtol=1e-4, atol=1e-4)
        name = f"cost {preset} [2, 300, {per}]"
        rows.append((name, median_ms(tc, args.repeats), median_ms(kc, args.repeats)))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {args.repeats} (median ms)")
    print(f"{'case':40s} {'torch':>9s} {'kdloss':>9s} {'ratio':>7s}")
    for name, a, b in rows:
        print(f"{name:40s} {a:9.3f} {b:9.3f} {a / b:6.2f}x")


if __name__ == "__main__":
    main()
