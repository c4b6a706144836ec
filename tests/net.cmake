# SPDX-License-Identifier: MIT
# Tests of the token server and client (src/remote) and of the cancel-token
# command (tools): real processes over real sockets, loopback only, each
# socket at a fresh /tmp path or an ephemeral port so parallel runs do not
# collide.  Included by tests/CMakeLists.txt.
if(TARGET canceltoken_net_static)
  # The helper peer the tests fork/exec (servers, waiting clients, ...).
  add_executable(net_peer net_peer.c)
  target_compile_definitions(net_peer PRIVATE _GNU_SOURCE)
  target_compile_options(net_peer PRIVATE ${CT_WARNINGS})
  target_link_libraries(net_peer PRIVATE canceltoken_net_static)

  function(ct_net_test name timeout)
    ct_test(${name} ${timeout})
    target_link_libraries(${name} PRIVATE canceltoken_net_static)
    target_compile_definitions(${name} PRIVATE
      NET_PEER="$<TARGET_FILE:net_peer>")
    if(TARGET cancel-token)
      target_compile_definitions(${name} PRIVATE
        CANCEL_TOKEN_CLI="$<TARGET_FILE:cancel-token>")
      add_dependencies(${name} cancel-token)
    endif()
    add_dependencies(${name} net_peer)
  endfunction()

  ct_net_test(test_net 120)
  ct_net_test(test_net_security 120)
  ct_net_test(test_net_badpeer 180)
  ct_net_test(test_net_hardening 180)
  ct_net_test(test_net_options 120)
  if(TARGET cancel-token)
    ct_net_test(test_net_cli 120)
  endif()
endif()
