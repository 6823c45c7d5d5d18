#!/usr/bin/env python3
"""Markdown tables for docs/performance.md from Google Benchmark JSON files.

Reads the median aggregates of runs made with
  --benchmark_repetitions=N --benchmark_report_aggregates_only=true --benchmark_out=FILE --benchmark_out_format=json
and prints one table of baselines and one table per loss (benchmark names "<loss>/<pass>/<shape>"):
median time, GB/s (1e9 bytes/s of reads + writes), and the ratio of that GB/s to the memread
baseline's GB/s at the same shape (1.00 = as fast as plainly reading the same bytes).

  python3 bench/perf_table.py [--time real|cpu] run.json [more.json ...]

--time cpu computes GB/s from the median CPU time instead of the wall time: the figure to quote
for single-threaded runs on a shared, loaded machine, where wall time includes waiting for a core.
"""
import argparse
import json
from collections import OrderedDict

BASELINE = "baseline"
PASSES = ["forward", "backward", "forward_backward"]


def load_medians(paths, clock):
    rows = OrderedDict()
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for b in data["benchmarks"]:
            if b.get("aggregate_name") != "median":
                continue
            name = b["run_name"]
            for suffix in ("/real_time", "/manual_time"):
                if name.endswith(suffix):
                    name = name[: -len(suffix)]
            family, pass_name, shape = name.split("/", 2)
            # bytes_per_second is computed from the wall time: rescale for the CPU clock.
            gbs = b.get("bytes_per_second", 0.0) / 1e9
            time = b["real_time"]
            if clock == "cpu" and b["cpu_time"] > 0:
                gbs *= b["real_time"] / b["cpu_time"]
                time = b["cpu_time"]
            rows[(family, pass_name, shape)] = {"time": time, "unit": b["time_unit"], "gbs": gbs}
    return rows


def fmt_time(t, unit):
    return f"{t:,.1f} {unit}" if t < 100 else f"{t:,.0f} {unit}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time", choices=["real", "cpu"], default="real")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    rows = load_medians(args.files, args.time)
    shapes = list(OrderedDict.fromkeys(s for (_, _, s) in rows))
    families = list(OrderedDict.fromkeys(f for (f, _, _) in rows if f != BASELINE))
    clock = "CPU" if args.time == "cpu" else "wall"

    print("#### Baselines\n")
    print(f"| shape | memread {clock} time | memread GB/s | memcpy GB/s | read2_write1 GB/s |")
    print("|---|---:|---:|---:|---:|")
    for s in shapes:
        r = rows.get((BASELINE, "memread", s))
        if not r:
            continue
        c = rows.get((BASELINE, "memcpy", s), {"gbs": 0.0})
        w = rows.get((BASELINE, "read2_write1", s), {"gbs": 0.0})
        print(f"| {s} | {fmt_time(r['time'], r['unit'])} | {r['gbs']:.2f} | {c['gbs']:.2f} | {w['gbs']:.2f} |")
    print()

    for fam in families:
        print(f"#### {fam}\n")
        print(f"| shape | pass | {clock} time (median) | GB/s | vs memread |")
        print("|---|---|---:|---:|---:|")
        for s in shapes:
            base = rows.get((BASELINE, "memread", s))
            for p in PASSES:
                r = rows.get((fam, p, s))
                if not r:
                    continue
                ratio = f"{r['gbs'] / base['gbs']:.2f}" if base and base["gbs"] > 0 else "n/a"
                print(f"| {s} | {p} | {fmt_time(r['time'], r['unit'])} | {r['gbs']:.2f} | {ratio} |")
        print()


if __name__ == "__main__":
    main()
