"""The measuring harness the relation side-by-side scripts share (bench/compare_relation_torch.py,
compare_pixel_relation_torch.py, compare_relation_modes_torch.py, compare_non_local_torch.py,
compare_glore_torch.py): every case in a fresh child process with OMP_NUM_THREADS set, its result one JSON
line on stdout and its peak resident set taken from wait4; in-process timing as medians of wall and process
CPU time with the peak resident set over the timed runs; the ctypes libraries the scripts compile from the
headers; and the Google Benchmark binaries run with a filter.

The machine these were written on is shared and oversubscribed: compare kdloss and its peer from the SAME
run, as ratios, and prefer CPU seconds (or medians of many repeats) to wall time there.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# --- memory of this process (Linux /proc) ---------------------------------------------------------------

def status_mb(field):
    """A /proc/self/status field in MB (VmRSS, VmHWM); NaN when absent."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak():
    """Restarts the peak resident set (VmHWM) from the current one (Linux >= 4.0); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb():
    """The peak resident set since the last reset_peak (VmHWM), else since the start (ru_maxrss)."""
    hwm = status_mb("VmHWM")
    return hwm if hwm == hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def mem_available_mb():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("inf")


# --- timing in a worker ---------------------------------------------------------------------------------

def measure(step, reps, warmup=True):
    """Runs step() once untimed (warmup), then reps timed times: medians of wall and process CPU time (ms),
    the resident set before the timed runs and its peak over them (MB), and the process's ru_maxrss."""
    if warmup:
        step()
    reset_peak()
    base = status_mb("VmRSS")
    walls, cpus = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return {"wall_ms": statistics.median(walls) * 1e3, "cpu_ms": statistics.median(cpus) * 1e3, "rss_base_mb": base,
            "rss_peak_mb": peak_mb(), "ru_maxrss_mb": maxrss_mb()}


def emit(result):
    """A worker's result: one JSON line (the parent reads the last one)."""
    print(json.dumps(result), flush=True)


# --- child processes ------------------------------------------------------------------------------------

def run_measured(cmd, threads):
    """Runs cmd to its end with OMP_NUM_THREADS=threads; returns (return code, stdout, stderr, the child's
    peak resident set in MB from wait4: that case alone)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read(), usage.ru_maxrss / 1024.0


def child(cmd, threads):
    """Runs cmd with OMP_NUM_THREADS=threads; returns (the last JSON line of its stdout as a dict, or
    {"error": the end of its stderr}, its peak resident set in MB)."""
    rc, out, err, rss = run_measured(cmd, threads)
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if rc != 0 or not lines:
        return {"error": err[-2000:] or "no result"}, rss
    return json.loads(lines[-1]), rss


def python_child(script, args, threads):
    """child() on `python3 script args...`."""
    return child([sys.executable, os.path.abspath(script)] + [str(a) for a in args], threads)


def google_benchmark(binary, name_filter, threads, min_time=0.01, repetitions=1):
    """Runs a Google Benchmark binary on the benchmarks matching name_filter; returns (its runs as dicts,
    the medians when repetitions > 1, and the process's peak resident set in MB)."""
    cmd = [binary, f"--benchmark_filter={name_filter}", f"--benchmark_min_time={min_time}",
           "--benchmark_format=json"]
    if repetitions > 1:
        cmd += [f"--benchmark_repetitions={repetitions}", "--benchmark_report_aggregates_only=true"]
    rc, out, err, rss = run_measured(cmd, threads)
    if rc != 0:
        raise RuntimeError(f"{binary} failed: {err[-2000:]}")
    runs = json.loads(out)["benchmarks"]
    if repetitions > 1:
        runs = [r for r in runs if r.get("aggregate_name") == "median"]
    return runs, rss


# --- ctypes libraries compiled from the headers -------------------------------------------------------

def build_library(source, name, out_dir):
    """Compiles `source` (C++ with extern "C" entry points) into out_dir/lib<name>.so with the library's own
    flags (-O3, no -march: the kernels pick AVX-512 / AVX2 at run time); returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    src, lib = os.path.join(out_dir, name + ".cpp"), os.path.join(out_dir, "lib" + name + ".so")
    with open(src, "w") as f:
        f.write(source)
    cmd = ["g++", "-std=c++17", "-O3", "-DNDEBUG", "-fopenmp", "-shared", "-fPIC", "-I", os.path.join(ROOT, "include"),
           "-I", "/usr/include/eigen3", src, "-o", lib]
    subprocess.run(cmd, check=True)
    return lib
