# SPDX-License-Identifier: MIT
# Tests of canceltoken_os.h: signals (test_signal, which sends real signals
# to the helper program signal_child) and child processes (test_process,
# which runs real commands: /bin/sleep, /bin/sh, /bin/true ...).

add_executable(signal_child signal_child.c)
target_compile_definitions(signal_child PRIVATE _GNU_SOURCE)
target_compile_options(signal_child PRIVATE ${CT_WARNINGS})
target_link_libraries(signal_child PRIVATE canceltoken_static)

ct_test(test_signal 60)
target_compile_definitions(test_signal PRIVATE
  SIGNAL_CHILD="$<TARGET_FILE:signal_child>")
add_dependencies(test_signal signal_child)

ct_test(test_process 120)
