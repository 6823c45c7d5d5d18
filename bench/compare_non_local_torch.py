#!/usr/bin/env python3
"""Side-by-side of the non-local block: mmcv's NonLocal2d run eagerly by PyTorch against kdloss's
ops::non_local (bench/bench_non_local_cpu.cpp), forward + backward of every parameter and x, with the
official FBKD level settings on P2-P5 of an 800x1333 input (batch 2, C = 256):
  P2 200x336 (m 64, s 8), P3 100x168 (m 64, s 4), P4 50x84 (m 128, s 2), P5 25x42 (m 128, s 2).

mmcv's NonLocal2d(sub_sample=True) pools g and phi by 2; the extra factor s/2 is one more MaxPool2d
wrapped around them, as mmrazor's NonLocal2dMaxpoolNstride does (nested pooling = one pool by s).
conv_out = conv + BN (norm_cfg=dict(type='BN')), BN in training mode.

Each configuration runs in its own process (bench/_harness.py: peak RSS of that process from wait4), with
torch.set_num_threads(t) for t in --threads. Columns: eager (mmcv's module as it is), compile
(torch.compile of the module: one untimed pass over the levels compiles, then the timed ones), kdloss
(kdloss_bench_non_local_cpu). Times are medians over --reps passes over P2-P5 after one warm-up pass, wall
and process CPU time; memory is the process's peak RSS and its growth over the start (after importing torch
and mmcv, before any tensor). The machine this was written on is shared and oversubscribed, so CPU seconds
and the ratios of one run are the steadier measures there.

--full-p2 adds dot-product mode at P2 without sub-sampling (N' = N = 67200): kdloss only, since eager's
relation matrix alone is B N N' 4 bytes = 36 GB.

    python3 bench/compare_non_local_torch.py --threads 1 2 --compile --full-p2 \
        --kdloss build/cpu/bench/kdloss_bench_non_local_cpu
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import emit, google_benchmark, maxrss_mb, measure, python_child, status_mb  # noqa: E402

LEVELS = [("P2", 200, 336, 64, 8), ("P3", 100, 168, 64, 4), ("P4", 50, 84, 128, 2), ("P5", 25, 42, 128, 2)]
B, C = 2, 256


def worker(mode, threads, compiled, reps):
    import torch
    from mmcv.cnn import NonLocal2d

    torch.set_num_threads(threads)
    base = status_mb("VmRSS")
    cases = []
    for name, h, w, m, s in LEVELS:
        block = NonLocal2d(C, reduction=C // m, mode=mode, sub_sample=True, norm_cfg=dict(type="BN"))
        if s > 2:  # mmrazor's double pooling: MaxPool(s/2) after NonLocal2d's MaxPool(2)
            block.g = torch.nn.Sequential(block.g, torch.nn.MaxPool2d(s // 2))
            block.phi = torch.nn.Sequential(block.phi, torch.nn.MaxPool2d(s // 2))
        torch.nn.init.ones_(block.conv_out.norm.weight)  # not the zero init: a real gradient path
        block.train()
        cases.append((torch.compile(block) if compiled else block, h, w))

    def step():  # forward + backward of every level, one level's tensors alive at a time
        for fn, h, w in cases:
            x = torch.randn(B, C, h, w, requires_grad=True)
            r = torch.randn(B, C, h, w)
            (fn(x) * r).sum().backward()
            del x, r

    res = measure(step, reps)  # the warm-up pass compiles
    emit({"wall_s": res["wall_ms"] / 1e3, "cpu_s": res["cpu_ms"] / 1e3, "peak_over_start_mb": maxrss_mb() - base})


def run_torch(mode, threads, compiled, reps):
    r, rss = python_child(__file__, ["--worker", mode, threads, int(compiled), reps], threads)
    if "error" not in r:
        r["peak_rss_mb"] = rss
    return r


def run_kdloss(binary, name_filter, threads):
    runs, rss = google_benchmark(binary, name_filter, threads, min_time=0.01)
    b = runs[0]
    return {"wall_s": b["real_time"] / 1e3, "cpu_s": b["cpu_time"] / 1e3, "peak_rss_mb": rss,
            "state_mb": b["state_MB"], "workspace_mb": b["workspace_MB"], "tensors_mb": b["tensors_MB"]}


def show(label, t, row, eager):
    ratio = ""
    if eager and "error" not in eager and "error" not in row and label != "eager":
        ratio = f" eager/this: time {eager['cpu_s'] / row['cpu_s']:.2f}x (cpu), {eager['wall_s'] / row['wall_s']:.2f}x " \
                f"(wall), peak RSS {row['peak_rss_mb'] / eager['peak_rss_mb']:.2f}x of eager's"
    print(f"{label:28s} threads={t} " + " ".join(
        f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()) + ratio, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=4)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--modes", nargs="+", default=["dot_product", "embedded_gaussian"])
    ap.add_argument("--reps", type=int, default=1, help="timed passes over P2-P5 (after one warm-up pass)")
    ap.add_argument("--kdloss", default="", help="path to kdloss_bench_non_local_cpu")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (slow to compile)")
    ap.add_argument("--full-p2", action="store_true", help="also dot product at P2 with N' = N (kdloss only)")
    a = ap.parse_args()
    if a.worker:
        worker(a.worker[0], int(a.worker[1]), bool(int(a.worker[2])), int(a.worker[3]))
        return
    for mode in a.modes:
        for t in a.threads:
            eager = run_torch(mode, t, False, a.reps)
            show(f"{mode} eager", t, eager, None)
            if a.compile:
                show(f"{mode} compile", t, run_torch(mode, t, True, a.reps), eager)
            if a.kdloss:
                show(f"{mode} kdloss", t, run_kdloss(a.kdloss, f"non_local/forward_backward/{mode}/P2-P5", t), eager)
    if a.full_p2 and a.kdloss:
        for t in a.threads:
            show("dot_product P2 N'=N kdloss", t,
                 run_kdloss(a.kdloss, "non_local/forward_backward/dot_product/P2,N=67200,N'=67200", t), None)
            print(f"{'dot_product P2 N=N eager':28s} threads={t} not run: the relation matrix alone is "
                  f"{B * 67200 * 67200 * 4 / 2 ** 30:.0f} GiB", flush=True)


if __name__ == "__main__":
    main()
