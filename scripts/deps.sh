#!/usr/bin/env bash
# Installs what kdloss needs to build and test, when it is missing (Debian, run as root or with sudo).
set -euo pipefail

packages=(cmake ninja-build g++ libeigen3-dev doctest-dev libbenchmark-dev libdlpack-dev libstb-dev)
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
