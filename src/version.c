/* SPDX-License-Identifier: MIT
 *
 * version.c -- the runtime version query, ct_version() and
 * ct_version_string(), in the manner of libuv's uv_version().  Both are
 * computed from the CT_VERSION_* macros of canceltoken.h, which the build
 * checks against the VERSION file, so the loaded library reports the
 * version it was built as, whatever header its caller was compiled with.
 */
#include "internal.h"

#define CT_STR_(x) #x
#define CT_STR(x) CT_STR_(x)

unsigned int ct_version(void) { return CT_VERSION_HEX; }

const char *ct_version_string(void) {
  /* A string literal: static storage, nothing to free, no lock. */
  return CT_STR(CT_VERSION_MAJOR) "." CT_STR(CT_VERSION_MINOR) "." CT_STR(
      CT_VERSION_PATCH);
}
