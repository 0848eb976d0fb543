#!/usr/bin/env bash
# Installs what kiln needs on a fresh Debian/Ubuntu machine that already has the CUDA toolkit (or none:
# the CPU build needs no CUDA): the build tools and libraries from apt, and a Python virtual environment
# (.venv) with the packages the scripts and the Python-driven tests use, from PyPI.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs="build-essential cmake pkg-config libyaml-dev libcjson-dev libhdf5-dev libgtest-dev libgmock-dev
          libopenblas-dev liblapacke-dev clang libclang-rt-dev python3-venv"
missing=()
for p in $apt_pkgs; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *"ok installed"* ]] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

py=${KILN_SYSTEM_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$py" -m venv .venv
fi
req=scripts/requirements.txt
stamp=.venv/.kiln-requirements
if ! cmp -s "$req" "$stamp" 2>/dev/null; then
  echo "setup: installing Python packages from $req"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi
echo "setup: ready"
