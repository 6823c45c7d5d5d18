#!/usr/bin/env bash
# kdloss's whole GPU verification in one command, for the short loan of a GPU machine (an H200 with
# nvcc, CMake, ninja, PyTorch with CUDA, scipy, torchvision and compute-sanitizer; no Eigen, doctest,
# Google Benchmark, kornia or pytorch-msssim, and no network).
#
#   bash scripts/gpu_check.sh --prepare          # HERE (network, Debian packages): fills .gpu_carry/
#   bash scripts/gpu_check.sh --dry-run [DIR]    # lists what a run would do
#   bash scripts/gpu_check.sh --configure-only   # configures the GPU build from .gpu_carry/ only (no GPU needed)
#   bash scripts/gpu_check.sh --build-only       # configures and builds its targets (no GPU needed)
#   bash scripts/gpu_check.sh REPORT_DIR         # THERE: build, run every stage, write REPORT_DIR/gpu_check.md
#
# On the device tool: run(command="bash scripts/gpu_check.sh $OUT", carry=[".gpu_carry"], timeout_s=600).
# .gpu_carry/ (git-ignored, about 20 MB) holds the Eigen, doctest and Google Benchmark headers, libraries
# and CMake packages copied from this machine's Debian packages, laid out as under /usr so their CMake
# files resolve relative to themselves, and the peers' wheels (kornia, kornia_rs, pytorch-msssim).
#
# A run builds only the CUDA targets it needs (sm_90, ninja on all cores) and then runs, most important
# first, each stage within its share of KDLOSS_GPU_BUDGET seconds (default 560, so one 600 s call fits):
#   1. the GPU doctest cases (kdloss_tests -ts=gpu);
#   2. the CUDA bridge's pytest cases (python/tests/test_cuda*.py, built with KDLOSS_TORCH_CUDA=1 while
#      stage 1 runs);
#   3. compute-sanitizer memcheck, racecheck, synccheck and initcheck over a short GPU case selection;
#   4. the CUDA benchmarks (GB/s against a device-to-device copy measured in the same run) and
#      bench/compare_torch.py --device cuda (eager and torch.compile, CUDA events).
# The report gives each stage's pass/fail counts and first failures, the benchmark tables as markdown,
# the copy bandwidth, and the machine's GPU and driver. Stage logs sit beside it.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CARRY=$ROOT/.gpu_carry
BUILD=$ROOT/build/gpu
ARCH=${KDLOSS_GPU_ARCH:-90}
BUDGET=${KDLOSS_GPU_BUDGET:-560}
python=${KDLOSS_PYTHON:-python3}
# The short selection the sanitizers run (doctest -tc filters: one case of each kernel family).
SANITIZER_CASES='pointwise losses: GPU agrees*,kl_div_loss: GPU agrees*,softmax ops: GPU agrees*,matmul: GPU*,launch: an error*,roi_align: GPU agrees*,linear_sum_assignment: GPU gives*,softmax_relation: GPU agrees*,max_pool2d: GPU agrees*'
# The benchmarks, most asked-about first (each gets an equal share of stage 4's time).
BENCHES=(kdloss_bench_cuda kdloss_bench_distill_cuda kdloss_bench_ssim_cuda kdloss_bench_matmul_cuda
  kdloss_bench_roi_align_cuda kdloss_bench_assignment_cuda kdloss_bench_attention_cuda kdloss_bench_relation_cuda)

cmake_args() {  # the GPU build, finding its dependencies in .gpu_carry/ only
  local lib=$CARRY/usr/lib/x86_64-linux-gnu
  echo -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKDLOSS_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DKDLOSS_BUILD_EXAMPLES=OFF \
    -DEigen3_DIR="$CARRY/usr/share/eigen3/cmake" -Ddoctest_DIR="$CARRY/usr/lib/cmake/doctest" \
    -Dbenchmark_DIR="$lib/cmake/benchmark"
}

prepare() {
  echo "== gpu_check --prepare: filling $CARRY from Debian packages and PyPI =="
  bash scripts/deps.sh >/dev/null
  rm -rf "$CARRY" && mkdir -p "$CARRY/usr/include" "$CARRY/usr/share" "$CARRY/usr/lib/cmake" \
    "$CARRY/usr/lib/x86_64-linux-gnu/cmake" "$CARRY/wheels"
  local lib=/usr/lib/x86_64-linux-gnu
  cp -rL /usr/include/eigen3 /usr/include/doctest /usr/include/benchmark "$CARRY/usr/include/"
  cp -rL /usr/share/eigen3 "$CARRY/usr/share/"
  cp -rL /usr/lib/cmake/doctest "$CARRY/usr/lib/cmake/"
  cp -rL $lib/cmake/benchmark "$CARRY/usr/lib/x86_64-linux-gnu/cmake/"
  # The shared library under every name the link and the loader use (links do not travel).
  local so
  so=$(readlink -f $lib/libbenchmark.so)
  for name in libbenchmark.so libbenchmark.so.1debian "$(basename "$so")"; do cp -L "$so" "$CARRY/usr/lib/x86_64-linux-gnu/$name"; done
  cp -L $lib/libbenchmark_main.a "$CARRY/usr/lib/x86_64-linux-gnu/"
  # Peer wheels for the GPU machine's Python 3.12 (it has torch, scipy, torchvision, numpy, pytest).
  "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$CARRY/wheels" kornia==0.9.0 kornia_rs==0.2.0 pytorch-msssim==1.0.0 ||
    { echo "gpu_check: pip download of the peer wheels failed" >&2; exit 1; }
  du -sh "$CARRY"
}

