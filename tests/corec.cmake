# SPDX-License-Identifier: MIT
# The per-thread cache of token blocks (src/token_cache.c, issue 15);
# included by tests/CMakeLists.txt, run in the plain, ASan+UBSan and TSan
# builds.
ct_test(test_cache 120)
