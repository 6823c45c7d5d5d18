#!/usr/bin/env python3
"""Side by side on the host: kdloss's seed pixel relation loss against PyTorch, forward + backward.

    G(F) = softmax(F F^T / sqrt(C)) F per image (F = the map [C, H, W] read as [H*W, C]),
    L_P  = mse_loss(G(S), G(T)),  dL_P/dS through the whole relation, the teacher constant,

at the FPN levels of an 800x1333 input (P5 25x42, P4 50x84, P3 100x167, P2 200x334), C = 256, batch B, on the
same threads. Implementations:
  kdloss   drkd::pixel_relation_loss_forward_backward through a tiny ctypes library this script compiles with
           g++ from the headers (the loss's own flags: -O3, kernels pick AVX-512 / AVX2 at run time)
  sdpa-3d  torch scaled_dot_product_attention on [B, N, C] (3-D inputs: torch's math path, N x N matrices)
  sdpa-4d  scaled_dot_product_attention on [B, 1, N, C] (4-D: torch's CPU flash-attention kernel)
  eager    softmax(F F^T / sqrt(C)) F written out
Each case runs in a fresh process: one warm-up (skipped from P2 on, which runs once), then the median of
--reps timed runs (wall and process CPU time); memory is the process's peak resident set (ru_maxrss, the
whole process) and the growth of the peak over the resident set before the timed runs (VmHWM after a reset:
what one forward + backward allocates). Cases whose N x N matrices would not fit in the memory available
are reported as skipped. Also checks parity on a small case against sdpa-3d.

  python3 bench/compare_pixel_relation_torch.py --threads 1 2 --levels P5 P4 --reps 3
  python3 bench/compare_pixel_relation_torch.py --threads 2 --levels P2 --impls kdloss sdpa-4d --reps 1
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import ROOT, build_library, emit, measure, mem_available_mb, python_child  # noqa: E402

LEVELS = {"P5": (25, 42), "P4": (50, 84), "P3": (100, 167), "P2": (200, 334)}
CHANNELS = 256
IMPLS = ["kdloss", "sdpa-4d", "sdpa-3d", "eager"]

SOURCE = r"""
#include "kdloss/losses/drkd/drkd.hpp"
// L_P and dL_P/dS for NCHW float maps s, t [b, c, h, w].
extern "C" int kd_pixel_relation(const float* s, const float* t, float* out, float* grad, long b, long c, long h,
                                 long w) {
  try {
    const kdloss::Dims shape{b, c, h, w};
    kdloss::drkd::pixel_relation_loss_forward_backward(kdloss::host_view(s, shape), kdloss::host_view(t, shape),
                                                       kdloss::host_scalar(out), kdloss::host_view(grad, shape));
    return 0;
  } catch (const std::exception&) {
    return 1;
  }
}
"""


def torch_loss(impl, s, t):
    """L_P through torch; s requires grad, t does not."""
    import torch
    import torch.nn.functional as F

    c = s.shape[1]

    def rel(x):
        f = x.flatten(2).transpose(1, 2)  # [B, N, C]
        if impl == "sdpa-4d":
            return F.scaled_dot_product_attention(f[:, None], f[:, None], f[:, None], scale=c ** -0.5)[:, 0]
        if impl == "sdpa-3d":
            return F.scaled_dot_product_attention(f, f, f, scale=c ** -0.5)
        return torch.softmax(f @ f.transpose(1, 2) / c ** 0.5, dim=-1) @ f

    with torch.no_grad():
        gt = rel(t)
    return F.mse_loss(rel(s), gt)


def worker(impl, b, h, w, threads, reps, warmup, lib, seed=0):
    """One measurement in this process; prints a JSON line."""
    import ctypes
    import torch

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    s0 = torch.randn(b, CHANNELS, h, w, generator=gen)
    t0 = torch.randn(b, CHANNELS, h, w, generator=gen)
    if impl == "kdloss":
        kd = ctypes.CDLL(lib)
        out, grad = torch.empty(()), torch.empty_like(s0)
        ptr = lambda x: ctypes.c_void_p(x.data_ptr())
        dims = [ctypes.c_long(v) for v in (b, CHANNELS, h, w)]

        def step():
            assert kd.kd_pixel_relation(ptr(s0), ptr(t0), ptr(out), ptr(grad), *dims) == 0
    else:
        leaf = s0.clone().requires_grad_(True)

        def step():
            torch_loss(impl, leaf, t0).backward()
            leaf.grad = None
    emit(measure(step, reps, warmup))


def parity(lib):
    import ctypes
    import torch

    b, c, h, w = 2, 64, 12, 25
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(b, c, h, w, generator=gen)
    t = torch.randn(b, c, h, w, generator=gen)
    out, grad = torch.empty(()), torch.empty_like(s)
    ptr = lambda x: ctypes.c_void_p(x.data_ptr())
    assert ctypes.CDLL(lib).kd_pixel_relation(ptr(s), ptr(t), ptr(out), ptr(grad),
                                              *[ctypes.c_long(v) for v in (b, c, h, w)]) == 0
    leaf = s.double().requires_grad_(True)
    loss = torch_loss("sdpa-3d", leaf, t.double())
    loss.backward()
    return (abs(out.item() - loss.item()) / abs(loss.item()),
            ((grad.double() - leaf.grad).abs().max() / leaf.grad.abs().max()).item())


def fits(impl, b, n):
    """Whether torch's N x N matrices fit: about ten float matrices per image live in forward + backward."""
    if impl in ("kdloss", "sdpa-4d"):
        return True
    return 10 * b * n * n * 4 / 2 ** 20 < 0.6 * mem_available_mb()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--levels", nargs="+", default=["P5", "P4", "P3"], choices=list(LEVELS))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--impls", nargs="+", default=IMPLS, choices=IMPLS)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "compare_pixel_relation"))
    ap.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    ap.add_argument("--lib", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        impl, *rest = args.worker
        b, h, w, threads, reps, warmup = map(int, rest)
        worker(impl, b, h, w, threads, reps, warmup, args.lib)
        return
    lib = build_library(SOURCE, "kd_pixel_relation", args.build_dir)
    dv, dg = parity(lib)
    print(f"parity (B=2, C=64, 12x25, fp32 kdloss vs fp64 torch sdpa-3d): value rel {dv:.1e}, gradient rel "
          f"(max-norm) {dg:.1e}")
    print()
    print("| level | B | N | threads | impl | wall ms | cpu ms | ru_maxrss MB | peak growth MB | SDPA-4d / kdloss (wall) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for level in args.levels:
        h, w = LEVELS[level]
        n = h * w
        warmup = int(n < 20000)  # P2 runs once
        for threads in args.threads:
            results = {}
            for impl in args.impls:
                if not fits(impl, args.batch, n):
                    results[impl] = None
                    continue
                r, _ = python_child(__file__, ["--worker", impl, args.batch, h, w, threads, args.reps, warmup,
                                               "--lib", lib], threads)
                if "error" in r:
                    print(r["error"], file=sys.stderr)
                    r = None
                results[impl] = r
            kd, sdpa = results.get("kdloss"), results.get("sdpa-4d")
            for impl in args.impls:
                r = results[impl]
                if r is None:
                    print(f"| {level} | {args.batch} | {n} | {threads} | {impl} | skipped or failed (N x N matrices: "
                          f"about {10 * args.batch * n * n * 4 / 2 ** 30:.0f} GB) | | | | |")
                    continue
                ratio = f"{sdpa['wall_ms'] / kd['wall_ms']:.2f}x" if impl == "kdloss" and sdpa else ""
                print(f"| {level} | {args.batch} | {n} | {threads} | {impl} | {r['wall_ms']:.1f} | {r['cpu_ms']:.1f} | "
                      f"{r['ru_maxrss_mb']:.0f} | {r['rss_peak_mb'] - r['rss_base_mb']:.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
