# SPDX-License-Identifier: MIT
# One client holding many proxies of distinct tokens on one connection,
# all triggered, some dropped and fetched again (tests/test_net_many.c):
# the hash indexes of the token client and server.  Included by
# tests/CMakeLists.txt.
if(TARGET canceltoken_net_static)
  ct_test(test_net_many 300)
  target_link_libraries(test_net_many PRIVATE canceltoken_net_static)
endif()
