#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# One command: configure, build and run the whole benchmark suite -- ours,
# C++, GLib, Go, tokio-util, Node, the token server's net_bench and the
# Python package's benchmark when they are built -- and write the table
# (CSV, JSON, Markdown) and the chart.
#
#   bash bench/run_all.sh [--quick] [--publish] [--no-install]
#                         [--build-dir DIR] [--out-dir DIR]
#                         [-- more run.py arguments, e.g. --reps 7]
#
#   --quick       the CI smoke run (under a minute); figures mean little
#   --publish     write into bench/results/ (results.csv, results.json,
#                 results.md, chart.svg, table.txt, MACHINE.txt): the
#                 committed results
#   --no-install  do not install missing peers (they are then reported
#                 unavailable)
#   --no-python   leave out the Python package's benchmarks (bench.py and
#                 cross_process.py)
#   --build-dir   default build-bench-all
#   --out-dir     default: the build's bench/ directory
# The peers' Debian packages are installed first when missing (with
# `scripts/deps.sh build bench` when that script has a bench set, and
# apt-get for anything still missing; root or sudo needed).  Full mode takes about fifteen minutes on two
# cores; run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
publish=0
install=1
python=1
build=build-bench-all
out=
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=(--quick) ;;
    --publish) publish=1 ;;
    --no-install) install=0 ;;
    --no-python) python=0 ;;
    --build-dir) build=$2; shift ;;
    --out-dir) out=$2; shift ;;
    --) shift; break ;;
    *) echo "usage: $0 [--quick] [--publish] [--no-install] [--no-python] [--build-dir DIR] [--out-dir DIR] [-- run.py args]" >&2
       exit 2 ;;
  esac
  shift
