#!/usr/bin/env bash
# Runs scripts/gpu_check.sh's REPORT_DIR mode against stand-ins (cmake, ninja, the test binary,
# compute-sanitizer, nvidia-smi and python), so that the script the first GPU session depends on is
# exercised without a GPU: two runs, one whose GPU stage 1 fails (one case of three fails alone), one
# whose build fails. Checks that REPORT_DIR holds only gpu_check.md and gpu_logs.tar.gz (the device
# tool returns at most 8 files), that every stage reports, and that stage 1b names the failing case.
#
#   bash scripts/gpu_check_selftest.sh      # prints "gpu_check selftest: ok" or the first failed check
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d /tmp/kdloss_gpu_selftest.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "gpu_check selftest: FAILED: $*" >&2; [[ -f $tmp/out/gpu_check.md ]] && sed 's/^/  | /' "$tmp/out/gpu_check.md" >&2; exit 1; }

repo=$tmp/repo bin=$tmp/bin
mkdir -p "$repo/scripts" "$repo/python" "$repo/.gpu_carry/usr/include/eigen3/Eigen" "$repo/.gpu_carry/dlpack_include/dlpack" \
  "$repo/.gpu_carry/wheels" "$bin"
cp "$here/gpu_check.sh" "$repo/scripts/"
touch "$repo/.gpu_carry/usr/include/eigen3/Eigen/Core" "$repo/.gpu_carry/dlpack_include/dlpack/dlpack.h"

# The test binary: three GPU cases (one with a comma in its name); "beta" fails, alone or not; a run of
# the whole suite fails as a sticky error would make it.
cat >"$bin/fake_tests" <<'EOF'
#!/usr/bin/env bash
case "$*" in
  *--list-test-cases*)
    printf '%s\n' '[doctest] listing all test case names' '=========' 'alpha: GPU agrees (float, double)' \
      'beta: GPU agrees' 'gamma: GPU agrees' '=========' '[doctest] unskipped test cases passing the current filters: 3'
    exit 0 ;;
  *-tc=beta*) echo "ERROR: CHECK( beta ) is NOT correct!"; exit 1 ;;
  *-tc=alpha:\ GPU\ agrees\ \(float?\ double\)*|*-tc=gamma*) echo "[doctest] test cases: 1 | 1 passed"; exit 0 ;;
  *-tc=*) echo "unexpected filter: $*"; exit 2 ;;
esac
echo "ERROR: an illegal memory access was encountered"
echo "[doctest] test cases: 3 | 1 passed | 2 failed"
exit 1
EOF
cat >"$bin/cmake" <<'EOF'
#!/usr/bin/env bash
echo "stand-in cmake $*"
EOF
cat >"$bin/ninja" <<'EOF'
#!/usr/bin/env bash
echo "stand-in ninja $*"
[[ -n ${SELFTEST_BUILD_FAILS:-} ]] && { echo "FAILED: tests/some.cu.o"; exit 1; }
build=$2; shift 2
mkdir -p "$build/tests" "$build/bench"
for t in "$@"; do
  case $t in
    kdloss_tests) cp "$(dirname "$0")/fake_tests" "$build/tests/kdloss_tests" ;;
    kdloss_bench_*) printf '#!/usr/bin/env bash\nfor a; do [[ $a == --benchmark_out=* ]] && echo "{}" >"${a#--benchmark_out=}"; done\nexit 0\n' \
                      >"$build/bench/$t"; chmod +x "$build/bench/$t" ;;
  esac
done
EOF
cat >"$bin/compute-sanitizer" <<'EOF'
#!/usr/bin/env bash
echo "========= Error: Device not supported"; exit 1
EOF
cat >"$bin/nvidia-smi" <<'EOF'
#!/usr/bin/env bash
echo "stand-in GPU, 1.0, 1 MiB"
EOF
cat >"$bin/py" <<'EOF'
#!/usr/bin/env bash
case "$1" in
  setup.py) exit 0 ;;
  -c) exit 0 ;;
  -m) echo "1 failed, 2 passed"; exit 1 ;;
  -) cat >/dev/null; echo "device-to-device copy: 1 GB/s"; exit 0 ;;
  bench/perf_table.py) echo "| table |"; exit 0 ;;
  bench/compare_torch.py) echo "compare_torch table"; exit 0 ;;
esac
exit 0
EOF
chmod +x "$bin"/*

run() {  # run OUTDIR [ENV=VALUE ...]
  local out=$1; shift
  rm -rf "$out" && mkdir -p "$out"
  env PATH="$bin:$PATH" KDLOSS_PYTHON="$bin/py" KDLOSS_GPU_BUDGET=120 "$@" \
    timeout 100 bash "$repo/scripts/gpu_check.sh" "$out" >"$tmp/run.log" 2>&1 || fail "exit $? (run.log: $(tail -3 "$tmp/run.log"))"
  local files; files=$(cd "$out" && ls -A | tr '\n' ' ')
  [[ $files == "gpu_check.md gpu_logs.tar.gz " ]] || fail "REPORT_DIR holds '$files'"
}
has() { grep -qF -- "$1" "$tmp/out/gpu_check.md" || fail "the report lacks: $1"; }

run "$tmp/out"
has "**build (configure + kdloss_tests"
has "**stage 1: GPU doctest cases**: FAILED"
has "an illegal memory access"
has "cases alone: 2 passed, 1 failed"
has "FAILED (exit 1) beta: GPU agrees"
has "cannot run on this machine"
has "**stage 2: CUDA bridge pytest"
has "1 failed, 2 passed"
has "**stage 4a: device-to-device copy bandwidth**: passed"
has "**stage 4c: bench/compare_torch.py --device cuda**: passed"
has "**stage 4b: kdloss_bench_relation_cuda**: passed"
has "| table |"
logs=$(tar tzf "$tmp/out/gpu_logs.tar.gz" | tr '\n' ' ')
for f in build.log gpu_tests.log gpu_cases.log sanitizer_memcheck.log bridge_cuda.log kdloss_bench_cuda.json; do
  [[ $logs == *"./$f "* ]] || fail "gpu_logs.tar.gz lacks $f"
done

run "$tmp/out" SELFTEST_BUILD_FAILS=1
has "**build (configure + kdloss_tests"
has "stages 1 and 3 not run: the build failed"
has "FAILED: tests/some.cu.o"
has "**stage 2: CUDA bridge pytest"
echo "gpu_check selftest: ok"
