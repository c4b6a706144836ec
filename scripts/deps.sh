#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs, from Debian 12's packages, what one part of the work needs and
# this machine lacks.  Idempotent: installs nothing when all is present.
#
#   bash scripts/deps.sh example  the core library and its examples only
#                                 (cmake, gcc, make, pkg-config)
#   bash scripts/deps.sh build    compile the library, the command and the
#                                 examples (cmake, gcc, make, pkg-config, and
#                                 libuv/libssl for the optional parts)
#   bash scripts/deps.sh test     what scripts/test.sh needs: build + clang,
#                                 sanitizer runtimes, valgrind, cmocka, scdoc,
#                                 man, + the zk and python groups
#   bash scripts/deps.sh bench    the benchmark's peers: g++, Go, Node, GLib,
#                                 Rust's tokio, gnuplot; liburing for
#                                 bench/net_floor's io_uring variant
#   bash scripts/deps.sh zk       a ZooKeeper server and its C client
#   bash scripts/deps.sh python   CPython headers, pytest, venv, pip, trio
#
# Several groups may be given at once.  Without a group: build.
set -euo pipefail

group_pkgs() {
  case $1 in
    example) echo cmake make gcc libc6-dev pkg-config ;;
    build) echo cmake make gcc libc6-dev pkg-config libuv1-dev libssl-dev ;;
    zk) echo zookeeper libzookeeper-mt-dev default-jre-headless libslf4j-java ;;
    python) echo python3-dev python3-pytest python3-pytest-asyncio python3-venv \
                 python3-setuptools python3-wheel python3-pip python3-trio python3-anyio ;;
    bench) echo golang-go nodejs libglib2.0-dev gnuplot-nox g++ cargo \
                librust-tokio-util-dev librust-tokio-dev liburing-dev ;;
    test) echo "$(group_pkgs build) clang libclang-rt-14-dev valgrind libcmocka-dev \
                scdoc man-db util-linux procps $(group_pkgs zk) $(group_pkgs python)" ;;
    *) echo "deps.sh: unknown group '$1' (example, build, test, bench, zk, python)" >&2
       return 1 ;;
  esac
}

[ $# -gt 0 ] || set -- build
pkgs=()
for g in "$@"; do
  list=$(group_pkgs "$g") || exit 64
  # shellcheck disable=SC2206
  pkgs+=($list)
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps ($*): installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # --no-install-recommends: the JRE, ZooKeeper and the Rust crates pull
  # in hundreds of MB of suggestions otherwise.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi
