# SPDX-License-Identifier: MIT
# A parent kept alive by its children only, the orphan handshake of
# src/token.c and its races (test_token_orphan.c), for issue 15 (included
# by tests/CMakeLists.txt; run in every build).
ct_test(test_token_orphan 300)
