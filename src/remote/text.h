/* SPDX-License-Identifier: MIT
 *
 * text.h -- the two text helpers every remote backend needs: checking that
 * a name is UTF-8, and writing an error message for the caller.  Shared by
 * the socket backend (this directory) and the ZooKeeper backend (src/zk/),
 * which compiles this file into its own library, as it does proxy.c and
 * address.c.  Pure functions: no allocation, no locks.
 */
#ifndef CT_REMOTE_TEXT_H
#define CT_REMOTE_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CT_TEXT_HIDDEN __attribute__((visibility("hidden")))

/* Is s[0..n) well-formed UTF-8 with no NUL byte (names are C strings)?
 * Overlong forms, surrogates and code points above U+10FFFF are not. */
CT_TEXT_HIDDEN bool ct_text_utf8_valid(const uint8_t *s, size_t n);

/* Format a message into err[0..errlen) (nothing when err is NULL or errlen
 * is 0; always NUL-terminated otherwise) and return rc, so that a caller
 * writes `return ct_text_fail(err, errlen, -EINVAL, "bad %s", x);`. */
CT_TEXT_HIDDEN int ct_text_fail(char *err, size_t errlen, int rc,
                                const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif /* CT_REMOTE_TEXT_H */
