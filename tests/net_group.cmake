# SPDX-License-Identifier: MIT
# The I/O group a client names in its HELLO: a notice's sends go to one
# group's connections back to back, over TCP and Unix sockets, and the
# client library names one group per process (tests/test_net_group.c).
# Included by tests/CMakeLists.txt.
if(TARGET canceltoken_net_static)
  ct_test(test_net_group 120)
  target_link_libraries(test_net_group PRIVATE canceltoken_net_static)
  # net_fanout_cut(), a testing hook of net_internal.h
  target_include_directories(test_net_group PRIVATE
    ${PROJECT_SOURCE_DIR}/src/remote)
endif()
