#!/usr/bin/env python3
"""Side by side on the host: kdloss's softmax relation against PyTorch on the seed pixel relation
G(F) = softmax(F F^T / sqrt(C)) F (theta = phi = g = F, C = 256, one image) at the FPN levels
P5 (25x42), P4 (50x84) and P3 (100x167), forward + backward (the gradient to F), on the same threads.

kdloss is called through a tiny ctypes library this script compiles with g++ from the headers (no Python
binding yet); torch runs
  sdpa-3d  scaled_dot_product_attention on [1, N, C] (3-D inputs: torch's math path, N x N matrices),
  sdpa-4d  scaled_dot_product_attention on [1, 1, N, C] (4-D: torch's CPU flash-attention kernel),
  eager    softmax(F F^T / sqrt(C)) F written out,
each measurement in a fresh process (medians of --reps runs after one warm-up; wall and process CPU time)
with its peak resident set over the timed runs (VmHWM, reset after the warm-up) and its growth over the
resident set before them (what one forward + backward allocates on top of the inputs and the runtime). Cases
whose N x N matrices would not fit in the memory available are reported as skipped.

Also checks parity on a small case (N = 300, C = 64): the largest difference of y and of the gradient
between kdloss and torch's SDPA.

  python3 bench/compare_relation_torch.py --threads 1 2 --levels P5 P4 P3 --reps 3
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import ROOT, build_library, emit, measure, mem_available_mb, python_child  # noqa: E402

LEVELS = {"P5": (25, 42), "P4": (50, 84), "P3": (100, 167)}
CHANNELS = 256
IMPLS = ["kdloss", "sdpa-3d", "sdpa-4d", "eager"]

SOURCE = r"""
#include <cmath>
#include "kdloss/ops/softmax_relation.hpp"
// y = G(F) for F [1, n, c] row-major; with backward, grad = dL/dF for dL/dy = gy (theta, phi and g terms summed).
extern "C" int kd_relation(const float* f, const float* gy, float* y, float* gt, float* gp, float* gg, float* grad,
                           long n, long c, int backward) {
  try {
    kdloss::ops::SoftmaxRelationArgs<float> a;
    a.theta = a.phi = a.g = kdloss::host_view(f, {1, n, c});
    a.y = kdloss::host_view(y, {1, n, c});
    a.options.scale = 1.0 / std::sqrt(double(c));
    if (backward) {
      a.grad_y = kdloss::host_view(gy, {1, n, c});
      a.grad_theta = kdloss::host_view(gt, {1, n, c});
      a.grad_phi = kdloss::host_view(gp, {1, n, c});
      a.grad_g = kdloss::host_view(gg, {1, n, c});
    }
    kdloss::ops::softmax_relation(a, backward ? kdloss::Mode::forward_backward : kdloss::Mode::forward);
    if (backward)
      for (long i = 0; i < n * c; ++i) grad[i] = gt[i] + gp[i] + gg[i];
    return 0;
  } catch (const std::exception&) {
    return 1;
  }
}
"""


def worker(impl, n, threads, reps, lib, seed=0):
    """One measurement in this process; prints a JSON line."""
    import ctypes
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    gen = torch.Generator().manual_seed(seed)
    c = CHANNELS
    f0 = torch.randn(1, n, c, generator=gen)
    gy = torch.randn(1, n, c, generator=gen)
    if impl == "kdloss":
        kd = ctypes.CDLL(lib)
        bufs = [torch.empty(1, n, c) for _ in range(5)]  # y, gt, gp, gg, grad
        ptr = lambda t: ctypes.c_void_p(t.data_ptr())

        def step():
            rc = kd.kd_relation(ptr(f0), ptr(gy), *[ptr(b) for b in bufs], ctypes.c_long(n), ctypes.c_long(c), 1)
            assert rc == 0
    else:
        leaf = (f0.view(1, 1, n, c) if impl == "sdpa-4d" else f0).clone().requires_grad_(True)
        g = gy.view_as(leaf)

        def step():
            if impl == "eager":
                y = torch.softmax(leaf @ leaf.transpose(-1, -2) / c ** 0.5, dim=-1) @ leaf
            else:
                y = F.scaled_dot_product_attention(leaf, leaf, leaf, scale=c ** -0.5)
            y.backward(g)
            leaf.grad = None
    emit(measure(step, reps))  # one warm-up first (also loads the library and starts the thread pools)


def parity(lib):
    import ctypes
    import torch
    import torch.nn.functional as F

    n, c = 300, 64
    gen = torch.Generator().manual_seed(1)
    f = torch.randn(1, n, c, generator=gen)
    gy = torch.randn(1, n, c, generator=gen)
    kd = ctypes.CDLL(lib)
    bufs = [torch.empty(1, n, c) for _ in range(5)]
    ptr = lambda t: ctypes.c_void_p(t.data_ptr())
    assert kd.kd_relation(ptr(f), ptr(gy), *[ptr(b) for b in bufs], ctypes.c_long(n), ctypes.c_long(c), 1) == 0
    leaf = f.clone().requires_grad_(True)
    y = F.scaled_dot_product_attention(leaf, leaf, leaf, scale=c ** -0.5)
    y.backward(gy)
    dy = (bufs[0] - y.detach()).abs().max().item()
    dg = (bufs[4] - leaf.grad).abs().max().item()
    return dy, dg, y.detach().abs().max().item(), leaf.grad.abs().max().item()


def fits(impl, n):
    """Whether torch's N x N matrices fit: about ten float matrices live at once in forward + backward."""
    if impl in ("kdloss", "sdpa-4d"):
        return True
    return 10 * n * n * 4 / 2 ** 20 < 0.6 * mem_available_mb()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--levels", nargs="+", default=["P5", "P4", "P3"], choices=list(LEVELS))
    ap.add_argument("--impls", nargs="+", default=IMPLS, choices=IMPLS)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "compare_relation"))
    ap.add_argument("--worker", nargs=4, metavar=("IMPL", "N", "THREADS", "REPS"), help=argparse.SUPPRESS)
    ap.add_argument("--lib", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        impl, n, threads, reps = args.worker
        worker(impl, int(n), int(threads), int(reps), args.lib)
        return
    lib = build_library(SOURCE, "kd_relation", args.build_dir)
    dy, dg, ymax, gmax = parity(lib)
    print(f"parity (N=300, C=64, fp32) vs torch SDPA: max |dy| = {dy:.2e} (max |y| {ymax:.2f}), "
          f"max |dgrad| = {dg:.2e} (max |grad| {gmax:.2f})")
    print()
    print("| level | N | threads | impl | wall ms | cpu ms | peak RSS MB | peak growth MB | kdloss speed-up (wall) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for level in args.levels:
        h, w = LEVELS[level]
        n = h * w
        for threads in args.threads:
            results = {}
            for impl in args.impls:
                if not fits(impl, n):
                    results[impl] = None
                    continue
                r, _ = python_child(__file__, ["--worker", impl, n, threads, args.reps, "--lib", lib], threads)
                if "error" in r:
                    print(r["error"], file=sys.stderr)
                    r = None
                results[impl] = r
            kd = results.get("kdloss")
            for impl in args.impls:
                r = results[impl]
                if r is None:
                    print(f"| {level} | {n} | {threads} | {impl} | skipped (N x N matrices: about "
                          f"{10 * n * n * 4 / 2 ** 30:.0f} GB) | | | | |")
                    continue
                ratio = "" if impl == "kdloss" or kd is None else f"{r['wall_ms'] / kd['wall_ms']:.2f}x"
                print(f"| {level} | {n} | {threads} | {impl} | {r['wall_ms']:.1f} | {r['cpu_ms']:.1f} | "
                      f"{r['rss_peak_mb']:.0f} | {r['rss_peak_mb'] - r['rss_base_mb']:.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
