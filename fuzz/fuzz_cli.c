/* SPDX-License-Identifier: MIT
 *
 * fuzz_cli.c -- the cancel-token command's option parser (tools/options.c,
 * opts_parse()) and its name escaping (tools/escape.c), fed arbitrary
 * argument vectors.  The input's first byte is the subcommand's `accepts`
 * mask (its low six bits, so every combination of OPT_* is reached); the
 * rest is split at NUL bytes into at most 255 arguments.  Checked, beyond
 * no crash, leak or undefined behaviour:
 *  - the result is 0, -1 (help), 1 (usage error) or 2 (out of memory);
 *  - on 0: every positional argument is one of the words given, in order;
 *    an option another subcommand takes was refused, so none is set unless
 *    accepted; the seconds are within 0 ..= 1e9 (NaN refused); at most 64
 *    uids; the command after "--" (only where accepted) is a tail of
 *    argv, possibly empty, ending in argv's NULL, or there is none;
 *  - a word escaped for the plain output has no control byte (so a name
 *    cannot break the one-line, tab-separated format), and as JSON it is
 *    one quoted string with no raw control byte inside.
 * The parser never reads a file: the secret is a separate step, not called
 * here.
 */
#include "escape.h"
#include "options.h"

#include "fuzz_check.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK FUZZ_CHECK
#define MAX_WORDS 255

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_escapes(const char *w) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  CHECK(f);
  put_plain(f, w);
  CHECK(fclose(f) == 0);
  for (size_t i = 0; i < len; i++)
    CHECK((unsigned char)buf[i] >= 0x20 && (unsigned char)buf[i] != 0x7f);
  /* every byte of the word is there, escaped or not: never shorter */
  CHECK(len >= strlen(w));
  free(buf);

  buf = NULL;
  f = open_memstream(&buf, &len);
  CHECK(f);
  put_json(f, w);
  CHECK(fclose(f) == 0);
  CHECK(len >= 2 && buf[0] == '"' && buf[len - 1] == '"');
  bool esc = false;
  for (size_t i = 1; i + 1 < len; i++) {
    unsigned char c = (unsigned char)buf[i];
    CHECK(c >= 0x20);
    if (esc)
      esc = false;
    else if (c == '\\')
      esc = true;
    else
      CHECK(c != '"'); /* a quote inside is escaped */
  }
  CHECK(!esc); /* the closing quote is not escaped */
  free(buf);
}

static bool in_range(double s) { return s >= 0 && s <= 1e9 && !isnan(s); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static FILE *devnull;
  if (!devnull) {
    devnull = fopen("/dev/null", "w");
    CHECK(devnull);
    opts_errors = devnull;
  }
  if (size == 0 || size > 8192)
    return 0;
  unsigned accepts = data[0] & 0x3f;
  /* the words, NUL-terminated, in one copy; argv NULL-terminated */
  char *text = malloc(size);
  char **argv = calloc(MAX_WORDS + 1, sizeof *argv);
  CHECK(text && argv);
  memcpy(text, data + 1, size - 1);
  text[size - 1] = '\0';
  int argc = 0;
  for (size_t i = 0; i < size - 1 && argc < MAX_WORDS;) {
    argv[argc++] = text + i;
    i += strlen(text + i) + 1;
  }
  for (int i = 0; i < argc; i++)
    check_escapes(argv[i]);

  struct opts o;
  memset(&o, 0, sizeof o);
  int r = opts_parse(&o, "sub", accepts, argc, argv);
  CHECK(r == 0 || r == -1 || r == 1 || r == 2);
  if (r == 0) {
    CHECK(o.npos >= 0 && o.npos <= argc);
    int last = -1;
    for (int k = 0; k < o.npos; k++) {
      int at = -1;
      for (int i = last + 1; i < argc && at < 0; i++)
        if (argv[i] == o.pos[k])
          at = i;
      CHECK(at > last); /* one of the words, after the previous one */
      last = at;
    }
    CHECK(in_range(o.timeout) && in_range(o.grace) &&
          in_range(o.connect_timeout));
    CHECK(!o.has_timeout || (accepts & OPT_TIMEOUT));
    CHECK(!o.secret_file || (accepts & OPT_SECRET));
    CHECK(o.nuids <= OPTS_MAX_UIDS);
    CHECK((!o.nuids && !o.any_uid) || (accepts & OPT_UIDS));
    CHECK(!o.json || (accepts & OPT_JSON));
    CHECK(o.secret_len == 0); /* nothing read */
    if (o.cmd) {
      CHECK(accepts & OPT_CMD);
      CHECK(o.cmd > argv && o.cmd <= argv + argc);
      CHECK(strcmp(o.cmd[-1], "--") == 0);
      CHECK(argv[argc] == NULL);
    }
  }
  opts_free(&o);
  CHECK(o.pos == NULL);
  free(argv);
  free(text);
  return 0;
}
