#!/usr/bin/env python3
"""Side-by-side benchmark: kdloss (through kdloss_torch) against the PyTorch reference code.

For each wrapped loss it times forward + backward of kdloss and of the PyTorch reference
implementation (python/tests/reference_impl.py: torch.nn.functional losses and the FBKD formulas of
the official code / mmrazor) on identical inputs in the same process: PyTorch eager and, where it
works, torch.compile. It reports medians, the ratio (PyTorch time / kdloss time: how many times
faster kdloss is) and the peak memory of one forward + backward.

    python3 bench/compare_torch.py                      # CPU, P2-P5 pyramid (batch 2, C = 256)
    python3 bench/compare_torch.py --threads 2 --repeats 15
    python3 bench/compare_torch.py --device cuda        # on a GPU machine: CUDA events, CUDA memory stats
    python3 bench/compare_torch.py --shapes small --no-compile   # a quick run
    python3 bench/compare_torch.py --cases matmul --threads 2   # ops::matmul vs torch.matmul (needs only torch)

Both sides run with the same thread count (--threads, default: all cores): OMP_NUM_THREADS is set
before torch loads and torch.set_num_threads() is called; kdloss's OpenMP loops and torch's
intra-op pool share the same OpenMP runtime (torch's libgomp), whose thread count is printed.

Timing: each case is warmed up (torch.compile compiles there; its compile time is reported), then
the implementations run in --repeats interleaved rounds (one run of each per round, so load from
elsewhere hits them alike); the median is reported. CPU: time.perf_counter around forward +
backward. CUDA: CUDA events on the current stream, synchronised once per run. kdloss runs with both
backward strategies (kdloss_torch.backward_mode "fused" and "recompute").

Large host outputs of kdloss_torch come from its host output cache (mapped blocks reused across
steps, advised to use transparent huge pages; docs/pytorch.md). KDLOSS_TORCH_HOST_CACHE_MB=0 turns the
cache off and KDLOSS_TORCH_HUGEPAGES=0 the huge pages; THP_MEM_ALLOC_ENABLE=1 gives PyTorch's own
allocations huge pages.

Peak memory: CPU: growth of the process's resident set (VmHWM after one forward + backward, reset
through /proc/self/clear_refs, minus VmRSS before; inputs are allocated beforehand), a measure of
the temporaries and outputs each side allocates. kdloss_torch's host output cache is emptied first, so its
outputs count as fresh allocations too. CUDA: torch.cuda.max_memory_allocated() growth.

kdloss is built from python/ (cd python && python3 setup.py build_ext --inplace). Gradients are
taken with torch.autograd.grad (no accumulation into .grad) with respect to the student-side tensors.
"""

import argparse
import ctypes
import gc
import os
import re
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="wall: elapsed time (default); cpu: CPU time of the process (user + sys, all threads; "
                        "with --threads 1 it is insensitive to other processes on a shared machine)")
    p.add_argument("--shapes", default="pyramid", choices=["pyramid", "p3p4", "small"],
                   help="pyramid: P2-P5; p3p4: P3 and P4 only (for the slow eager SSIM); small: tiny maps")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--cases", default="all", help="comma-separated subset of: " + ", ".join(CASE_NAMES))
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--native", action="store_true", help="note that kdloss_torch was built with KDLOSS_TORCH_NATIVE=1")
    p.add_argument("--matmul-bench", default=None,
                   help="the kdloss_bench_matmul_cpu binary of the matmul case (default: build/cpu/bench/)")
    return p.parse_args()


CASE_NAMES = ["mse", "l1", "smooth_l1", "distance", "kl_div", "fbkd_code", "fbkd_paper", "ssim", "matmul"]
PYRAMID = [(2, 256, 200, 334), (2, 256, 100, 167), (2, 256, 50, 84), (2, 256, 25, 42)]
SMALL = [(2, 32, 24, 40), (2, 32, 12, 20), (2, 32, 6, 10), (2, 32, 3, 5)]
P3P4 = [(2, 256, 100, 167), (2, 256, 50, 84)]

ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)  # before torch (and its OpenMP runtime) loads

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "python"), os.path.join(ROOT, "python", "tests")]

