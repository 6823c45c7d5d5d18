#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds everything (CUDA sources too when nvcc is
# present), runs the tests (GPU cases skip visibly without a GPU), then the host suite again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then the PyTorch bridge (python/): installs torch,
# pytest and numpy from PyPI when missing, builds kdloss_torch and runs its pytest suite (which also
# installs the package once in a fresh virtual environment, as the README says).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

jobs=${KDLOSS_JOBS:-$(nproc)}
# Each stage's banner gives the time spent so far (the target for the whole run: under 60 minutes on 2 cores).
stage() { printf '== kdloss: %s (at %dm%02ds) ==\n' "$1" $((SECONDS / 60)) $((SECONDS % 60)); }

# Where a GPU is visible the suite builds the default preset (-O3, SASS for sm_90) and runs its GPU
# cases. Where none is (CI), it builds the ci preset: host code at -O2, CUDA code to PTX only at -O1,
# which checks that every CUDA source compiles in half the time; the GPU cases skip visibly.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  preset=default
else
  preset=ci
fi
stage "build (preset $preset: Release, CUDA auto-detected)"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$jobs"
stage "tests"
ctest --preset "$preset"

stage "clang++: every host source of the tests, benchmarks and examples parses and instantiates (scripts/clang_check.sh)"
bash scripts/clang_check.sh

stage "the GPU check script (scripts/gpu_check.sh): prepare its carry folder, list its stages, configure its build, run it on stand-ins"
bash scripts/gpu_check.sh --prepare
bash scripts/gpu_check.sh --dry-run
bash scripts/gpu_check.sh --configure-only >/dev/null
bash scripts/gpu_check_selftest.sh

stage "host tests under ASan + UBSan"
# The fuzzer's build is one translation unit on one core: it runs beside the ASan build and tests, so
# no core idles while the last ASan objects, the link and the single-process tests run.
mkdir -p build
bash fuzz/run.sh --build-only >build/fuzz_build.log 2>&1 &
fuzz_build=$!
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$jobs" --target kdloss_tests
asan_rc=0
ctest --preset asan || asan_rc=$?
fuzz_build_rc=0
wait "$fuzz_build" || fuzz_build_rc=$?
if ((asan_rc != 0)); then exit "$asan_rc"; fi

stage "fuzzed validation (fuzz/run.sh: libFuzzer + ASan + UBSan, 60 s from fuzz/corpus; docs/fuzzing.md)"
cat build/fuzz_build.log
if ((fuzz_build_rc != 0)); then exit "$fuzz_build_rc"; fi
FUZZ_SECONDS=${KDLOSS_FUZZ_SECONDS:-60} bash fuzz/run.sh

# ---- the PyTorch bridge (python/): build the extension against the installed torch, run pytest ----
python=${KDLOSS_PYTHON:-python3}
bash scripts/deps.sh --python
stage "PyTorch bridge: build kdloss_torch (python/, torch.utils.cpp_extension)"
(cd python && MAX_JOBS="$jobs" "$python" setup.py build_ext --inplace)
stage "PyTorch bridge: pytest (parity, gradcheck, errors, DLPack, DDP, the documented install; CUDA cases need a GPU)"
# KDLOSS_TEST_INSTALL=1: tests/test_install.py also runs the documented `pip install --no-build-isolation
# ./python` once, in a fresh venv (--system-site-packages: it reuses this torch) from the objects just built
# (about a minute: a venv, `pip install setuptools wheel`, a link).
KDLOSS_TEST_INSTALL=1 MAX_JOBS="$jobs" "$python" -m pytest python/tests -q -rs
# Without a GPU the build above is CPU-only; when nvcc and a CUDA build of torch are present, check
# that the CUDA variant (family files compiled by nvcc) still compiles and loads (KDLOSS_SKIP_CUDA_BRIDGE=1
# skips this).
if [[ ${KDLOSS_SKIP_CUDA_BRIDGE:-0} != 1 ]] &&
  "$python" -c 'import sys, torch; from torch.utils.cpp_extension import CUDA_HOME; sys.exit(not (torch.version.cuda and CUDA_HOME and not torch.cuda.is_available()))' 2>/dev/null; then
  stage "PyTorch bridge: compile-only check of the CUDA build (no GPU visible)"
  (cd python && KDLOSS_TORCH_CUDA=1 KDLOSS_TORCH_COMPILE_CHECK=1 KDLOSS_TORCH_BUILD_DIR=build/cuda MAX_JOBS="$jobs" \
    "$python" setup.py -q build_ext --build-lib build/cuda/lib)
  "$python" - <<'PY'
import glob, importlib.util, torch
path = glob.glob("python/build/cuda/lib/kdloss_torch/_C*.so")[0]
spec = importlib.util.spec_from_file_location("kdloss_torch._C", path)
c = importlib.util.module_from_spec(spec)
spec.loader.exec_module(c)
assert c.cuda_backend
print("kdloss_torch CUDA build: compiles and loads (cuda_backend=True); its GPU cases need a GPU machine")
PY
fi
stage "done"
