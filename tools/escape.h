/* SPDX-License-Identifier: MIT
 *
 * escape.h -- how the cancel-token command writes token names: escaped for
 * its one-line, tab-separated plain output, or as JSON strings.
 */
#ifndef CT_TOOL_ESCAPE_H
#define CT_TOOL_ESCAPE_H

#include <stdio.h>

/* s on one line as one field: tab, newline, carriage return and backslash
 * as \t \n \r \\, other control bytes (and DEL) as \xHH. */
void put_plain(FILE *f, const char *s);

/* s as a JSON string, quotes included (RFC 8259). */
void put_json(FILE *f, const char *s);

#endif
