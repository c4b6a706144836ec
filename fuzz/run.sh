#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build the libFuzzer harnesses with clang (-fsanitize=fuzzer,address,
# undefined) and run each for N seconds (default 30) on a copy of its seed
# corpus.  Prints, per harness, the executions, the coverage reached
# (libFuzzer's "cov" edges and "ft" features) and the result; a crash
# leaves its input in build-fuzz/crash-<harness>/ -- copy it into
# fuzz/regressions/<harness>/ so the replay test keeps it fixed.
#   fuzz/run.sh [SECONDS] [HARNESS...]
# Ends with "N passed, N failed"; exits non-zero if any harness failed.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=(fuzz_codec fuzz_address fuzz_cli fuzz_decoder fuzz_server fuzz_handshake)
dir=build-fuzz
CC=${CT_FUZZ_CC:-clang}
if ! CC=$CC cmake -S fuzz -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
       -DCT_FUZZ=ON >"$dir.log" 2>&1 ||
   ! cmake --build "$dir" -j"$(nproc)" --target "${harnesses[@]}" \
       >>"$dir.log" 2>&1; then
  cat "$dir.log"
  echo "fuzz build: FAILED"
  echo "0 passed, ${#harnesses[@]} failed"
  exit 1
fi
passed=0
failed=0
for h in "${harnesses[@]}"; do
  work=$dir/corpus-$h
  crash=$dir/crash-$h
  rm -rf "$work" "$crash"
  mkdir -p "$work" "$crash"
  cp fuzz/corpus/$h/* "$work"/
  # -use_value_profile: comparisons count as coverage (magic, lengths).
  # Leaks are checked at each input's end (-detect_leaks, the default).
  if "$dir/$h" -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 \
       -use_value_profile=1 -print_final_stats=1 -artifact_prefix="$crash/" \
       "$work" fuzz/regressions/$h >"$dir/$h.log" 2>&1; then
    res=ok; passed=$((passed + 1))
  else
    res=FAILED; failed=$((failed + 1))
  fi
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$dir/$h.log" |
          grep -Eo '[0-9]+$' || echo '?')
  last=$(grep -E '^#[0-9]+' "$dir/$h.log" | tail -n 1)
  cov=$(echo "$last" | grep -Eo 'cov: [0-9]+' | grep -Eo '[0-9]+' || echo '?')
  ft=$(echo "$last" | grep -Eo 'ft: [0-9]+' | grep -Eo '[0-9]+' || echo '?')
  corp=$(echo "$last" | grep -Eo 'corp: [0-9]+' | grep -Eo '[0-9]+' || echo '?')
  echo "fuzz $h: $res: ${secs}s, $execs executions, cov $cov edges, ft $ft features, corpus $corp"
  if [ $res = FAILED ]; then
    grep -E 'ERROR|SUMMARY|check failed|Test unit written' "$dir/$h.log" | head -n 20
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
