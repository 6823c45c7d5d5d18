#!/usr/bin/env python3
"""Side-by-side of the kdloss_torch.blocks modules against the reference modules run eagerly by PyTorch, through
the bridge (what a training script sees): forward + backward of x and every parameter, one FPN level, batch 2,
C = 256, the same state_dict on both sides.

  non_local  kdloss_torch.blocks.NonLocal2dMaxpoolNstride vs mmcv NonLocal2d + one more MaxPool (mmrazor's
             nesting), official FBKD level settings (P3 100x168: m 64, pool 4; P4 50x84: m 128, pool 2), in
             dot_product and embedded_gaussian modes;
  glore      kdloss_torch.blocks.GloRe vs bench/glore_torch_reference.py's GloRe_Unit (the DRKD code), P4 50x84
             with GloRe_Unit_2D(256, 256) and P3 100x168 with (256, 64).

Median wall and process-CPU seconds of --reps steps after one warm-up, torch.set_num_threads(--threads).

    python3 bench/compare_blocks_torch.py [--threads 2] [--reps 3]
"""
import argparse
import importlib.util
import os
import statistics
import sys
import time

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
import kdloss_torch.blocks as kb  # noqa: E402


def timed(module, x, reps):
    def one():
        xx = x.detach().requires_grad_()
        z = module(xx)
        z.backward(torch.ones_like(z))
    one()
    walls, cpus = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        one()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def mmcv_block(mode, c, m, pool):
    from mmcv.cnn import NonLocal2d
    block = NonLocal2d(c, sub_sample=True, reduction=c // m, mode=mode, norm_cfg=dict(type="BN"))
    # mmrazor's NonLocal2dMaxpoolNstride: a second pool around g and phi (MaxPool2d(1) at pool 2)
    block.g = nn.Sequential(block.g, nn.MaxPool2d(pool // 2))
    block.phi = nn.Sequential(block.phi, nn.MaxPool2d(pool // 2))
    return block


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for name, h, w, m, pool in [("P4", 50, 84, 128, 2), ("P3", 100, 168, 64, 4)]:
        x = torch.randn(2, 256, h, w)
        for mode in ("dot_product", "embedded_gaussian"):
            ref = mmcv_block(mode, 256, m, pool)
            mine = kb.NonLocal2dMaxpoolNstride(256, reduction=256 // m, mode=mode, sub_sample=True,
                                               maxpool_stride=pool // 2)
            mine.load_state_dict(ref.state_dict())
            rows.append(("non_local %s %s" % (mode, name), timed(mine, x, args.reps), timed(ref, x, args.reps)))
    spec = importlib.util.spec_from_file_location("glore_ref", os.path.join(HERE, "glore_torch_reference.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, h, w, mid in [("P4", 50, 84, 256), ("P3", 100, 168, 64)]:
        x = torch.randn(2, 256, h, w)
        ref = mod.GloRe_Unit(256, mid)
        mine = kb.GloRe(256, mid)
        mine.load_state_dict(ref.state_dict())
        rows.append(("glore %s (256, %d)" % (name, mid), timed(mine, x, args.reps), timed(ref, x, args.reps)))
    print("threads %d, median of %d; seconds (wall / process CPU)" % (args.threads, args.reps))
    print("| case | kdloss_torch | torch eager | ratio (CPU) |")
    print("|---|---|---|---|")
    for case, (kw, kc), (tw, tc) in rows:
        print("| %s | %.3f / %.3f | %.3f / %.3f | %.2f |" % (case, kw, kc, tw, tc, tc / kc))


if __name__ == "__main__":
    main()
