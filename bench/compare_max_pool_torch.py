#!/usr/bin/env python3
"""Side by side: kdloss::ops::max_pool2d (bench_max_pool_cpu.cpp) against torch.nn.functional.max_pool2d
on the host, at FBKD's non-local sub-sampling shapes, with the same thread counts.

For each shape and thread count it reports median wall times (ms) of
  forward           torch: F.max_pool2d(x, s, s, return_indices=True) (what autograd keeps) /
                    kdloss: forward filling the reserve
  backward          torch: aten.max_pool2d_with_indices_backward from the indices /
                    kdloss: backward from the reserve
  forward_backward  torch: y = F.max_pool2d(x, s, s); y.backward(gy) through autograd /
                    kdloss: the fused forward_backward

  python3 bench/compare_max_pool_torch.py --binary build/cpu/bench/kdloss_bench_max_pool_cpu --threads 1 2
"""
import argparse
import os
import re
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F

CASES = [("P2_2x256x200x336_s8", (2, 256, 200, 336), 8), ("P3_2x256x100x168_s4", (2, 256, 100, 168), 4),
         ("P4_2x256x50x84_s2", (2, 256, 50, 84), 2)]


def median_ms(fn, reps):
    """(median wall ms, median CPU ms of the calling thread)."""
    fn()  # warm up
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.thread_time() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def torch_times(shape, s, reps):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen) * 2 - 1
    out = (shape[0], shape[1], shape[2] // s, shape[3] // s)
    gy = torch.rand(out, generator=gen)
    _, idx = F.max_pool2d(x, s, s, return_indices=True)
    xr = x.clone().requires_grad_()

    def fwd_bwd():
        xr.grad = None
        F.max_pool2d(xr, s, s).backward(gy)

    return {
        "forward": median_ms(lambda: F.max_pool2d(x, s, s, return_indices=True), reps),
        "backward": median_ms(
            lambda: torch.ops.aten.max_pool2d_with_indices_backward(gy, x, [s, s], [s, s], [0, 0], [1, 1], False, idx),
            reps),
        "forward_backward": median_ms(fwd_bwd, reps),
    }


def kdloss_times(binary, threads, reps):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([binary, f"--benchmark_repetitions={reps}", "--benchmark_report_aggregates_only=true",
                          "--benchmark_filter=_s[0-9]/"], env=env, check=True, capture_output=True, text=True).stdout
    res = {}
    unit = {"ms": 1.0, "us": 1e-3, "ns": 1e-6}
    for m in re.finditer(r"^max_pool2d/(\S+)/(\w+)/real_time_median\s+([\d.]+) (ms|us|ns)\s+([\d.]+) (ms|us|ns)", out,
                         re.M):
        res[(m.group(1), m.group(2))] = (float(m.group(3)) * unit[m.group(4)], float(m.group(5)) * unit[m.group(6)])
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default="build/cpu/bench/kdloss_bench_max_pool_cpu")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    print(f"torch {torch.__version__}; median of {a.reps} runs, ms; wall time, and the calling thread's CPU time")
    print("(the CPU-time columns are the fair ones on a loaded machine, with 1 thread)")
    print(f"{'case':24} {'threads':>7} {'what':>17} {'torch':>9} {'kdloss':>9} {'speed-up':>9}"
          f" {'torch cpu':>10} {'kdl cpu':>9} {'speed-up':>9}")
    for threads in a.threads:
        torch.set_num_threads(threads)
        kd = kdloss_times(a.binary, threads, a.reps)
        for name, shape, s in CASES:
            tt = torch_times(shape, s, a.reps)
            for what in ("forward", "backward", "forward_backward"):
                kw, kc = kd.get((name, what), (float("nan"), float("nan")))
                tw, tc = tt[what]
                print(f"{name:24} {threads:>7} {what:>17} {tw:9.2f} {kw:9.2f} {tw / kw:8.2f}x"
                      f" {tc:10.2f} {kc:9.2f} {tc / kc:8.2f}x")


if __name__ == "__main__":
    main()