import torch  # noqa: E402

try:  # the matmul case needs only torch and the Google Benchmark binary
    import kdloss_torch as kd  # noqa: E402
    import reference_impl as ref  # noqa: E402
except ImportError as _bridge_error:
    kd = ref = None
    BRIDGE_ERROR = str(_bridge_error)


# ---- cases: (kdloss function, reference function, which inputs get gradients) -------------------

def feature_case(name):
    kd_fn = {"mse": kd.mse_loss, "l1": kd.l1_loss, "smooth_l1": kd.smooth_l1_loss, "distance": kd.distance_loss,
             "kl_div": lambda s, t: kd.kl_div_loss(s, t, 1, 4.0)}[name]
    ref_fn = {"mse": ref.mse_loss, "l1": ref.l1_loss, "smooth_l1": ref.smooth_l1_loss, "distance": ref.distance_loss,
              "kl_div": lambda s, t: ref.kl_div_loss(s, t, 1, 4.0)}[name]

    def make(shapes, dtype, device, gen):
        students = [torch.randn(sh, dtype=dtype, generator=gen).to(device).requires_grad_() for sh in shapes]
        teachers = [torch.randn(sh, dtype=dtype, generator=gen).to(device) for sh in shapes]
        return {"students": students, "teachers": teachers}, students

    def run(fn):
        return lambda students, teachers: sum(fn(s, t) for s, t in zip(students, teachers))

    return make, run(kd_fn), run(ref_fn)


def fbkd_case(preset):
    config = getattr(kd.fbkd.Config, preset)()

    def make(shapes, dtype, device, gen):
        levels, leaves = [], []
        for b, c, h, w in shapes:
            s = torch.randn(b, c, h, w, dtype=dtype, generator=gen).to(device)
            t = torch.randn(b, c, h, w, dtype=dtype, generator=gen).to(device)
            if config.transfer_form == "code":  # outputs of the caller's adapters: A, C_hat, S_hat get gradients
                a = torch.randn(b, c, h, w, dtype=dtype, generator=gen).to(device).requires_grad_()
                ch = torch.randn(b, c, dtype=dtype, generator=gen).to(device).requires_grad_()
                sp = torch.randn(b, 1, h, w, dtype=dtype, generator=gen).to(device).requires_grad_()
                levels.append((s, t, a, ch, sp))
                leaves += [a, ch, sp]
            else:  # paper form, no adapter: S gets the gradient (L_AM with A = S, and L_AT)
                s.requires_grad_()
                levels.append((s, t, None, None, None))
                leaves.append(s)
        return {"levels": levels}, leaves

    def kd_run(levels):
        return kd.fbkd.total_loss([kd.fbkd.Level(*lv) for lv in levels], config)

    def ref_run(levels):
        return ref.fbkd_total(levels, config)

    return make, kd_run, ref_run


NOTES = []  # printed after the table


