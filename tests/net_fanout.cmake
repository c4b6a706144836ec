# SPDX-License-Identifier: MIT
# One notice to many connections held by several processes: the token
# server's grouping of a notice's sends by peer process and its send
# helpers (tests/test_net_fanout.c).  Included by tests/CMakeLists.txt.
if(TARGET canceltoken_net_static)
  ct_test(test_net_fanout 180)
  target_link_libraries(test_net_fanout PRIVATE canceltoken_net_static)
endif()
