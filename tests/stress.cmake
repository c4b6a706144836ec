# SPDX-License-Identifier: MIT
# The random stress of the core (test_stress.c, stress_ops.c), included by
# tests/CMakeLists.txt.  ctest runs the short CI setting: 4 workers and 2
# waiters for 3 s (under every build: plain, ASan+UBSan, TSan).  The long
# release setting is documented in docs/hardening.md.
ct_test(test_stress 300)
target_sources(test_stress PRIVATE stress_ops.c)
set_tests_properties(test_stress PROPERTIES ENVIRONMENT
  "CT_STRESS_THREADS=4;CT_STRESS_SECONDS=3;TSAN_OPTIONS=halt_on_error=1 second_deadlock_stack=1;ASAN_OPTIONS=detect_leaks=1 abort_on_error=1;UBSAN_OPTIONS=halt_on_error=1 print_stacktrace=1")
