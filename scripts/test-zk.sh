#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The ZooKeeper part of the test suite: installs its packages (deps.sh zk),
# builds (reusing build-test-plain when scripts/test.sh made it, else its
# own build-test-zk), and runs the ctests labelled "zk" against a real
# 3-member ensemble on loopback.  The ensemble lives in a mktemp directory
# ($CT_ZK_ENSEMBLE_DIR): the ctest fixture zk_ensemble_start starts it
# there, zk_ensemble_stop stops it, and the trap below stops it too if this
# script is interrupted.  Ends with one line "N passed, N failed" (ctest's
# counts; the fixture's start and stop count as tests).
#
#   bash scripts/test-zk.sh            build if needed, run
#   CT_ZK_BUILD=dir bash scripts/test-zk.sh   use that build directory
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ -f scripts/deps.sh ] && grep -q '^ *zk)' scripts/deps.sh; then
  bash scripts/deps.sh zk build || { echo "0 passed, 1 failed"; exit 1; }
else
  need=()
  for p in zookeeper libzookeeper-mt-dev default-jre-headless libslf4j-java; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${need[@]}" >/dev/null ||
      { echo "0 passed, 1 failed"; exit 1; }
  fi
fi

build=${CT_ZK_BUILD:-}
if [ -z "$build" ]; then
  if [ -f build-test-plain/CMakeCache.txt ]; then
    build=build-test-plain
  else
    build=build-test-zk
  fi
fi
jobs=$(nproc)
[ "$jobs" -gt 2 ] && jobs=2

echo "=== zk: configure and build in $build"
# Only what the zk tests run (the command too, when it has the backend).
targets="zk_peer test_zk test_zk_fault"
[ -f tools/backend_zk.c ] && targets="$targets cancel-token"
# shellcheck disable=SC2086
if ! cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCT_ZK_TESTS=ON >"$build.zk.log" 2>&1 ||
   ! cmake --build "$build" -j"$jobs" --target $targets >>"$build.zk.log" 2>&1; then
  tail -n 40 "$build.zk.log"
  echo "0 passed, 1 failed"
  exit 1
fi

ens=$(mktemp -d "${TMPDIR:-/tmp}/ct-zk.XXXXXX")
export CT_ZK_ENSEMBLE_DIR=$ens
trap 'bash "$root/scripts/zk-ensemble.sh" stop "$ens" >/dev/null 2>&1; rm -rf "$ens"' EXIT

echo "=== zk: ctest -L zk (ensemble in $ens)"
out=$(mktemp "${TMPDIR:-/tmp}/ct-zk-out.XXXXXX")
ctest --test-dir "$build" -L zk --output-on-failure 2>&1 | tee "$out"
total=$(grep -Eo 'out of [0-9]+' "$out" | grep -Eo '[0-9]+' | tail -n 1)
fails=$(grep -Eo '[0-9]+ tests failed' "$out" | grep -Eo '^[0-9]+' | tail -n 1)
rm -f "$out"
if [ -z "$total" ]; then
  echo "0 passed, 1 failed"
  exit 1
fi
fails=${fails:-0}
echo "$((total - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
