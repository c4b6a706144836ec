# SPDX-License-Identifier: MIT
# Tests of the ZooKeeper backend (src/zk) against a REAL 3-member ensemble
# on loopback (scripts/zk-ensemble.sh), with real processes (tests/zk/
# zk_peer.c).  Included by tests/CMakeLists.txt.
#
# The ensemble costs three JVMs and a few seconds, so these tests are
# registered in one build only: the plain one (no CT_SANITIZE), or any
# build configured with -DCT_ZK_TESTS=ON (and never with
# -DCT_ZK_TESTS=OFF).  A ctest fixture starts the ensemble once, in the
# build tree, before the first test labelled "zk" and stops it after the
# last; RESOURCE_LOCK keeps the tests from running at once (some kill
# members).  scripts/test-zk.sh runs them: ctest -L zk.
if(NOT TARGET canceltoken_zk_static)
  return()
endif()
if(DEFINED CT_ZK_TESTS)
  set(_zk_tests ${CT_ZK_TESTS})
elseif(CT_SANITIZE)
  set(_zk_tests OFF)
else()
  set(_zk_tests ON)
endif()
if(NOT _zk_tests)
  return()
endif()
find_program(CT_JAVA java)
if(NOT CT_JAVA OR NOT EXISTS /usr/share/java/zookeeper.jar)
  message(STATUS "ZooKeeper tests: skipped (java or /usr/share/java/zookeeper.jar missing: bash scripts/deps.sh zk)")
  return()
endif()

set(CT_ZK_ENSEMBLE_DIR ${CMAKE_CURRENT_BINARY_DIR}/zk-ensemble)
set(CT_ZK_ENSEMBLE_SH ${PROJECT_SOURCE_DIR}/scripts/zk-ensemble.sh)

add_executable(zk_peer zk/zk_peer.c)
target_compile_definitions(zk_peer PRIVATE _GNU_SOURCE)
target_compile_options(zk_peer PRIVATE ${CT_WARNINGS})
target_link_libraries(zk_peer PRIVATE canceltoken_zk_static)

# The ensemble's directory: $CT_ZK_ENSEMBLE_DIR when ctest runs with it set
# (scripts/test-zk.sh gives a mktemp one), else one in the build tree.
add_test(NAME zk_ensemble_start COMMAND bash -c
  "exec bash '${CT_ZK_ENSEMBLE_SH}' start \"\${CT_ZK_ENSEMBLE_DIR:-${CT_ZK_ENSEMBLE_DIR}}\"")
add_test(NAME zk_ensemble_stop COMMAND bash -c
  "exec bash '${CT_ZK_ENSEMBLE_SH}' stop \"\${CT_ZK_ENSEMBLE_DIR:-${CT_ZK_ENSEMBLE_DIR}}\"")
set_tests_properties(zk_ensemble_start PROPERTIES FIXTURES_SETUP zk_ensemble
  LABELS zk TIMEOUT 120 RESOURCE_LOCK zk_ensemble)
set_tests_properties(zk_ensemble_stop PROPERTIES FIXTURES_CLEANUP zk_ensemble
  LABELS zk TIMEOUT 60 RESOURCE_LOCK zk_ensemble)

function(ct_zk_test name timeout)
  add_executable(${name} zk/${name}.c)
  target_compile_definitions(${name} PRIVATE _GNU_SOURCE
    ZK_PEER="$<TARGET_FILE:zk_peer>" ZK_ENSEMBLE_SH="${CT_ZK_ENSEMBLE_SH}")
  target_compile_options(${name} PRIVATE ${CT_WARNINGS})
  target_link_libraries(${name} PRIVATE canceltoken_zk_static
    PkgConfig::CMOCKA)
  add_dependencies(${name} zk_peer)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout}
    FIXTURES_REQUIRED zk_ensemble RESOURCE_LOCK zk_ensemble LABELS zk
    ENVIRONMENT "CT_ZK_ENSEMBLE_DEFAULT=${CT_ZK_ENSEMBLE_DIR};TSAN_OPTIONS=die_after_fork=0 halt_on_error=1;ASAN_OPTIONS=detect_leaks=1 abort_on_error=1;UBSAN_OPTIONS=halt_on_error=1 print_stacktrace=1")
endfunction()

ct_zk_test(test_zk 120)
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/zk/test_zk_fault.c)
  ct_zk_test(test_zk_fault 150)
endif()

# The command against the ensemble, once it has the ZooKeeper backend.
if(TARGET cancel-token AND EXISTS ${PROJECT_SOURCE_DIR}/tools/backend_zk.c)
  add_test(NAME test_zk_cli COMMAND bash
    ${CMAKE_CURRENT_SOURCE_DIR}/zk/test_zk_cli.sh $<TARGET_FILE:cancel-token>)
  set_tests_properties(test_zk_cli PROPERTIES TIMEOUT 300
    FIXTURES_REQUIRED zk_ensemble RESOURCE_LOCK zk_ensemble LABELS zk
    ENVIRONMENT "CT_ZK_ENSEMBLE_DEFAULT=${CT_ZK_ENSEMBLE_DIR}")
endif()
