#!/usr/bin/env python3
"""Side-by-side of the non-local block: mmcv's NonLocal2d run eagerly by PyTorch against kdloss's
ops::non_local (bench/bench_non_local_cpu.cpp), forward + backward of every parameter and x, with the
official FBKD level settings on P2-P5 of an 800x1333 input (batch 2, C = 256):
  P2 200x336 (m 64, s 8), P3 100x168 (m 64, s 4), P4 50x84 (m 128, s 2), P5 25x42 (m 128, s 2).

mmcv's NonLocal2d(sub_sample=True) pools g and phi by 2; the extra factor s/2 is one more MaxPool2d
wrapped around them, as mmrazor's NonLocal2dMaxpoolNstride does (nested pooling = one pool by s).
conv_out = conv + BN (norm_cfg=dict(type='BN')), BN in training mode.

Each configuration runs in its own process (peak RSS measured per process with getrusage), with
torch.set_num_threads(t) for t in --threads. Reports wall time, process CPU time, and peak RSS growth
over the process's start (after importing torch and mmcv). The machine this was written on is shared
and oversubscribed, so CPU seconds are the steadier measure there.

    python3 bench/compare_non_local_torch.py --threads 1 2 [--kdloss path/to/kdloss_bench_non_local_cpu]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

LEVELS = [("P2", 200, 336, 64, 8), ("P3", 100, 168, 64, 4), ("P4", 50, 84, 128, 2), ("P5", 25, 42, 128, 2)]
B, C = 2, 256


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(mode, threads, compiled):
    import torch
    from mmcv.cnn import NonLocal2d

    torch.set_num_threads(threads)
    base = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    for name, h, w, m, s in LEVELS:
        block = NonLocal2d(C, reduction=C // m, mode=mode, sub_sample=True, norm_cfg=dict(type="BN"))
        if s > 2:  # mmrazor's double pooling: MaxPool(s/2) after NonLocal2d's MaxPool(2)
            block.g = torch.nn.Sequential(block.g, torch.nn.MaxPool2d(s // 2))
            block.phi = torch.nn.Sequential(block.phi, torch.nn.MaxPool2d(s // 2))
        torch.nn.init.ones_(block.conv_out.norm.weight)  # not the zero init: a real gradient path
        block.train()
        fn = torch.compile(block) if compiled else block
        x = torch.randn(B, C, h, w, requires_grad=True)
        r = torch.randn(B, C, h, w)
        z = fn(x)
        (z * r).sum().backward()
        del z, x, r, block, fn
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak, "peak_over_start_mb": peak - base}))


def run_torch(mode, threads, compiled):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, __file__, "--worker", mode, str(threads), str(int(compiled))],
                         env=env, capture_output=True, text=True, timeout=1800)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        return {"error": out.stderr[-300:]}
    return json.loads(lines[-1])


def run_kdloss(binary, mode, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([binary, f"--benchmark_filter=non_local/forward_backward/{mode}/P2-P5",
                          "--benchmark_min_time=0.01", "--benchmark_format=json"],
                         env=env, capture_output=True, text=True, timeout=1800)
    b = json.loads(out.stdout)["benchmarks"][0]
    return {"wall_s": b["real_time"] / 1e3, "cpu_s": b["cpu_time"] / 1e3, "peak_rss_mb": b["maxrss_MB"],
            "state_mb": b["state_MB"], "workspace_mb": b["workspace_MB"], "tensors_mb": b["tensors_MB"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--modes", nargs="+", default=["dot_product", "embedded_gaussian"])
    ap.add_argument("--kdloss", default="")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (slow to compile)")
    a = ap.parse_args()
    if a.worker:
        worker(a.worker[0], int(a.worker[1]), bool(int(a.worker[2])))
        return
    for mode in a.modes:
        for t in a.threads:
            rows = {"eager": run_torch(mode, t, False)}
            if a.compile:
                rows["compile"] = run_torch(mode, t, True)
            if a.kdloss:
                rows["kdloss"] = run_kdloss(a.kdloss, mode, t)
            for k, v in rows.items():
                print(f"{mode:18s} threads={t} {k:8s} " + " ".join(
                    f"{kk}={vv:.2f}" if isinstance(vv, float) else f"{kk}={vv}" for kk, vv in v.items()), flush=True)


if __name__ == "__main__":
    main()
