# SPDX-License-Identifier: MIT
# A triggered parent's children array detached by its trigger, mapped
# arrays, and the races of the detach against children leaving, the
# owner's unref and new children (test_token_detach.c), for issue 15
# (included by tests/CMakeLists.txt; run in every build).
ct_test(test_token_detach 300)
