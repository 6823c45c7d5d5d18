"""Side by side: DRKD's instance-relation loss (the official code's form, both levels l = 0, 1, batch 2,
100 ground-truth boxes per image, C = 256, P2 200x334 and P3 100x167 of an 800x1333 input), forward +
backward (student maps, every relation and adapter parameter), in one run:

  torch:   PyTorch eager running the official code (torchvision.ops.roi_align per image, ObjectRelation_1
           with its per-call random filter layer, torch.dist, the adaptation convs), re-implemented from
           losses.md 2.3 (python/tests/test_drkd_instance.py checks it against kdloss to 1e-10 in float64).
  kdloss:  kdloss_torch.drkd.InstanceRelationDistiller (kdloss_torch.ops.roi_align pooling, kdloss's relation
           and losses).
  and the relation part alone, from the RoI features (no pooling).

Median of --repeats runs, same thread count (torch.set_num_threads; kdloss's threads follow OMP_NUM_THREADS).

    OMP_NUM_THREADS=2 python3 bench/compare_drkd_instance_torch.py --threads 2 --repeats 5
"""
import argparse
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python", "tests"))

import kdloss_torch.drkd as drkd  # noqa: E402
from test_drkd_instance import CodeObjectRelation, code_loss  # noqa: E402


def median_ms(fn, repeats):
    """Median wall and process-CPU milliseconds (CPU time: all threads; robust on a loaded machine)."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--boxes", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    C, B = 256, 2
    sizes = [(200, 334), (100, 167)]
    sf = [torch.randn(B, C, h, w, generator=g) for h, w in sizes]
    tf = [torch.randn(B, C, h, w, generator=g) for h, w in sizes]
    boxes = []
    for _ in range(B):
        xy = torch.rand(args.boxes, 2, generator=g) * torch.tensor([1100.0, 650.0])
        wh = torch.rand(args.boxes, 2, generator=g) * 200 + 8
        boxes.append(torch.cat([xy, xy + wh], 1))
    torch.manual_seed(1)
    ours = drkd.InstanceRelationDistiller(C)
    theirs = nn.ModuleDict({
        "student_relation": nn.ModuleList([CodeObjectRelation(C * 9) for _ in range(2)]),
        "teacher_relation": nn.ModuleList([CodeObjectRelation(C * 9) for _ in range(2)]),
        "relation_adaptation": nn.ModuleList([nn.Conv2d(C, C, 1) for _ in range(2)]),
        "for_adaptation": nn.ModuleList([nn.Conv2d(C, C, 1) for _ in range(2)]),
    })
    ours.load_state_dict(theirs.state_dict())
    s = [f.clone().requires_grad_() for f in sf]

    def step_torch():
        for p in list(theirs.parameters()) + s:
            p.grad = None
        code_loss(s, tf, boxes, theirs["student_relation"], theirs["teacher_relation"], theirs["relation_adaptation"],
                  theirs["for_adaptation"], False).backward()

    def step_kdloss():
        for p in list(ours.parameters()) + s:
            p.grad = None
        ours(s, tf, boxes).backward()

    # the relation part alone: RoI features in, both levels
    rois = [(ours.pool(sf, boxes, l).detach().requires_grad_(), ours.pool(tf, boxes, l).detach()) for l in range(2)]
    off = drkd.offsets_of(boxes)

    def rel_torch():
        for p in list(theirs.parameters()):
            p.grad = None
        total = 0
        for l, (rs, rt) in enumerate(rois):
            for b in range(B):
                a, e = int(off[b]), int(off[b + 1])
                zs = theirs["student_relation"][l](rs[a:e])
                zt = theirs["teacher_relation"][l](rt[a:e])
                total = total + 0.004 * torch.dist(theirs["relation_adaptation"][l](zs), zt) + \
                    0.0024 * torch.dist(theirs["for_adaptation"][l](rs[a:e]), rt[a:e])
        total.backward()

    def rel_kdloss():
        for p in list(ours.parameters()):
            p.grad = None
        total = 0
        for l, (rs, rt) in enumerate(rois):
            n, d = rs.shape[0], rs[0].numel()
            sw, sb = drkd.draw_filter(n, d, rs)
            tw, tb = drkd.draw_filter(n, d, rs)
            total = total + drkd.instance_relation_loss(rs, rt, off, ours.student_relation[l], ours.teacher_relation[l],
                                                        ours.relation_adaptation[l], ours.for_adaptation[l],
                                                        (sw, sb), (tw, tb))
        total.backward()

    rows = [("whole loss (roi_align + relation), fwd+bwd", step_torch, step_kdloss),
            ("relation only (from RoI features), fwd+bwd", rel_torch, rel_kdloss)]
    print(f"threads {args.threads}, repeats {args.repeats}, batch {B}, {args.boxes} boxes per image, C {C}")
    for name, ft, fk in rows:
        t, tc = median_ms(ft, args.repeats)
        k, kc = median_ms(fk, args.repeats)
        print(f"{name:48s} torch eager {t:9.1f} ms (cpu {tc:9.1f})   kdloss {k:9.1f} ms (cpu {kc:9.1f})   "
              f"speed-up x{t / k:5.2f} (cpu x{tc / kc:5.2f})")


if __name__ == "__main__":
    main()
