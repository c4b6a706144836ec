# SPDX-License-Identifier: MIT
# The token server's benchmark (bench/net_bench.c): trigger-to-proxy latency
# with one client, and fan-out to 1,000 clients.  Include from
# bench/CMakeLists.txt:  include(${CMAKE_CURRENT_SOURCE_DIR}/net.cmake)
# Run:  cmake --build <dir> --target net_bench_run
if(TARGET canceltoken_net_static)
  add_executable(net_bench ${CMAKE_CURRENT_LIST_DIR}/net_bench.c)
  target_compile_definitions(net_bench PRIVATE _GNU_SOURCE)
  target_link_libraries(net_bench PRIVATE canceltoken_net_static)
  # -O2 after the build type's flags, so it is the level that applies.
  target_compile_options(net_bench PRIVATE ${CT_WARNINGS} -O2)
  add_custom_target(net_bench_run COMMAND net_bench DEPENDS net_bench
    USES_TERMINAL COMMENT "Token server benchmark (about a minute)")
endif()

# net_floor (bench/net_floor.c): the same fan-out with no cancel-token code,
# only the kernel (send/recv/epoll, and io_uring, bench/net_floor_uring.c,
# when liburing is found: apt-get install liburing-dev).  Not part of the
# quick bench or the tests; see bench/README.md, "net_floor".
# Run:  <dir>/bench/net_floor --clients 1000 --procs 10 --rounds 7
add_executable(net_floor ${CMAKE_CURRENT_LIST_DIR}/net_floor.c)
target_compile_definitions(net_floor PRIVATE _GNU_SOURCE)
target_link_libraries(net_floor PRIVATE Threads::Threads)
target_compile_options(net_floor PRIVATE ${CT_WARNINGS} -O2)
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(CT_URING QUIET IMPORTED_TARGET liburing)
endif()
if(CT_URING_FOUND)
  target_sources(net_floor PRIVATE ${CMAKE_CURRENT_LIST_DIR}/net_floor_uring.c)
  target_compile_definitions(net_floor PRIVATE NET_FLOOR_URING)
  target_link_libraries(net_floor PRIVATE PkgConfig::CT_URING)
  message(STATUS "bench: net_floor with io_uring (liburing ${CT_URING_VERSION})")
else()
  message(STATUS "bench: net_floor without io_uring, variant c not built (no liburing; apt-get install liburing-dev)")
endif()
