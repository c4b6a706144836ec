# SPDX-License-Identifier: MIT
# The parent's children array (holes, compaction, removal across threads)
# for issue 15 (included by tests/CMakeLists.txt; run in every build).
ct_test(test_children 300)
