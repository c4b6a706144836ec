/* SPDX-License-Identifier: MIT
 *
 * text.c -- UTF-8 validation and error messages for every remote backend
 * (see text.h).
 */
#include "text.h"

#include <stdarg.h>
#include <stdio.h>

int ct_text_fail(char *err, size_t errlen, int rc, const char *fmt, ...) {
  if (err && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return rc;
}

bool ct_text_utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      if (c == 0)
        return false; /* names are C strings */
      i++;
      continue;
    }
    size_t k;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0)
      k = 1, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
      k = 2, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
      k = 3, cp = c & 0x07;
    else
      return false;
    if (n - i <= k) /* truncated sequence */
      return false;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xc0) != 0x80)
        return false;
      cp = cp << 6 | (s[i + j] & 0x3f);
    }
    if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
        (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += k + 1;
  }
  return true;
}
