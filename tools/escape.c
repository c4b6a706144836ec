/* SPDX-License-Identifier: MIT
 *
 * escape.c -- token names in the cancel-token command's output (escape.h).
 * Names are any UTF-8, tabs and newlines included; the plain output is
 * one line per token with tab-separated fields, so a name must not bring
 * its own tabs or newlines into it.
 */
#include "escape.h"

/* A name in the plain, tab-separated output: one line, one field. */
void put_plain(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '\\')
      fputs("\\\\", f);
    else if (*p == '\t')
      fputs("\\t", f);
    else if (*p == '\n')
      fputs("\\n", f);
    else if (*p == '\r')
      fputs("\\r", f);
    else if (*p < 0x20 || *p == 0x7f)
      fprintf(f, "\\x%02x", *p);
    else
      fputc(*p, f);
  }
}

/* A JSON string, quotes included (RFC 8259).  Names are valid UTF-8 (the
 * library checks every name on both sides), so bytes >= 0x80 pass. */
void put_json(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"': fputs("\\\"", f); break;
    case '\\': fputs("\\\\", f); break;
    case '\b': fputs("\\b", f); break;
    case '\f': fputs("\\f", f); break;
    case '\n': fputs("\\n", f); break;
    case '\r': fputs("\\r", f); break;
    case '\t': fputs("\\t", f); break;
    default:
      if (*p < 0x20 || *p == 0x7f)
        fprintf(f, "\\u%04x", *p);
      else
        fputc(*p, f);
    }
  }
  fputc('"', f);
}
