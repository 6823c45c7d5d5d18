#!/usr/bin/env python3
"""Side-by-side of the whole FBKD total WITH L_NLD, forward + backward, two-stage preset
(Config.code_two_stage(): code masks and L_AT, w_am = w_nld = 7e-5, w_at = 4e-3, the official
non-local blocks: dot product, m 64/64/128/128, pools 8/4/2/2), on P2-P5 of an 800x1333 input
(batch 2, C = 256): P2 200x336, P3 100x168, P4 50x84, P5 25x42.

  kdloss:  kdloss_torch.fbkd.FBKDLoss(Config.code_two_stage(), channels=256, num_levels=4): the adapters
           in PyTorch, the masks, L_AM, L_AT and both non-local blocks + L_NLD in one kdloss call.
  torch:   the official code's computation in PyTorch eager: the same adapters, mmrazor/official
           masks and L_AM / L_AT (torch.dist), and the official NonLocalBlockND (re-implemented from
           reference/losses.md 1.5; BN in training mode) for NL_S and NL_T, torch.dist for L_NLD.
  compile: the torch side under torch.compile (--compile; skipped when it does not finish in time).

Gradients: S, every adapter, both blocks (NL_T included), the adaptation conv; T gets none. Each run is
its own process (peak RSS growth measured with getrusage over the process's start); median of
--repeats timed steps after one warm-up step.

    PYTHONPATH=python python3 bench/compare_fbkd_total_torch.py --threads 2 [--repeats 3] [--compile]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

LEVELS = [("P2", 200, 336), ("P3", 100, 168), ("P4", 50, 84), ("P5", 25, 42)]
B, C = 2, 256


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def torch_reference(torch, config, channels, num_levels):
    """The official two-stage computation in PyTorch (adapters + blocks as modules)."""

    class Block(torch.nn.Module):  # official NonLocalBlockND, dimension 2, dot product
        def __init__(self, c, m, s):
            super().__init__()
            self.m = m
            self.g, self.theta, self.phi = (torch.nn.Conv2d(c, m, 1) for _ in range(3))
            self.W = torch.nn.Sequential(torch.nn.Conv2d(m, c, 1), torch.nn.BatchNorm2d(c))
            self.pool = torch.nn.MaxPool2d(s)

        def forward(self, x):
            b = x.size(0)
            g_x = self.pool(self.g(x)).view(b, self.m, -1).permute(0, 2, 1)
            theta_x = self.theta(x).view(b, self.m, -1).permute(0, 2, 1)
            phi_x = self.pool(self.phi(x)).view(b, self.m, -1)
            f = theta_x @ phi_x
            y = (f / f.size(-1)) @ g_x
            y = y.permute(0, 2, 1).contiguous().view(b, self.m, *x.size()[2:])
            return self.W(y) + x

    class Reference(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.levels = torch.nn.ModuleList()
            for i in range(num_levels):
                m, s = config.non_local_inter_channels(i, channels), config.non_local_pool(i)
                self.levels.append(torch.nn.ModuleDict({
                    "adapted": torch.nn.Conv2d(channels, channels, 1), "channel": torch.nn.Linear(channels, channels),
                    "spatial": torch.nn.Conv2d(1, 1, 3, padding=1), "student_non_local": Block(channels, m, s),
                    "teacher_non_local": Block(channels, m, s),
                    "non_local_adaptation": torch.nn.Conv2d(channels, channels, 1)}))

        def forward(self, students, teachers):
            t_s = config.spatial_temperature
            t_c = config.channel_temperature
            total = 0
            for s, t, ad in zip(students, teachers, self.levels):
                b, c, h, w = s.shape

                def masks(x):
                    sp = torch.softmax(torch.mean(x.abs(), 1).view(b, -1) / t_s, 1).view(b, 1, h, w) * h * w
                    ch = torch.softmax(torch.mean(x.abs(), [2, 3]) / t_c, 1) * c
                    return sp, ch

                s_sp, _ = masks(s)
                t_sp, _ = masks(t)
                m_s = ((s_sp + t_sp) / 2).detach()
                am = torch.sum((t - ad["adapted"](s)) ** 2 * m_s) ** 0.5
                ch = torch.dist(torch.mean(t, [2, 3]), ad["channel"](torch.mean(s, [2, 3])))
                sp = torch.dist(torch.mean(t, [1]).view(b, 1, h, w),
                                ad["spatial"](torch.mean(s, [1]).view(b, 1, h, w)))
                nl = torch.dist(ad["teacher_non_local"](t), ad["non_local_adaptation"](ad["student_non_local"](s)))
                total = total + config.w_am * am + config.w_at * (ch + sp) + config.w_nld * nl
            return total

    return Reference()


def worker(impl, threads, repeats):
    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import kdloss_torch as kd

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = kd.fbkd.Config.code_two_stage()
    if impl == "kdloss":
        module = kd.fbkd.FBKDLoss(config, channels=C, num_levels=len(LEVELS))
    else:
        module = torch_reference(torch, config, C, len(LEVELS))
        if impl == "compile":
            module = torch.compile(module)
    students = [torch.randn(B, C, h, w, requires_grad=True) for _, h, w in LEVELS]
    teachers = [torch.randn(B, C, h, w) for _, h, w in LEVELS]
    base = rss_mb()
    times, cpus = [], []
    for i in range(repeats + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        v = module(students, teachers)
        v.backward()
        if i:  # the first step warms up (and compiles)
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": impl, "threads": threads, "median_s": statistics.median(times),
                      "cpu_s": statistics.median(cpus), "peak_over_start_mb": peak - base, "value": float(v)}))


def run(impl, threads, repeats, timeout):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", impl, str(threads), str(repeats)], env=env,
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "threads": threads, "error": "timed out after %d s" % timeout}
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    return json.loads(lines[-1]) if lines else {"impl": impl, "threads": threads, "error": out.stderr[-400:]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--worker", nargs=3)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker[0], int(a.worker[1]), int(a.worker[2]))
        return
    for t in a.threads:
        rows = [run(impl, t, a.repeats, a.timeout) for impl in ["kdloss", "eager"] + (["compile"] if a.compile else [])]
        for r in rows:
            print(json.dumps(r))
        k = rows[0]
        for r in rows[1:]:
            if "error" not in r and "error" not in k:
                print("threads %d: %s / kdloss time %.2fx, peak memory %.2fx"
                      % (t, r["impl"], r["median_s"] / k["median_s"], r["peak_over_start_mb"] / k["peak_over_start_mb"]))


if __name__ == "__main__":
    main()
