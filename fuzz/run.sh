#!/usr/bin/env bash
# Builds fuzz/validation_fuzzer (clang, libFuzzer + ASan + UBSan) and runs it from fuzz/corpus.
#   bash fuzz/run.sh                      # build, then fuzz for 60 s (FUZZ_SECONDS) on one core
#   bash fuzz/run.sh --build-only         # just build build/fuzz/validation_fuzzer
#   bash fuzz/run.sh crash-<sha1>         # build, then replay one input (a reproducer)
# Environment: FUZZ_SECONDS (default 60), FUZZ_CXX (default clang++), FUZZ_BUILD (default build/fuzz),
# FUZZ_ARGS (extra libFuzzer flags, e.g. "-jobs=4 -workers=4").
# New interesting inputs go to $FUZZ_BUILD/corpus (the checked-in fuzz/corpus is only read), crash
# reproducers to $FUZZ_BUILD/artifacts/. Exit status: non-zero when the fuzzer found a defect.
set -euo pipefail
cd "$(dirname "$0")/.."
cxx=${FUZZ_CXX:-clang++}
out=${FUZZ_BUILD:-build/fuzz}
mkdir -p "$out/corpus" "$out/artifacts"
bin="$out/validation_fuzzer"
if [[ ! -x $bin || fuzz/validation_fuzzer.cpp -nt $bin || -n $(find include -newer "$bin" -name '*.hpp' -print -quit) ]]; then
  echo "kdloss fuzz: building $bin with $cxx"
  # -fno-sanitize-recover: a UBSan report stops the run (libFuzzer saves the input as a crash).
  "$cxx" -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -fno-omit-frame-pointer -Iinclude -I/usr/include/eigen3 -DEIGEN_DONT_PARALLELIZE \
    fuzz/validation_fuzzer.cpp -o "$bin"
fi
if [[ ${1:-} == --build-only ]]; then exit 0; fi
if [[ $# -gt 0 ]]; then
  exec "$bin" "$@"
fi
seconds=${FUZZ_SECONDS:-60}
log="$out/fuzz.log"
# -rss_limit_mb / -timeout: an accepted call is cheap by construction; a slow or hungry one is a finding.
set +e
# shellcheck disable=SC2086
"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -print_funcs=0 \
  -artifact_prefix="$out/artifacts/" ${FUZZ_ARGS:-} "$out/corpus" fuzz/corpus 2>&1 | tee "$log" | grep -v '^#[0-9].*\(NEW\|REDUCE\|pulse\)'
rc=${PIPESTATUS[0]}
set -e
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
echo "kdloss fuzz: ${execs:-?} executions in ${seconds} s (${rate:-?} exec/s), exit status $rc"
exit "$rc"
