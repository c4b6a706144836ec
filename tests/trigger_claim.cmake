# SPDX-License-Identifier: MIT
# The two ways a trigger claims the children of a parent's array (one pass,
# batches) over every mix, size and hole pattern (test_trigger_claim.c), for
# issue 15 (included by tests/CMakeLists.txt; run in every build).
ct_test(test_trigger_claim 300)
