#!/usr/bin/env python3
"""Side by side on the host: kdloss's DETRDistill losses against PyTorch eager re-implementations of the
official code (python/tests/detr_distill_reference.py), forward + backward, at the code's sizes:

  feature      target-aware feature distillation, 6 decoder layers x 4 neck levels (100x167, 50x84, 25x42,
               13x21 of an 800x1333 input), batch 2, 300 queries x 80 classes, top-100, D = 256, float32;
               the student maps get the gradient.
  contrastive  the code's InfoNCE query term, 6 layers x [600, 512] projections (both get gradients).
  logits       Hungarian-matching logits distillation, 6 layers, batch 2, 300 student queries x 300 teacher
               predictions x 80 classes: pseudo-targets + cost + assignment + loss, forward + backward
               (eager: torch cost and loss, scipy.optimize.linear_sum_assignment per image and layer).

Implementations: kdloss (kdloss_torch.detr, the in-place build in python/) and eager (the reference code).
Each case runs in a fresh process: one warm-up, then the median of --reps timed runs; CPU ms: the median process CPU time of the same runs (the shared machine's
wall time is noisy); memory is the growth of
the peak resident set over the resident set before the timed run (VmHWM after a reset: what one forward +
backward allocates, gradients included).

  python3 bench/compare_detrdistill_torch.py --threads 1 --reps 5
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _harness import peak_mb, reset_peak, status_mb  # noqa: E402

LEVELS = [(100, 167), (50, 84), (25, 42), (13, 21)]


def inputs(case, torch):
    g = torch.Generator().manual_seed(0)
    if case == "feature":
        K, B, Q, C, D = 6, 2, 300, 80, 256
        scores = torch.rand(K, B, Q, C, generator=g)
        xy = torch.rand(K, B, Q, 2, generator=g) * torch.tensor([1000.0, 600.0])
        boxes = torch.cat([xy, xy + 20 + torch.rand(K, B, Q, 2, generator=g) * 300], -1)
        queries = torch.randn(K, B, Q, D, generator=g)
        gts = [torch.tensor([[100.0, 100, 400, 300], [500, 200, 900, 700]]), torch.tensor([[50.0, 600, 300, 790]])]
        fts = [torch.randn(B, D, h, w, generator=g) for h, w in LEVELS]
        fss = [torch.randn(B, D, h, w, generator=g) for h, w in LEVELS]
        return scores, boxes, queries, gts, fts, fss
    if case == "logits":
        K, B, Q, C = 6, 2, 300, 80
        sl = torch.randn(K, B, Q, C, generator=g) * 2 - 3
        tl = torch.randn(K, B, Q, C, generator=g) * 2 - 3
        sb = torch.cat([0.1 + 0.8 * torch.rand(K, B, Q, 2, generator=g), 0.05 + 0.3 * torch.rand(K, B, Q, 2, generator=g)], -1)
        tb = torch.cat([0.1 + 0.8 * torch.rand(K, B, Q, 2, generator=g), 0.05 + 0.3 * torch.rand(K, B, Q, 2, generator=g)], -1)
        sizes = torch.tensor([[800.0, 1067.0], [800.0, 1199.0]])
        return sl, sb, tl, tb, sizes
    pt = torch.randn(6, 600, 512, generator=g)
    ps = torch.randn(6, 600, 512, generator=g)
    return pt, ps


def worker(case, impl, threads, reps):
    import torch
    torch.set_num_threads(threads)
    sys.path.insert(0, os.path.join(ROOT, "python"))
    sys.path.insert(0, os.path.join(ROOT, "python", "tests"))
    import kdloss_torch.detr as kdetr
    import detr_distill_reference as ref

    x = inputs(case, torch)
    if case == "feature":
        scores, boxes, queries, gts, fts, fss = x
        fn = kdetr.target_aware_feature_loss if impl == "kdloss" else ref.feature

        def step():
            s = [f.detach().requires_grad_(True) for f in fss]
            v = fn(scores, boxes, queries, gts, fts, s, topk=100)
            v.backward()
            return v.item()
    elif case == "logits":
        sl, sb, tl, tb, sizes = x
        fn = kdetr.logits_distillation_loss if impl == "kdloss" else ref.logits_distillation

        def step():
            a, b = sl.detach().requires_grad_(True), sb.detach().requires_grad_(True)
            v = fn(a, b, tl, tb, sizes)
            v.backward()
            return v.item()
    else:
        pt, ps = x
        fn = kdetr.contrastive_query_loss if impl == "kdloss" else ref.contrastive

        def step():
            a, b = pt.detach().requires_grad_(True), ps.detach().requires_grad_(True)
            v = fn(a, b)
            v.backward()
            return v.item()

    value = step()  # warm-up
    times, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    rss = status_mb("VmRSS")
    reset_peak()
    step()
    grow = peak_mb() - rss
    print(json.dumps({"case": case, "impl": impl, "threads": threads, "ms": 1e3 * statistics.median(times),
                      "cpu_ms": 1e3 * statistics.median(cpu),
                      "peak_growth_mb": grow, "value": value}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--cases", nargs="+", default=["feature", "logits", "contrastive"])
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a.worker[0], a.worker[1], int(a.worker[2]), int(a.worker[3]))
        return
    print("| case | threads | kdloss ms | eager ms | speed-up | kdloss CPU ms | eager CPU ms | CPU speed-up "
          "| kdloss peak MB | eager peak MB | memory ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for case in a.cases:
        for t in a.threads:
            res = {}
            for impl in ("kdloss", "eager"):
                env = dict(os.environ, OMP_NUM_THREADS=str(t))
                out = subprocess.run([sys.executable, __file__, "--worker", case, impl, str(t), str(a.reps)],
                                     capture_output=True, text=True, env=env, check=True).stdout
                res[impl] = json.loads(out.strip().splitlines()[-1])
            k, e = res["kdloss"], res["eager"]
            assert abs(k["value"] - e["value"]) <= 1e-4 * abs(e["value"]), (k["value"], e["value"])
            print("| %s | %d | %.1f | %.1f | %.1fx | %.1f | %.1f | %.1fx | %.1f | %.1f | %.3f |" % (
                case, t, k["ms"], e["ms"], e["ms"] / k["ms"], k["cpu_ms"], e["cpu_ms"], e["cpu_ms"] / k["cpu_ms"],
                k["peak_growth_mb"], e["peak_growth_mb"],
                k["peak_growth_mb"] / max(e["peak_growth_mb"], 1e-9)))


if __name__ == "__main__":
    main()
