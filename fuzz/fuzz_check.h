/* SPDX-License-Identifier: MIT
 *
 * fuzz_check.h -- the harnesses' one assertion: a broken expectation
 * prints where and aborts, which libFuzzer (and the replay) reports as a
 * crash.
 */
#ifndef CT_FUZZ_CHECK_H
#define CT_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                      \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,       \
              #cond);                                                         \
      abort();                                                                \
    }                                                                         \
  } while (0)

#endif
