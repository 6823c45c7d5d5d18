#!/usr/bin/env python3
"""Side-by-side: ops::glore (bench/bench_glore_cpu.cpp, train_fwd_bwd) against PyTorch eager running the
DRKD code's GloRe_Unit_2D (bench/glore_torch_reference.py), forward + backward (grad to x and every
parameter), float32, batch 2, C = 256 on the FPN levels P2-P6 of an 800x1333 input with the code's unit
sizes (num_mid 64 on P2/P3, 256 on P4-P6), with the same thread count on both sides.

    python3 bench/compare_glore_torch.py --binary build/cpu/bench/kdloss_bench_glore_cpu --threads 1 2 --rounds 5

Each measurement runs in its own child process, so its peak resident memory (ru_maxrss from wait4) is the
peak of that case alone: the kdloss binary with one benchmark (inputs, outputs, parameter gradients, reserve
and workspace included) against one Python process that imports torch and runs the module. Rounds are
interleaved (kdloss, then torch) and medians over the rounds are reported, with the ratio torch / kdloss.
The torch process's baseline (python + torch imported, nothing allocated) is printed so the memory the
case itself needs can be read off. --compile adds torch.compile of the same module (compiled in an untimed
first call, then timed like eager). Child processes and their peak RSS: bench/_harness.py.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import child, google_benchmark  # noqa: E402

LEVELS = [("P2", 200, 334, 64), ("P3", 100, 167, 64), ("P4", 50, 84, 256), ("P5", 25, 42, 256), ("P6", 13, 21, 256)]
HERE = os.path.dirname(os.path.abspath(__file__))

TORCH_CHILD = r"""
import sys, time, json, statistics
sys.path.insert(0, {here!r})
import torch
torch.set_num_threads({threads})
from glore_torch_reference import GloRe_Unit_2D
h, w, mid, reps = {h}, {w}, {mid}, {reps}
if mid == 0:
    print(json.dumps({{"time": 0.0}})); sys.exit(0)
torch.manual_seed(0)
unit = GloRe_Unit_2D(256, mid).train()
fn = torch.compile(unit) if {compiled} else unit
x = torch.randn(2, 256, h, w, requires_grad=True)
g = torch.randn(2, 256, h, w)
def once():
    t = time.perf_counter()
    out = fn(x)
    torch.autograd.grad(out, [x] + list(unit.parameters()), g)
    return time.perf_counter() - t
once()
print(json.dumps({{"time": statistics.median(once() for _ in range(reps))}}))
"""


def kdloss_run(binary, threads, level):
    name, h, w, mid = level
    flt = "glore/train_fwd_bwd/%s/2x256x%dx%d/mid%d/" % (name, h, w, mid)
    runs, rss = google_benchmark(binary, flt, threads, min_time=0.2)
    run = runs[0]
    return run["real_time"] / 1e3, rss, run.get("reserve_MB", 0.0) + run.get("workspace_MB", 0.0)


def torch_run(threads, level, reps, compiled=False):
    _, h, w, mid = level
    code = TORCH_CHILD.format(here=HERE, threads=threads, h=h, w=w, mid=mid, reps=reps, compiled=int(compiled))
    out, rss = child([sys.executable, "-c", code], threads)
    if "error" in out:
        raise RuntimeError(out["error"])
    return out["time"], rss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build/cpu/bench/kdloss_bench_glore_cpu")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--levels", nargs="+", default=[l[0] for l in LEVELS])
    ap.add_argument("--compile", action="store_true", help="also torch.compile of the module")
    args = ap.parse_args()
    levels = [l for l in LEVELS if l[0] in args.levels]
    for threads in args.threads:
        _, base = torch_run(threads, ("none", 1, 1, 0), 1)
        print("threads=%d (torch process baseline %.0f MB)" % (threads, base))
        print("%-4s %5s %12s %12s %8s %12s %12s %14s %12s %8s %12s" % (
            "lvl", "mid", "kdloss s", "torch s", "ratio", "kdloss MB", "torch MB", "kdloss ws+res", "compile s",
            "ratio", "compile MB"))
        for level in levels:
            kt, kr, tt, tr, ct, cr = [], [], [], [], [], []
            ws = 0.0
            for _ in range(args.rounds):
                t, r, ws = kdloss_run(args.binary, threads, level)
                kt.append(t)
                kr.append(r)
                t, r = torch_run(threads, level, 1)
                tt.append(t)
                tr.append(r)
                if args.compile:
                    t, r = torch_run(threads, level, 1, compiled=True)
                    ct.append(t)
                    cr.append(r)
            k, t = statistics.median(kt), statistics.median(tt)
            comp = ("%12.4f %8.2f %12.0f" % (statistics.median(ct), statistics.median(ct) / k, max(cr))
                    if ct else "%12s %8s %12s" % ("-", "-", "-"))
            print("%-4s %5d %12.4f %12.4f %8.2f %12.0f %12.0f %14.0f %s" % (level[0], level[3], k, t, t / k, max(kr),
                                                                            max(tr), ws, comp), flush=True)


if __name__ == "__main__":
    main()
