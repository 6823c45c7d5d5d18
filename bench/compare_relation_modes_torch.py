#!/usr/bin/env python3
"""Side by side: kdloss's dot-product and concatenation relations (bench_relation_cpu.cpp) against PyTorch
eager on the same shapes and threads, forward and forward+backward, float32.

Shapes: FBKD's non-local levels, batch 2, m = c = 64, channels-first maps:
  P2: N = 200*336, N' = N/64;  P3: N = 100*168, N' = N/16;  P4: N = 50*84, N' = N/4.
The PyTorch side is what mmcv NonLocal2d computes, written with bmm over the explicit [N, N'] relation:
  dot:    y = (theta @ phi^T / N') @ g
  concat: y = relu(a[:, :, None] + b[:, None, :]) / N' @ g,  a = theta @ w_theta, b = phi @ w_phi
(the broadcast-add form: cheaper than mmcv's repeat + cat + 1x1 conv over [B, 2m, N, N'], which needs
2m times the memory; so these ratios understate the gain over mmcv itself). Gradients by autograd to
theta, phi, g (and w). Peak memory of each PyTorch case: a fresh subprocess's max RSS.

  python3 bench/compare_relation_modes_torch.py --threads 2 \
      --bench build/cpu/bench/kdloss_bench_relation_cpu
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import emit, google_benchmark, measure, python_child  # noqa: E402

LEVELS = {"P2": (200, 336, 8), "P3": (100, 168, 4), "P4": (50, 84, 2)}


def torch_case(mode, level, backward, threads, reps):
    import torch

    torch.set_num_threads(threads)
    h, w, s = LEVELS[level]
    n, k, m = h * w, (h // s) * (w // s), 64
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(2, n, m, generator=gen, requires_grad=backward)
    phi = torch.randn(2, k, m, generator=gen, requires_grad=backward)
    g = torch.randn(2, k, m, generator=gen, requires_grad=backward)
    wt = (torch.randn(2 * m, generator=gen) * 0.125).requires_grad_(backward)
    gy = torch.randn(2, n, m, generator=gen)

    def step():
        if mode == "dot":
            y = torch.bmm(torch.bmm(theta, phi.transpose(1, 2)) / k, g)
        else:
            a = theta @ wt[:m]
            b = phi @ wt[m:]
            y = torch.bmm(torch.relu(a[:, :, None] + b[:, None, :]) / k, g)
        if backward:
            y.backward(gy)
        return y

    r = measure(step, reps)
    return r["wall_ms"], r["ru_maxrss_mb"]


def kdloss_times(bench, threads):
    runs, _ = google_benchmark(bench, ".", threads, min_time=0.5, repetitions=3)
    times = {}
    for b in runs:
        name = b["run_name"].split("/real_time")[0]
        times[name] = (b["real_time"], b["cpu_time"], b.get("workspace_MB", 0.0))
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--levels", default="P4,P3,P2")
    ap.add_argument("--bench", help="path to kdloss_bench_relation_cpu (omit: PyTorch only)")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # internal: mode level backward
    args = ap.parse_args()
    if args.one:
        ms, rss = torch_case(args.one[0], args.one[1], args.one[2] == "1", args.threads, args.reps)
        emit({"ms": ms, "rss_mb": rss})
        return
    ours = kdloss_times(args.bench, args.threads) if args.bench else {}
    print(f"threads={args.threads}; PyTorch eager median of {args.reps}; kdloss median of 3 (real time)")
    print(f"{'case':44s} {'torch ms':>10s} {'torch MB':>9s} {'kdloss ms':>10s} {'ws MB':>7s} {'speed-up':>9s}")
    for mode in ("dot", "concat"):
        for backward in (False, True):
            for level in args.levels.split(","):
                h, w, s = LEVELS[level]
                n, k = h * w, (h // s) * (w // s)
                res, _ = python_child(__file__, ["--threads", args.threads, "--reps", args.reps, "--one", mode, level,
                                                 "1" if backward else "0"], args.threads)
                name = f"{mode}_relation/{'forward_backward' if backward else 'forward'}/{level},N={n},N'={k}"
                t_ms, t_mb = (float("nan"), float("nan")) if "error" in res else (res["ms"], res["rss_mb"])
                ours_ms, _, ws = ours.get(name, (float("nan"), 0, 0))
                print(f"{name:44s} {t_ms:10.1f} {t_mb:9.0f} {ours_ms:10.2f} {ws:7.1f} {t_ms / ours_ms:9.1f}x")


if __name__ == "__main__":
    main()
