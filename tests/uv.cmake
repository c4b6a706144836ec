# SPDX-License-Identifier: MIT
# Tests of the libuv adapter (canceltoken_uv.h), on real loops: test_uv
# (watchers, streams, bad input) and test_uv_ops (pool, connect, spawn, sleep).
# Built only when the adapter is (src/uv, option CT_WITH_UV).  The example
# server's test (examples/CMakeLists.txt) runs test_uv --example as driver.
if(TARGET canceltoken_uv_static)
  ct_test(test_uv 180)
  target_link_libraries(test_uv PRIVATE canceltoken_uv_static)
  ct_test(test_uv_ops 180)
  target_link_libraries(test_uv_ops PRIVATE canceltoken_uv_static)
endif()
