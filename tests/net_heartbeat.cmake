# SPDX-License-Identifier: MIT
# The clients' heartbeats against a real server process, many clients of
# one process in its I/O thread's heartbeat heap (tests/test_net_heartbeat.c).
# Included by tests/CMakeLists.txt, after net.cmake (ct_net_test).
if(TARGET canceltoken_net_static)
  ct_net_test(test_net_heartbeat 180)
endif()
