# SPDX-License-Identifier: MIT
# The outside review's findings on the ZooKeeper backend, checked against
# the real ensemble (tests/zk/test_zk_review.c).  Registered exactly when
# tests/zk.cmake registers its own tests (its ct_zk_test() and the
# zk_ensemble fixture exist), on the same fixture and lock.
if(NOT COMMAND ct_zk_test OR NOT TEST zk_ensemble_start)
  return()
endif()
ct_zk_test(test_zk_review 150)
