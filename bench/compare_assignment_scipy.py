"""Side by side: kdloss_torch.detr.linear_sum_assignment vs scipy.optimize.linear_sum_assignment called per
image from Python (what DETR-family matchers do), batch 8 of 300x100 and of 300x300 (float32 costs uniform
in [0, 1)), identical results asserted. Median of repeats, wall time and process CPU time (the machine may
be shared: CPU time is the steadier one). Thread scaling of the batched call with --threads.

    python3 bench/compare_assignment_scipy.py [--threads 1 2 4] [--repeats 15]
"""
import argparse
import statistics
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment as scipy_lsa

import kdloss_torch.detr as kdetr


def timed(fn, repeats):
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'case':<16}{'threads':>8}{'scipy wall':>12}{'kdloss wall':>13}{'ratio':>7}"
          f"{'scipy cpu':>11}{'kdloss cpu':>12}{'ratio':>7}")
    for Q, T in [(300, 100), (300, 300)]:
        mats = [rng.random((Q, T)).astype(np.float32) for _ in range(8)]
        tens = [torch.from_numpy(m) for m in mats]
        padded = torch.stack(tens)
        expected = [scipy_lsa(m) for m in mats]
        got = kdetr.linear_sum_assignment(tens)
        for (er, ec), (gr, gc) in zip(expected, got):
            assert np.array_equal(er, gr.numpy()) and np.array_equal(ec, gc.numpy()), "results differ from scipy"
        torch.set_num_threads(1)
        s_wall, s_cpu = timed(lambda: [scipy_lsa(m) for m in mats], args.repeats)
        for th in args.threads:
            torch.set_num_threads(th)
            k_wall, k_cpu = timed(lambda: kdetr.linear_sum_assignment(tens), args.repeats)
            p_wall, p_cpu = timed(lambda: kdetr.linear_sum_assignment_padded(padded), args.repeats)
            print(f"{f'8x{Q}x{T} list':<16}{th:>8}{s_wall:>12.2f}{k_wall:>13.2f}{s_wall / k_wall:>7.2f}"
                  f"{s_cpu:>11.2f}{k_cpu:>12.2f}{s_cpu / k_cpu:>7.2f}")
            print(f"{f'8x{Q}x{T} padded':<16}{th:>8}{s_wall:>12.2f}{p_wall:>13.2f}{s_wall / p_wall:>7.2f}"
                  f"{s_cpu:>11.2f}{p_cpu:>12.2f}{s_cpu / p_cpu:>7.2f}")
    print("times in ms per batch of 8 (median); identical assignments asserted")


if __name__ == "__main__":
    main()
