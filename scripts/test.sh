#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds and runs every test: plain, under AddressSanitizer+UBSan (gcc),
# under ThreadSanitizer (clang), then valgrind's memcheck on the quick
# programs and on the random stress (short setting), then each libFuzzer
# harness for CT_FUZZ_SECONDS (default 30), then the benchmark in quick
# mode (to prove it builds and runs; it asserts nothing).  Ends with one
# "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh || exit 1
jobs=$(nproc)
passed=0
failed=0

# run_ctest NAME CMAKE-ARGS...: configure, build, run; count the results.
run_ctest() {
  local name=$1; shift
  local dir=build-test-$name
  echo "=== $name: configure and build"
  if ! cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug "$@" >"$dir.log" 2>&1 ||
     ! cmake --build "$dir" -j"$jobs" >>"$dir.log" 2>&1; then
    cat "$dir.log"; failed=$((failed + 1)); return
  fi
  echo "=== $name: ctest"
  ctest --test-dir "$dir" -j"$jobs" --output-on-failure 2>&1 | tee "$dir/ctest.out" | tail -n 4
  local total fails
  total=$(grep -Eo 'out of [0-9]+' "$dir/ctest.out" | grep -Eo '[0-9]+' || echo 0)
  fails=$(grep -Eo '[0-9]+ tests failed' "$dir/ctest.out" | grep -Eo '^[0-9]+' || echo 1)
  passed=$((passed + total - fails))
  failed=$((failed + fails))
}

run_ctest plain
run_ctest asan-ubsan -DCT_SANITIZE="address;undefined"
CC=clang run_ctest tsan -DCT_SANITIZE=thread

echo "=== valgrind memcheck (plain build)"
for t in build-test-plain/tests/test_callback build-test-plain/tests/test_wait \
         build-test-plain/tests/test_oom build-test-plain/examples/quickstart \
         build-test-plain/examples/chaining build-test-plain/examples/fd_timeout \
         build-test-plain/tests/test_uv build-test-plain/tests/test_async; do
  if valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
       --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
       "$t" >/tmp/ct-valgrind.out 2>&1; then
    echo "valgrind ok: $t"; passed=$((passed + 1))
  else
    echo "valgrind FAILED: $t"; cat /tmp/ct-valgrind.out; failed=$((failed + 1))
  fi
done

echo "=== valgrind memcheck: the random stress (plain build, short setting)"
if valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
     --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
     build-test-plain/tests/test_stress --threads 4 --seconds 3 \
     >/tmp/ct-valgrind.out 2>&1; then
  echo "valgrind ok: test_stress"; passed=$((passed + 1))
else
  echo "valgrind FAILED: test_stress"; cat /tmp/ct-valgrind.out; failed=$((failed + 1))
fi

echo "=== fuzzing (clang libFuzzer + ASan + UBSan), ${CT_FUZZ_SECONDS:-30} s per harness"
bash fuzz/run.sh "${CT_FUZZ_SECONDS:-30}" 2>&1 | tee /tmp/ct-fuzz.out | grep -v '^[0-9]* passed'
fz_pass=$(grep -Eo '^[0-9]+ passed' /tmp/ct-fuzz.out | grep -Eo '^[0-9]+' || echo 0)
fz_fail=$(grep -Eo '[0-9]+ failed$' /tmp/ct-fuzz.out | grep -Eo '^[0-9]+' || echo 1)
passed=$((passed + fz_pass))
failed=$((failed + fz_fail))

echo "=== benchmark, quick mode (no assertions; proves it builds and runs)"
if cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCT_BUILD_BENCH=ON \
     -DCT_BUILD_TESTS=OFF >build-bench.log 2>&1 &&
   cmake --build build-bench -j"$jobs" --target ct_bench cpp_bench bench_peers >>build-bench.log 2>&1 &&
   /usr/bin/python3 bench/run.py --quick --ct-bench build-bench/bench/ct_bench \
     --cpp-bench build-bench/bench/cpp_bench --out-dir build-bench >>build-bench.log 2>&1; then
  echo "bench quick: ok"; passed=$((passed + 1))
else
  echo "bench quick: FAILED"; tail -n 30 build-bench.log; failed=$((failed + 1))
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