configure() {
  [[ -f $CARRY/usr/include/eigen3/Eigen/Core ]] || { echo "gpu_check: $CARRY is empty: run --prepare here first" >&2; exit 2; }
  # shellcheck disable=SC2046
  cmake $(cmake_args)
}

dry_run() {
  local out=${1:-REPORT_DIR}
  cat <<EOF
gpu_check.sh would run (budget ${BUDGET} s; GPU arch sm_${ARCH}; report $out/gpu_check.md):
  setup   pip install --no-index --target /tmp/kdloss_site $CARRY/wheels/*.whl; PYTHONPATH+=/tmp/kdloss_site
  build   cmake $(cmake_args)
          ninja -C $BUILD kdloss_tests ${BENCHES[*]}
  bridge  (background, during stage 1) cd python && KDLOSS_TORCH_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 EIGEN3_INCLUDE_DIR=$CARRY/usr/include/eigen3 $python setup.py build_ext --inplace
  stage 1 $BUILD/tests/kdloss_tests -ts=gpu  (log: $out/gpu_tests.log)
  stage 2 $python -m pytest python/tests/test_cuda*.py -q -rs  (junit: $out/bridge_cuda.xml)
  stage 3 compute-sanitizer --tool {memcheck,racecheck,synccheck,initcheck} --error-exitcode 99 \\
            $BUILD/tests/kdloss_tests -ts=gpu -tc='$SANITIZER_CASES'
  stage 4 device-to-device copy bandwidth (torch, CUDA events)
          ${BENCHES[*]} --benchmark_repetitions=3 --benchmark_min_time=0.05s (JSON -> bench/perf_table.py)
          $python bench/compare_torch.py --device cuda --repeats 5
EOF
}

if [[ ${1:-} == --prepare ]]; then prepare; exit 0; fi
if [[ ${1:-} == --configure-only ]]; then configure; exit $?; fi
if [[ ${1:-} == --build-only ]]; then configure && ninja -C "$BUILD" -j"$(nproc)" kdloss_tests "${BENCHES[@]}"; exit $?; fi
if [[ ${1:-} == --dry-run ]]; then dry_run "${2:-}"; exit 0; fi
[[ $# -eq 1 && ${1:0:1} != - ]] || { sed -n '2,12p' "$0"; exit 2; }

OUT=$(mkdir -p "$1" && cd "$1" && pwd)
REPORT=$OUT/gpu_check.md
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }
note() { echo "$*" | tee -a "$REPORT"; }
# run_stage NAME SHARE LOG CMD...: runs CMD with at most SHARE seconds (or what is left), logs it.
run_stage() {
  local name=$1 share=$2 log=$3; shift 3
  local limit; limit=$(left)
  ((limit > share)) && limit=$share
  if ((limit < 10)); then note "- **$name**: not run (budget spent)"; return 124; fi
  local t0; t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  local took=$(($(date +%s) - t0))
  if ((rc == 124 || rc == 137)); then note "- **$name**: TIMED OUT after ${took} s (limit ${limit} s); log $(basename "$log")"
  elif ((rc == 0)); then note "- **$name**: passed in ${took} s"
  else note "- **$name**: FAILED (exit $rc) in ${took} s; log $(basename "$log")"; fi
  return $rc
}

{
  echo "# kdloss GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not found')"
  echo "- nvcc: $(nvcc --version 2>/dev/null | tail -1); torch: $("$python" -c 'import torch; print(torch.__version__, torch.version.cuda)' 2>/dev/null)"
  echo "- budget: ${BUDGET} s"
  echo
  echo "## Stages"
} >"$REPORT"

# Setup: the peers' wheels, without network.
if ls "$CARRY"/wheels/*.whl >/dev/null 2>&1; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/kdloss_site \
    "$CARRY"/wheels/*.whl >"$OUT/setup.log" 2>&1 && export PYTHONPATH=/tmp/kdloss_site${PYTHONPATH:+:$PYTHONPATH}
fi

jobs=$(nproc)
run_stage "build (configure + kdloss_tests + CUDA benchmarks, sm_$ARCH, -j$jobs)" 300 "$OUT/build.log" \
  bash "$0" --build-only
build_rc=$?

# The CUDA bridge builds in the background while stage 1 runs.
(cd python && KDLOSS_TORCH_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 EIGEN3_INCLUDE_DIR="$CARRY/usr/include/eigen3" \
  MAX_JOBS=$((jobs > 2 ? jobs - 2 : 1)) timeout "$(left)" "$python" setup.py build_ext --inplace) >"$OUT/bridge_build.log" 2>&1 &
bridge_pid=$!

summarise_doctest() {  # counts and first failures of a doctest console log
  local log=$1
  grep -E '^\[doctest\] (test cases|assertions):' "$log" | sed 's/^/    /' | tee -a "$REPORT" >/dev/null
  if grep -q 'ERROR:' "$log"; then
    echo "    first failures:" >>"$REPORT"
    grep -B2 -A6 -m5 'ERROR:' "$log" | head -60 | sed 's/^/    /' >>"$REPORT"
  fi
}

if ((build_rc == 0)); then
  run_stage "stage 1: GPU doctest cases" 150 "$OUT/gpu_tests.log" \
    "$BUILD/tests/kdloss_tests" -ts=gpu
  summarise_doctest "$OUT/gpu_tests.log"
else
  note "- stage 1 not run: the build failed (last lines of build.log below)"
  tail -30 "$OUT/build.log" | sed 's/^/    /' >>"$REPORT"
fi

wait "$bridge_pid"
bridge_rc=$?
if ((bridge_rc == 0)); then
  run_stage "stage 2: CUDA bridge pytest (python/tests/test_cuda*.py)" 120 "$OUT/bridge_cuda.log" \
    "$python" -m pytest python/tests/test_cuda*.py -q -rs -x --junitxml="$OUT/bridge_cuda.xml"
  tail -3 "$OUT/bridge_cuda.log" | sed 's/^/    /' >>"$REPORT"
  grep -m5 -A12 '^____' "$OUT/bridge_cuda.log" | head -60 | sed 's/^/    /' >>"$REPORT"
else
  note "- stage 2 not run: the CUDA bridge build failed (exit $bridge_rc; bridge_build.log):"
  tail -20 "$OUT/bridge_build.log" | sed 's/^/    /' >>"$REPORT"
fi

if ((build_rc == 0)); then
  if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck synccheck initcheck; do
      run_stage "stage 3: compute-sanitizer $tool" 45 "$OUT/sanitizer_$tool.log" \
        compute-sanitizer --tool "$tool" --error-exitcode 99 "$BUILD/tests/kdloss_tests" -ts=gpu -tc="$SANITIZER_CASES"
      grep -m3 -E '^========= (Invalid|Race|ERROR|Uninitialized|Barrier)|ERROR SUMMARY' "$OUT/sanitizer_$tool.log" |
        sed 's/^/    /' >>"$REPORT"
    done
  else
    note "- stage 3 not run: compute-sanitizer not on the PATH"
  fi

  echo >>"$REPORT"
  echo "## Benchmarks" >>"$REPORT"
  run_stage "stage 4a: device-to-device copy bandwidth" 30 "$OUT/copy_bandwidth.log" "$python" - <<'PY'
import torch
n = 1 << 30  # 1 GiB each way
a = torch.empty(n, dtype=torch.uint8, device="cuda"); b = torch.empty_like(a)
for _ in range(3): b.copy_(a)
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
times = []
for _ in range(10):
    s.record(); b.copy_(a); e.record(); torch.cuda.synchronize(); times.append(s.elapsed_time(e) / 1e3)
t = sorted(times)[len(times) // 2]
print("device-to-device copy: %.0f GB/s (bytes read + written, median of 10 copies of 1 GiB)" % (2 * n / t / 1e9))
PY
  cat "$OUT/copy_bandwidth.log" | sed 's/^/    /' >>"$REPORT"
  jsons=()
  for b in "${BENCHES[@]}"; do
    run_stage "stage 4b: $b" 30 "$OUT/$b.log" "$BUILD/bench/$b" --benchmark_repetitions=3 \
      --benchmark_report_aggregates_only=true --benchmark_min_time=0.05s --benchmark_out="$OUT/$b.json" \
      --benchmark_out_format=json && jsons+=("$OUT/$b.json")
  done
  if ((${#jsons[@]})); then
    echo >>"$REPORT"
    "$python" bench/perf_table.py "${jsons[@]}" >>"$REPORT" 2>&1
  fi
fi
if ((bridge_rc == 0)); then
  run_stage "stage 4c: bench/compare_torch.py --device cuda" 120 "$OUT/compare_torch.log" \
    "$python" bench/compare_torch.py --device cuda --repeats 5
  echo >>"$REPORT"
  cat "$OUT/compare_torch.log" >>"$REPORT"
fi
note ""
note "total: $(($(date +%s) - START)) s of a ${BUDGET} s budget"
echo "report: $REPORT"
