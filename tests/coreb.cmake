# SPDX-License-Identifier: MIT
# Tests added for issue 13 (hardening) in the OS/wait/error layer, beside
# those in test_wait, test_deadline, test_async, test_signal and
# test_process: the error table at the edges of int.
ct_test(test_errors 30)
