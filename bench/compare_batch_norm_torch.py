#!/usr/bin/env python3
"""Side-by-side: ops::batch_norm (bench/bench_batch_norm_cpu.cpp, train_fwd_bwd) against
torch.nn.functional.batch_norm in training mode, forward + backward (grad to x, weight and bias), float32,
batch 2, C = 256 on the [200, 336], [100, 168], [50, 84] grids, with the same thread count on both sides.

    python3 bench/compare_batch_norm_torch.py --binary build/cpu/bench/kdloss_bench_batch_norm_cpu \
        --threads 1 2 --rounds 7

Rounds are interleaved (one kdloss measurement, then one torch measurement, per round) so load from
elsewhere hits both alike; medians over the rounds are reported, with the ratio torch / kdloss (how many
times faster kdloss is). kdloss times come from Google Benchmark's real time of one forward + backward
(reserve kept by forward, read by backward); torch times from time.perf_counter around
F.batch_norm(...) and torch.autograd.grad(y, (x, w, b), gy).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SHAPES = [(2, 256, 200, 336), (2, 256, 100, 168), (2, 256, 50, 84)]


def kdloss_time(binary, threads, shape):
    name = "batch_norm/train_fwd_bwd/" + "x".join(str(s) for s in shape) + "/"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([binary, "--benchmark_filter=" + name, "--benchmark_format=json", "--benchmark_min_time=0.3"],
                         env=env, check=True, capture_output=True, text=True).stdout
    runs = json.loads(out)["benchmarks"]
    return runs[0]["real_time"] / 1e3  # milliseconds -> seconds


def torch_timer(torch, shape):
    F = torch.nn.functional
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(shape, generator=gen) * 2 - 0.5).requires_grad_(True)
    gy = torch.rand(shape, generator=gen) * 2 - 1
    w = (torch.rand(shape[1], generator=gen) + 0.5).requires_grad_(True)
    b = (torch.rand(shape[1], generator=gen) - 0.5).requires_grad_(True)
    rm, rv = torch.zeros(shape[1]), torch.ones(shape[1])

    def once():
        start = time.perf_counter()
        y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
        torch.autograd.grad(y, (x, w, b), gy)
        return time.perf_counter() - start

    once()
    return lambda: statistics.median(once() for _ in range(3))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build/cpu/bench/kdloss_bench_batch_norm_cpu")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}; medians of {args.rounds} interleaved rounds; ratio = torch / kdloss")
    print(f"{'shape':>18} {'threads':>7} {'kdloss ms':>10} {'torch ms':>10} {'ratio':>6}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for shape in SHAPES:
            timer = torch_timer(torch, shape)
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(kdloss_time(args.binary, threads, shape))
                theirs.append(timer())
            k, t = statistics.median(ours), statistics.median(theirs)
            print(f"{'x'.join(map(str, shape)):>18} {threads:>7} {k * 1e3:>10.2f} {t * 1e3:>10.2f} {t / k:>6.2f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
