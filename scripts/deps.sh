#!/usr/bin/env bash
# Installs what kdloss needs to build and test, when it is missing (Debian, run as root or with sudo).
set -euo pipefail

# clang + libclang-rt-dev (libFuzzer, ASan/UBSan runtimes): fuzz/run.sh, the fuzzing step of scripts/test.sh.
packages=(cmake ninja-build g++ libeigen3-dev doctest-dev libbenchmark-dev libdlpack-dev libstb-dev clang libclang-rt-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "kdloss: installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The PyTorch bridge (python/, run by scripts/test.sh): `bash scripts/deps.sh --python` also makes sure
# the Python interpreter ($KDLOSS_PYTHON, default python3) can build a torch extension and run the
# suite: Python headers and pip (Debian packages, for Debian's own python3), then torch, pytest,
# numpy, kornia, pytorch-msssim, torchvision, scipy, mmcv-lite + mmengine and mmrazor (files only) from
# PyPI when they do not import (the PyPI torch wheel: it runs
# on the CPU without a GPU).
if [[ " $* " == *" --python "* ]]; then
  python=${KDLOSS_PYTHON:-python3}
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  if ! command -v "$python" >/dev/null 2>&1 || ! "$python" -m pip --version >/dev/null 2>&1 ||
    ! "$python" -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null ||
    ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then  # venv + ensurepip: python/tests/test_install.py
    echo "kdloss: installing Debian packages: python3 python3-dev python3-pip python3-venv"
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq python3 python3-dev python3-pip python3-venv >/dev/null
  fi
  wanted=()
  "$python" -c 'import torch' >/dev/null 2>&1 || wanted+=(torch)
  "$python" -c 'import pytest' >/dev/null 2>&1 || wanted+=(pytest)
  "$python" -c 'import numpy' >/dev/null 2>&1 || wanted+=(numpy)
  # the SSIM family's parity peers (python/tests/test_ssim.py)
  "$python" -c 'import kornia' >/dev/null 2>&1 || wanted+=(kornia)
  "$python" -c 'import pytorch_msssim' >/dev/null 2>&1 || wanted+=(pytorch-msssim)
  # RoIAlign and box-op parity (torchvision), assignment parity (scipy), the non-local block (mmcv-lite's
  # NonLocal2d imports with current torch; it needs mmengine)
  "$python" -c 'import torchvision' >/dev/null 2>&1 || wanted+=(torchvision)
  "$python" -c 'import scipy' >/dev/null 2>&1 || wanted+=(scipy)
  "$python" -c 'import mmcv, mmengine' >/dev/null 2>&1 || wanted+=(mmcv-lite==2.1.0 mmengine)
  if ((${#wanted[@]})); then
    echo "kdloss: installing from PyPI: ${wanted[*]} (torch takes a few minutes)"
    # Debian's python3 refuses pip installs outside a virtual environment (PEP 668) unless told.
    "$python" -m pip install -q "${wanted[@]}" ||
      "$python" -m pip install -q --break-system-packages "${wanted[@]}"
  fi
  # mmrazor 1.0.0 for its FBKD loss and connector files only (python/tests load them directly): its package
  # __init__ does not import with current torch, and its pinned dependencies would downgrade torch, so no deps.
  if ! "$python" -c 'import importlib.util as u; assert u.find_spec("mmrazor")' >/dev/null 2>&1; then
    "$python" -m pip install -q --no-deps mmrazor==1.0.0 ||
      "$python" -m pip install -q --no-deps --break-system-packages mmrazor==1.0.0
  fi
fi
