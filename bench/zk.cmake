# SPDX-License-Identifier: MIT
# The ZooKeeper backend's benchmark (bench/zk_bench.c) on a real 3-member
# loopback ensemble.  Include from bench/CMakeLists.txt:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/zk.cmake)
# Run:  cmake --build <dir> --target zk_bench_run   (starts and stops the
# ensemble in a mktemp directory; about a minute)
if(TARGET canceltoken_zk_static)
  add_executable(zk_bench ${CMAKE_CURRENT_LIST_DIR}/zk_bench.c)
  target_compile_definitions(zk_bench PRIVATE _GNU_SOURCE)
  target_include_directories(zk_bench SYSTEM PRIVATE ${ZOOKEEPER_INCLUDE_DIR})
  target_link_libraries(zk_bench PRIVATE canceltoken_zk_static)
  target_compile_options(zk_bench PRIVATE ${CT_WARNINGS} -O2)
  add_custom_target(zk_bench_run
    COMMAND bash -c "d=$(mktemp -d); trap 'bash ${PROJECT_SOURCE_DIR}/scripts/zk-ensemble.sh stop $d >/dev/null; rm -rf $d' EXIT; h=$(bash ${PROJECT_SOURCE_DIR}/scripts/zk-ensemble.sh start $d) && $<TARGET_FILE:zk_bench> $h"
    DEPENDS zk_bench USES_TERMINAL
    COMMENT "ZooKeeper benchmark on a 3-member loopback ensemble")
endif()