done
if [ "$publish" -eq 1 ]; then
  [ ${#quick[@]} -eq 0 ] || { echo "--publish needs a full run" >&2; exit 2; }
  out=bench/results
fi
[ -n "$out" ] || out=$build/bench

# ---- the peers' packages (Debian 12) ----------------------------------------
# GLib (glib_bench), Go (go_bench), Node (node_bench.mjs), gnuplot (the
# chart), and Debian's cargo with the tokio-util, tokio and libc crates
# (rust_bench, built offline from /usr/share/cargo/registry).
bench_pkgs=(cmake make gcc g++ pkg-config python3 libglib2.0-dev golang-go
            nodejs gnuplot-nox cargo librust-tokio-util-dev librust-tokio-dev
            librust-libc-dev)
if [ "$install" -eq 1 ]; then
  missing=()
  for p in "${bench_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "=== installing the benchmark's packages: ${missing[*]}"
    # The project's installer first (its bench and build sets), then
    # apt-get for whatever it left out.
    if [ -f scripts/deps.sh ] && grep -q '^ *bench)' scripts/deps.sh; then
      bash scripts/deps.sh build bench || echo "warning: scripts/deps.sh build bench failed" >&2
      still=()
      for p in "${missing[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
          still+=("$p")
      done
      missing=("${still[@]}")
    fi
    if [ ${#missing[@]} -gt 0 ]; then
      sudo=""
      [ "$(id -u)" -eq 0 ] || sudo="sudo"
      { $sudo apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
          --no-install-recommends "${missing[@]}" >/dev/null; } ||
        echo "warning: apt-get could not install ${missing[*]}; those peers will be reported unavailable" >&2
    fi
  fi
fi

echo "=== configure and build ($build)"
mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCT_BUILD_BENCH=ON \
  -DCT_BUILD_TESTS=OFF >"$build/build.log" 2>&1 || { cat "$build/build.log"; exit 1; }
# Only what the benchmark runs: ours and C++ must build; the peers, the
# token server's net_bench and the Python module are optional, so that a
# broken part elsewhere in the tree (the command, an example) does not stop
# the run.  -j2 at most: the machine is shared.
jobs=$(nproc)
[ "$jobs" -le 2 ] || jobs=2
cmake --build "$build" -j"$jobs" --target ct_bench cpp_bench >>"$build/build.log" 2>&1 ||
  { tail -n 40 "$build/build.log"; exit 1; }
for t in bench_peers net_bench net_floor ct_python_core; do
  if grep -q "^$t:" "$build/Makefile" 2>/dev/null || [ ! -f "$build/Makefile" ]; then
    cmake --build "$build" -j"$jobs" --target "$t" >>"$build/build.log" 2>&1 ||
      echo "bench: $t did not build (see $build/build.log); its figures will be missing"
  fi
done
grep -E '^-- bench:|did not build' "$build/build.log" || true

extra=()
if [ -x "$build/bench/net_bench" ]; then
  if [ ${#quick[@]} -eq 0 ]; then
    extra+=(--extra-cmd "net=$build/bench/net_bench")
    # Fan-out with 100 and with 10,000 connected clients (one server thread).
    extra+=(--extra-cmd "net100=$build/bench/net_bench --samples 50 --clients 100 --procs 4 --rounds 5")
    extra+=(--extra-cmd "net10k=$build/bench/net_bench --samples 50 --clients 10000 --procs 20 --rounds 3")
    # The same fan-outs with no cancel-token code: what the kernel alone
    # costs on this machine (bench/README.md, "net_floor").
    if [ -x "$build/bench/net_floor" ]; then
      extra+=(--extra-cmd "netfloor=$build/bench/net_floor --clients 1000 --procs 10 --rounds 7")
      extra+=(--extra-cmd "netfloor10k=$build/bench/net_floor --clients 10000 --procs 20 --rounds 3")
    fi
  else
    extra+=(--extra-cmd "net=$build/bench/net_bench --samples 200 --clients 100 --procs 2 --rounds 2")
  fi
fi
if [ "$python" -eq 1 ] && [ -f python/bench/bench.py ] && ls "$build"/python/cancel_token/_core*.so >/dev/null 2>&1; then
  extra+=(--extra-cmd "python=env PYTHONPATH=$build/python /usr/bin/python3 python/bench/bench.py --json {out} ${quick[*]}")
  extra+=(--extra-cmd "xproc=env PYTHONPATH=$build/python /usr/bin/python3 python/bench/cross_process.py --json {out} ${quick[*]}")
fi

mkdir -p "$out"
if [ "$publish" -eq 1 ]; then
  {
    echo "Machine of the published run (bench/run_all.sh --publish)"
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "kernel: $(uname -srm)"
    echo "nproc: $(nproc)"
    echo "CPU (/proc/cpuinfo): $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    lscpu | grep -E '^(Architecture|CPU\(s\)|Model name|Thread|Core|Socket|Hypervisor|L1d|L2|L3|CPU max MHz)' || true
    echo "memory: $(free -h | awk '/^Mem:/ {print $2}')"
    echo "compilers: $(gcc --version | head -n1); $(g++ --version | head -n1); build type Release, the bench programs at -O2"
    echo "GLib: $(pkg-config --modversion gio-2.0 2>/dev/null || echo none)"
    echo "Go: $(go version 2>/dev/null || echo none)"
    echo "Node: $(node --version 2>/dev/null || echo none)"
    echo "Rust: $(/usr/bin/rustc --version 2>/dev/null || echo none); $(/usr/bin/cargo --version 2>/dev/null || echo no cargo); tokio-util $(ls -d /usr/share/cargo/registry/tokio-util-* 2>/dev/null | sed 's/.*tokio-util-//' | head -n1)"
    echo "Python: $(/usr/bin/python3 --version 2>&1)"
  } >"$out/MACHINE.txt"
fi
/usr/bin/python3 bench/run.py "${quick[@]}" \
  --ct-bench "$build/bench/ct_bench" --cpp-bench "$build/bench/cpp_bench" \
  --out-dir "$out" "${extra[@]}" "$@" | tee "$out/table.txt"
status=${PIPESTATUS[0]}
if [ "$publish" -eq 1 ]; then
  echo "load after the run: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/MACHINE.txt"
  # The suite alone keeps the 1-minute load near 2 on two CPUs.
  if awk '{ exit !($1 > 2.5) }' /proc/loadavg; then
    echo "note: other processes ran during this run (load above the suite's own); its figures are noisier than on a quiet machine" >>"$out/MACHINE.txt"
  fi
fi
exit "$status"
