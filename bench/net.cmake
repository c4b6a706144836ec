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