def ssim_case():
    """kdloss's kornia-compatible ssim_loss against kornia.losses.ssim_loss itself (eager PyTorch and
    torch.compile of it)."""
    import kornia  # installed by scripts/deps.sh --python

    window = 11

    def run(fn):
        return lambda students, teachers: sum(fn(s, t) for s, t in zip(students, teachers))

    make_all, _, _ = feature_case("mse")  # same inputs: student (gradient) and teacher per level

    def make(shapes, dtype, device, gen):
        # kornia pads with F.pad(mode="reflect"), which refuses pads >= the map (a side <= window // 2);
        # kdloss defines them, but there is nothing to compare with: leave such levels out.
        kept = [sh for sh in shapes if min(sh[2:]) > window // 2]
        if len(kept) < len(shapes):
            NOTES.append("ssim: levels %s left out (kornia's reflect padding refuses maps with a side <= %d)"
                         % (", ".join("x".join(map(str, sh)) for sh in shapes if sh not in kept), window // 2))
        return make_all(kept, dtype, device, gen)

    return (make, run(lambda s, t: kd.ssim.ssim_loss(s, t, window)),
            run(lambda s, t: kornia.losses.ssim_loss(s, t, window)))


def make_case(name):
    if name == "ssim":
        return ssim_case()
    if name == "fbkd_code":
        return fbkd_case("code_two_stage")
    if name == "fbkd_paper":
        return fbkd_case("paper_two_stage")
    return feature_case(name)


DESCRIPTIONS = {
    "mse": "MSE (mean) vs F.mse_loss",
    "l1": "L1 (mean) vs F.l1_loss",
    "smooth_l1": "smooth-L1 (beta 1) vs F.smooth_l1_loss",
    "distance": "Frobenius distance vs torch.dist",
    "kl_div": "KL, T = 4, over C (batchmean) vs F.kl_div * T^2",
    "fbkd_code": "FBKD total, code_two_stage (grads A, C_hat, S_hat)",
    "fbkd_paper": "FBKD total, paper_two_stage (grad S)",
    "ssim": "SSIM loss (kornia form, window 11) vs kornia.losses.ssim_loss",
}


# ---- timing and memory ---------------------------------------------------------------------------

def step(fn, inputs, leaves):
    out = fn(**inputs)
    return torch.autograd.grad(out, leaves)


def time_once(run, device):
    if CLOCK == "cpu":
        t0 = time.process_time()
        run()
        return time.process_time() - t0
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


CLOCK = "wall"


def timed_rounds(runs, device, repeats, warmup):
    """Median time of each run; the runs are interleaved (one of each per round), so a burst of load
    from elsewhere on the machine hits every implementation alike."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(time_once(run, device))
    return {name: statistics.median(t) for name, t in times.items()}


def _status(field):
    with open("/proc/self/status") as f:
        return int(re.search(r"^%s:\s+(\d+)" % field, f.read(), re.M).group(1)) * 1024


_libc = None


def peak_memory(fn, inputs, leaves, device):
    """Bytes the process grows by during one forward + backward (see the module docstring)."""
    global _libc
    gc.collect()
    kd.empty_host_cache()  # kdloss's outputs must be mapped afresh to be counted (docs/pytorch.md)
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        grads = step(fn, inputs, leaves)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        del grads
        return peak
    try:
        _libc = _libc or ctypes.CDLL("libc.so.6")
        _libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    base = _status("VmRSS")
    grads = step(fn, inputs, leaves)
    peak = _status("VmHWM") - base
    del grads
    return peak


def fmt_ms(t):
    return "n/a" if t is None else ("%.1f" % (t * 1e3) if t >= 0.01 else "%.2f" % (t * 1e3))


def fmt_mb(b):
    return "n/a" if b is None else "%d" % round(b / 2 ** 20)


# ---- matmul: ops::matmul (its Google Benchmark binary) against torch.matmul ---------------------

MATMUL_SHAPES = [(2 * 100 * 167, 256, n) for n in (64, 128, 256)] + [(2 * 50 * 84, 256, n) for n in (64, 128, 256)]


def matmul_compare(args):
    """FPN 1x1 projections [M, K] x [K, N] in float32: each round runs the benchmark binary once (every
    shape, the automatic host kernel, --benchmark_min_time=0.2) and then torch.matmul(a, b, out=c) on
    the same shapes for as long; medians over the rounds. Same threads on both sides (OMP_NUM_THREADS
    for the binary, torch.set_num_threads for torch). Returns the table's lines."""
    import json
    import subprocess
    exe = args.matmul_bench or os.path.join(ROOT, "build", "cpu", "bench", "kdloss_bench_matmul_cpu")
    if not os.path.exists(exe):
        return None, "matmul: %s not found (cmake --build --preset cpu --target kdloss_bench_matmul_cpu)" % exe
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    kd_times = {s: [] for s in MATMUL_SHAPES}
    torch_times = {s: [] for s in MATMUL_SHAPES}
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for (m, k, n) in MATMUL_SHAPES:
        tensors[(m, k, n)] = (torch.rand(m, k, generator=gen) * 2 - 1, torch.rand(k, n, generator=gen) * 2 - 1,
                              torch.empty(m, n))
    for _ in range(args.repeats):
        out = subprocess.run([exe, "--benchmark_filter=^matmul/.*/automatic/", "--benchmark_format=json",
                              "--benchmark_min_time=0.2"], env=env, capture_output=True, text=True, check=True)
        for b in json.loads(out.stdout)["benchmarks"]:
            dims = dict(kv.split("=") for kv in b["name"].split("/")[1].split(","))
            shape = (int(dims["M"]), int(dims["K"]), int(dims["N"]))
            scale = {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[b["time_unit"]]
            kd_times[shape].append(b["real_time"] * scale)
        for shape, (a, bm, c) in tensors.items():
            torch.matmul(a, bm, out=c)
            calls, t0 = [], time.perf_counter()
            while time.perf_counter() - t0 < 0.2 or len(calls) < 3:
                t = time.perf_counter()
                torch.matmul(a, bm, out=c)
                calls.append(time.perf_counter() - t)
            torch_times[shape].append(statistics.median(calls))
    lines = ["| [M, K] x [K, N] | kdloss ops::matmul (ms) | torch.matmul (ms) | kdloss speed / torch speed |",
             "|---|---|---|---|"]
    for shape in MATMUL_SHAPES:
        tk, tt = statistics.median(kd_times[shape]), statistics.median(torch_times[shape])
        lines.append("| [%d, %d] x [%d, %d] | %s | %s | %.2f |" % (shape[0], shape[1], shape[1], shape[2], fmt_ms(tk),
                                                                  fmt_ms(tt), tt / tk))
    return lines, None


def main():
    global CLOCK
    args = ARGS
    CLOCK = args.clock
    if args.clock == "cpu" and args.device == "cuda":
        sys.exit("compare_torch.py: --clock cpu is for the CPU")
    torch.set_num_threads(args.threads)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("compare_torch.py: --device cuda but torch sees no GPU")
    if device == "cuda" and kd is not None and not kd.cuda_backend:
        sys.exit("compare_torch.py: kdloss_torch was built without CUDA (rebuild with KDLOSS_TORCH_CUDA=1)")
    dtype = getattr(torch, args.dtype)
    shapes = {"pyramid": PYRAMID, "p3p4": P3P4, "small": SMALL}[args.shapes]
    names = CASE_NAMES if args.cases == "all" else args.cases.split(",")
    if "matmul" in names:
        print("# matmul: threads %d, %d rounds, load average before: %.2f %.2f %.2f"
              % ((args.threads, args.repeats) + os.getloadavg()))
        lines, note = matmul_compare(args)
        print("\n".join(lines) if lines else "note: " + note)
        print("# load average after: %.2f %.2f %.2f\n" % os.getloadavg(), flush=True)
        names = [n for n in names if n != "matmul"]
        if not names:
            return
    if kd is None:
        sys.exit("compare_torch.py: kdloss_torch is not importable (%s); build python/ first" % BRIDGE_ERROR)
    try:
        omp = ctypes.CDLL("libgomp.so.1").omp_get_max_threads()
    except OSError:
        omp = "?"
    print("# compare_torch.py: %s, %s, shapes %s (%s)" % (device, args.dtype, args.shapes,
                                                       " ".join("x".join(map(str, s)) for s in shapes)))
    print("# torch %s, kdloss %s (kdloss_torch cuda_backend=%s%s), threads: torch.get_num_threads()=%d, "
          "OpenMP max threads=%s, OMP_NUM_THREADS=%s" % (torch.__version__, kd.kdloss_version, kd.cuda_backend,
                                                          ", -march=native" if args.native else "",
                                                          torch.get_num_threads(), omp,
                                                          os.environ.get("OMP_NUM_THREADS")))
    if device == "cuda":
        print("# GPU: %s" % torch.cuda.get_device_name())
    print("# %s time: medians of %d interleaved rounds (after %d warm-up runs) of forward + backward; ratio = "
          "PyTorch time / kdloss fused time; load average before: %.2f %.2f %.2f"
          % (("CPU (user + sys)" if args.clock == "cpu" else "elapsed", args.repeats, args.warmup) + os.getloadavg()))
    print()
    header = ["loss", "kdloss fused (ms)", "kdloss recompute (ms)", "eager (ms)", "compile (ms)", "eager / kdloss",
              "compile / kdloss", "peak MB kdloss", "peak MB eager", "peak MB compile", "compile time (s)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    notes = []
    for name in names:
        make, kd_fn, ref_fn = make_case(name)
        gen = torch.Generator().manual_seed(0)
        inputs, leaves = make(shapes, dtype, device, gen)

        def with_mode(mode):
            def run():
                with kd.backward_mode(mode):
                    step(kd_fn, inputs, leaves)
            return run

        runs = {"fused": with_mode("fused"), "recompute": with_mode("recompute"),
                "eager": lambda: step(ref_fn, inputs, leaves)}
        row = {"compile": None, "mem_compile": None, "compile_s": None}
        compiled = None
        if not args.no_compile:
            try:
                torch._dynamo.reset()
                compiled = torch.compile(ref_fn, dynamic=False)
                t0 = time.perf_counter()
                step(compiled, inputs, leaves)
                row["compile_s"] = time.perf_counter() - t0
                runs["compile"] = lambda: step(compiled, inputs, leaves)
            except Exception as e:  # report why, keep going
                notes.append("%s: torch.compile failed: %s: %s" % (name, type(e).__name__, str(e).splitlines()[0]))
                compiled = None
        row.update(timed_rounds(runs, device, args.repeats, args.warmup))
        row["mem_kd"] = row["mem_eager"] = None
        if not args.no_memory:
            with kd.backward_mode("fused"):
                row["mem_kd"] = peak_memory(kd_fn, inputs, leaves, device)
            row["mem_eager"] = peak_memory(ref_fn, inputs, leaves, device)
            if compiled is not None:
                row["mem_compile"] = peak_memory(compiled, inputs, leaves, device)
        base = row["fused"]
        ratio = lambda t: "n/a" if t is None else "%.1fx" % (t / base)  # noqa: E731
        cells = [DESCRIPTIONS[name], fmt_ms(row["fused"]), fmt_ms(row["recompute"]), fmt_ms(row["eager"]),
                 fmt_ms(row["compile"]), ratio(row["eager"]), ratio(row["compile"]), fmt_mb(row["mem_kd"]),
                 fmt_mb(row["mem_eager"]), fmt_mb(row["mem_compile"]),
                 "n/a" if row["compile_s"] is None else "%.0f" % row["compile_s"]]
        print("| " + " | ".join(cells) + " |", flush=True)
        del inputs, leaves, runs, compiled
        gc.collect()
    print("\n# load average after: %.2f %.2f %.2f; THP_MEM_ALLOC_ENABLE=%s, KDLOSS_TORCH_HUGEPAGES=%s, "
          "KDLOSS_TORCH_HOST_CACHE_MB=%s"
          % (os.getloadavg() + (os.environ.get("THP_MEM_ALLOC_ENABLE", "unset"),
                                os.environ.get("KDLOSS_TORCH_HUGEPAGES", "unset (on)"),
                                os.environ.get("KDLOSS_TORCH_HOST_CACHE_MB", "unset (1024)"))))
    for n in notes + NOTES:
        print("\nnote: " + n)


if __name__ == "__main__":
    main()
