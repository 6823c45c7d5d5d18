#!/usr/bin/env python3
"""Side by side: kdloss::ops::roi_align (through kdloss_torch.ops.roi_align) against
torchvision.ops.roi_align, forward + backward through autograd, at DRKD's shapes: P2 [2, 256, 200, 334]
(spatial_scale 1/4) and P3 [2, 256, 100, 167] (1/8) of an 800x1333 input, 100 boxes per image (sides
uniform in [32, 480] pixels, inside the image: the distribution of bench/bench_roi_align_cpu.cpp), output
3x3, sampling_ratio -1, aligned False, float32.

Each thread count runs in its own process (OMP_NUM_THREADS and torch.set_num_threads both set), the two
libraries alternate call by call so that the machine's noise hits both alike, and the script prints the
median wall time of each and the ratio torchvision / kdloss. --device cuda times the GPU instead
(torchvision's atomic backward against kdloss's deterministic gather), with torch.cuda.synchronize.

  python3 bench/compare_roi_align_torch.py --threads 1 2 --reps 7
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))  # the in-place build

CASES = [("P2", (2, 256, 200, 334), 0.25), ("P3", (2, 256, 100, 167), 0.125)]


def boxes_for(images, per_image, device, dtype, seed=7):
    import torch
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for b in range(images):
        wh = torch.rand(per_image, 2, generator=gen, dtype=torch.float64) * (480 - 32) + 32
        u = torch.rand(per_image, 2, generator=gen, dtype=torch.float64)
        x1 = u[:, 0] * (1333 - wh[:, 0])
        y1 = u[:, 1] * (800 - wh[:, 1])
        rows.append(torch.stack([torch.full_like(x1, b), x1, y1, x1 + wh[:, 0], y1 + wh[:, 1]], dim=1))
    return torch.cat(rows).to(device=device, dtype=dtype)


def run_one(threads, reps, device, pool):
    import torch
    import torchvision
    import kdloss_torch.ops as kops
    torch.set_num_threads(threads)
    results = []
    for name, shape, scale in CASES:
        gen = torch.Generator().manual_seed(0)
        x = (torch.rand(shape, generator=gen) * 2 - 1).to(device)
        rois = boxes_for(shape[0], 100, device, torch.float32)
        gy = torch.rand((rois.shape[0], shape[1], 3, 3), generator=gen).to(device)

        def tv():
            xr = x.detach().requires_grad_()
            torchvision.ops.roi_align(xr, rois, 3, scale, -1, False).backward(gy)

        def kd():
            xr = x.detach().requires_grad_()
            kops.roi_align(xr, rois, 3, scale, -1, False, pool_mode=pool).backward(gy)

        def timed(fn):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            return (time.perf_counter() - t0) * 1e3

        tv(), kd()  # warm up
        t_tv, t_kd = [], []
        for _ in range(reps):
            t_tv.append(timed(tv))
            t_kd.append(timed(kd))
        m_tv, m_kd = statistics.median(t_tv), statistics.median(t_kd)
        results.append((name, threads, m_tv, m_kd))
        print("%-3s threads=%d  torchvision %9.1f ms  kdloss %9.1f ms  ratio %5.2fx  (median of %d, %s)"
              % (name, threads, m_tv, m_kd, m_tv / m_kd, reps, device), flush=True)
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--device", default="cpu")
    p.add_argument("--pool", default="avg", help="kdloss pool_mode (torchvision has avg only)")
    p.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        run_one(a.child, a.reps, a.device, a.pool)
        return
    for t in a.threads if a.device == "cpu" else [1]:
        env = dict(os.environ, OMP_NUM_THREADS=str(t))
        subprocess.run([sys.executable, __file__, "--child", str(t), "--reps", str(a.reps), "--device", a.device,
                        "--pool", a.pool], env=env, check=True)


if __name__ == "__main__":
    main()
