# SPDX-License-Identifier: MIT
# Core tests of the token tree and callbacks added for issue 13 (included
# by tests/CMakeLists.txt; run in the plain, ASan+UBSan and TSan builds).
ct_test(test_order 120)
ct_test(test_args 60)
ct_test(test_names 600)
