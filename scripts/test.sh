#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds and runs every test: plain (gcc Debug), under AddressSanitizer+UBSan
# (gcc), under ThreadSanitizer (clang), an optimised build (gcc Release),
# every one with -Werror; a clang Release build (compile only, -Werror);
# then valgrind's memcheck on the quick programs and on the random stress
# (short setting), each libFuzzer harness for CT_FUZZ_SECONDS (default 30),
# the benchmark in quick mode (to prove it builds and runs; it asserts
# nothing), and the suites of their own when present: scripts/test-install.sh
# (install into a prefix, build outside the tree), scripts/test-python.sh,
# scripts/test-zk.sh.  Each of those ends with a "N passed, N failed" line
# whose counts are added here.  Ends with one "N passed, N failed" line.
#
# Installs what it needs first: scripts/deps.sh test bench.  Temporary
# files go to a mktemp directory, never to fixed names in /tmp.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test bench || exit 1
jobs=$(nproc)
[ "$jobs" -gt 2 ] && jobs=2 # a shared 2-CPU machine: be gentle
passed=0
failed=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ct-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# section TITLE: a header with the time spent so far.
section() { echo "=== $* [$((SECONDS / 60))m$((SECONDS % 60))s]"; }

# run_ctest NAME BUILD-TYPE CMAKE-ARGS...: configure, build, run; count.
run_ctest() {
  local name=$1 type=$2; shift 2
  local dir=build-test-$name
  section "$name: configure and build ($type, -Werror)"
  if ! cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" -DCT_WERROR=ON "$@" >"$dir.log" 2>&1 ||
     ! cmake --build "$dir" -j"$jobs" >>"$dir.log" 2>&1; then
    cat "$dir.log"; failed=$((failed + 1)); return
  fi
  section "$name: ctest"
  ctest --test-dir "$dir" -j"$jobs" --output-on-failure 2>&1 | tee "$dir/ctest.out" | tail -n 4
  local total fails
  total=$(grep -Eo 'out of [0-9]+' "$dir/ctest.out" | grep -Eo '[0-9]+' || echo 0)
  fails=$(grep -Eo '[0-9]+ tests failed' "$dir/ctest.out" | grep -Eo '^[0-9]+' || echo 1)
  passed=$((passed + total - fails))
  failed=$((failed + fails))
}

# add_counts NAME OUTPUT-FILE EXIT-STATUS: add a suite's "N passed, N
# failed" line; a non-zero exit without such a line counts as 1 failed.
add_counts() {
  local name=$1 out=$2 rc=$3 line
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  if [ -n "$line" ]; then
    passed=$((passed + $(echo "$line" | grep -Eo '^[0-9]+')))
    failed=$((failed + $(echo "$line" | grep -Eo '[0-9]+ failed' | grep -Eo '^[0-9]+')))
    if [ "$rc" -ne 0 ] && [ "$(echo "$line" | grep -Eo '[0-9]+ failed' | grep -Eo '^[0-9]+')" -eq 0 ]; then
      echo "$name: exit status $rc with no failure counted: 1 failed"
      failed=$((failed + 1))
    fi
  elif [ "$rc" -ne 0 ]; then
    echo "$name: exit status $rc and no 'N passed, N failed' line: 1 failed"
    failed=$((failed + 1))
  else
    echo "$name: no 'N passed, N failed' line: 1 failed"
    failed=$((failed + 1))
  fi
}

run_ctest plain Debug
run_ctest asan-ubsan Debug -DCT_SANITIZE="address;undefined"
CC=clang run_ctest tsan Debug -DCT_SANITIZE=thread
# The optimised build: the warnings only -O2 finds (maybe-uninitialized,
# format-truncation) and code the optimiser reorders.  The suite is the
# same as above (its stress runs the short CI setting).
# The ZooKeeper tests start an ensemble: they run in the plain build and in
# scripts/test-zk.sh, not a third time here.
run_ctest release Release -DCT_ZK_TESTS=OFF

