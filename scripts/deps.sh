#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs, from Debian's packages, whatever the build and the tests need and
# this machine lacks.  Idempotent: installs nothing when all is present.
set -euo pipefail
pkgs=(cmake make gcc g++ clang pkg-config libcmocka-dev valgrind libuv1-dev libssl-dev util-linux procps python3-dev python3-pytest python3-pytest-asyncio libglib2.0-dev golang-go nodejs gnuplot-nox)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
