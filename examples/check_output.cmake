# SPDX-License-Identifier: MIT
# Run an example and compare its output with the expected output.
#
#   cmake -DCMD=<program> -DEXPECTED=<file> -P check_output.cmake
#
# Fails unless the program exits with status 0, writes nothing to standard
# error and writes exactly the contents of EXPECTED to standard output.

foreach(var CMD EXPECTED)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_output.cmake: -D${var}=... is required")
  endif()
endforeach()

execute_process(COMMAND ${CMD}
  RESULT_VARIABLE result
  OUTPUT_VARIABLE actual
  ERROR_VARIABLE errors)
file(READ "${EXPECTED}" expected)

set(failed "")
if(NOT result STREQUAL "0")
  string(APPEND failed "exit status: ${result}\n")
endif()
if(NOT errors STREQUAL "")
  string(APPEND failed "standard error:\n${errors}\n")
endif()
if(NOT actual STREQUAL expected)
  string(APPEND failed
    "standard output differs from ${EXPECTED}\n"
    "--- expected ---\n${expected}"
    "--- actual ---\n${actual}"
    "--- end ---\n")
endif()

if(failed)
  # A plain message() prints the text as it is; FATAL_ERROR would reflow it.
  message("${failed}")
  message(FATAL_ERROR "${CMD}: output check failed")
endif()