section "clang-release: build only (Release, -Werror)"
if CC=clang cmake -S . -B build-test-clang-release -DCMAKE_BUILD_TYPE=Release \
     -DCT_WERROR=ON >build-test-clang-release.log 2>&1 &&
   cmake --build build-test-clang-release -j"$jobs" >>build-test-clang-release.log 2>&1; then
  echo "clang release build: ok"; passed=$((passed + 1))
else
  cat build-test-clang-release.log; echo "clang release build: FAILED"; failed=$((failed + 1))
fi

section "valgrind memcheck (plain build)"
for t in build-test-plain/tests/test_callback build-test-plain/tests/test_wait \
         build-test-plain/tests/test_oom build-test-plain/examples/quickstart \
         build-test-plain/examples/chaining build-test-plain/examples/fd_timeout \
         build-test-plain/tests/test_uv build-test-plain/tests/test_uv_ops \
         build-test-plain/tests/test_async \
         build-test-plain/tests/test_cache build-test-plain/tests/test_children \
         build-test-plain/tests/test_net_group build-test-plain/tests/test_token_orphan \
         build-test-plain/tests/test_trigger_claim build-test-plain/tests/test_token_detach; do
  if valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
       --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
       "$t" >"$tmp/valgrind.out" 2>&1; then
    echo "valgrind ok: $t"; passed=$((passed + 1))
  else
    echo "valgrind FAILED: $t"; cat "$tmp/valgrind.out"; failed=$((failed + 1))
  fi
done

section "valgrind memcheck: the random stress (plain build, short setting)"
if valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
     --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
     build-test-plain/tests/test_stress --threads 4 --seconds 3 \
     >"$tmp/valgrind.out" 2>&1; then
  echo "valgrind ok: test_stress"; passed=$((passed + 1))
else
  echo "valgrind FAILED: test_stress"; cat "$tmp/valgrind.out"; failed=$((failed + 1))
fi

section "fuzzing (clang libFuzzer + ASan + UBSan), ${CT_FUZZ_SECONDS:-30} s per harness"
bash fuzz/run.sh "${CT_FUZZ_SECONDS:-30}" 2>&1 | tee "$tmp/fuzz.out" | grep -v '^[0-9]* passed'
fz_pass=$(grep -Eo '^[0-9]+ passed' "$tmp/fuzz.out" | grep -Eo '^[0-9]+' || echo 0)
fz_fail=$(grep -Eo '[0-9]+ failed$' "$tmp/fuzz.out" | grep -Eo '^[0-9]+' || echo 1)
passed=$((passed + fz_pass))
failed=$((failed + fz_fail))

section "benchmark, quick mode (no assertions; proves it builds and runs)"
if cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCT_BUILD_BENCH=ON \
     -DCT_BUILD_TESTS=OFF >build-bench.log 2>&1 &&
   cmake --build build-bench -j"$jobs" --target ct_bench cpp_bench bench_peers >>build-bench.log 2>&1 &&
   /usr/bin/python3 bench/run.py --quick --ct-bench build-bench/bench/ct_bench \
     --cpp-bench build-bench/bench/cpp_bench --out-dir build-bench >>build-bench.log 2>&1; then
  echo "bench quick: ok"; passed=$((passed + 1))
else
  echo "bench quick: FAILED"; tail -n 30 build-bench.log; failed=$((failed + 1))
fi

# The suites with a script of their own, each ending "N passed, N failed".
for suite in test-install test-python test-zk; do
  [ -f "scripts/$suite.sh" ] || continue
  section "$suite"
  bash "scripts/$suite.sh" 2>&1 | tee "$tmp/$suite.out"
  add_counts "$suite" "$tmp/$suite.out" "${PIPESTATUS[0]}"
done

echo
echo "total time: $((SECONDS / 60))m$((SECONDS % 60))s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
