# SPDX-License-Identifier: MIT
# Fault injection in the token server and client (test_fault.c: server
# killed, client that stops reading, descriptor exhaustion; test_fault_oom.c:
# every allocation failing in turn), and the replay of the fuzzers' seed
# corpora and regression inputs (fuzz/) as ordinary tests, with any
# compiler.  Included by tests/CMakeLists.txt.  These tests use src/remote's
# internal hooks (net_internal.h), so they link the static library.
if(TARGET canceltoken_net_static)
  foreach(name test_fault test_fault_oom)
    ct_test(${name} 300)
    target_link_libraries(${name} PRIVATE canceltoken_net_static)
    target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src/remote)
    target_compile_definitions(${name} PRIVATE
      NET_PEER="$<TARGET_FILE:net_peer>")
  endforeach()
  # net_peer is defined by net.cmake, which may be read after this file.
  cmake_language(DEFER CALL add_dependencies test_fault_oom net_peer)

  set(CT_FUZZ_DIR ${PROJECT_SOURCE_DIR}/fuzz)
  foreach(h fuzz_decoder fuzz_server fuzz_handshake fuzz_codec fuzz_address)
    add_executable(${h}_replay ${CT_FUZZ_DIR}/${h}.c ${CT_FUZZ_DIR}/replay.c)
    target_compile_definitions(${h}_replay PRIVATE _GNU_SOURCE)
    target_include_directories(${h}_replay PRIVATE ${PROJECT_SOURCE_DIR}/src/remote)
    target_link_libraries(${h}_replay PRIVATE canceltoken_net_static)
    add_test(NAME ${h}_replay COMMAND ${h}_replay
      ${CT_FUZZ_DIR}/corpus/${h} ${CT_FUZZ_DIR}/regressions/${h})
    set_tests_properties(${h}_replay PROPERTIES TIMEOUT 120 ENVIRONMENT
      "TSAN_OPTIONS=halt_on_error=1;ASAN_OPTIONS=detect_leaks=1 abort_on_error=1;UBSAN_OPTIONS=halt_on_error=1 print_stacktrace=1")
  endforeach()
  # The command line (fuzz/fuzz_cli.c): not in the loop, since it builds
  # from the tool's own sources (its parser and escaping), not a library.
  add_executable(fuzz_cli_replay ${CT_FUZZ_DIR}/fuzz_cli.c
    ${CT_FUZZ_DIR}/replay.c ${PROJECT_SOURCE_DIR}/tools/options.c
    ${PROJECT_SOURCE_DIR}/tools/escape.c)
  target_compile_definitions(fuzz_cli_replay PRIVATE _GNU_SOURCE)
  target_include_directories(fuzz_cli_replay PRIVATE ${PROJECT_SOURCE_DIR}/tools)
  target_link_libraries(fuzz_cli_replay PRIVATE m)
  add_test(NAME fuzz_cli_replay COMMAND fuzz_cli_replay
    ${CT_FUZZ_DIR}/corpus/fuzz_cli ${CT_FUZZ_DIR}/regressions/fuzz_cli)
  set_tests_properties(fuzz_cli_replay PROPERTIES TIMEOUT 120 ENVIRONMENT
    "TSAN_OPTIONS=halt_on_error=1;ASAN_OPTIONS=detect_leaks=1 abort_on_error=1;UBSAN_OPTIONS=halt_on_error=1 print_stacktrace=1")
endif()
