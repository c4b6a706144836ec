/* SPDX-License-Identifier: MIT
 *
 * options.c -- the cancel-token command's options (options.h).
 *
 * Design notes
 *  - Each option is recognised once, by name, and checked against the
 *    subcommand's `accepts` bits before its value is looked at: an option
 *    of another subcommand is a usage error, never silently ignored.
 *  - Values are checked completely (strtod/strtol with the end pointer,
 *    ranges): "--timeout 5x", "--grace -1" and "--allow-uid 1e3" are
 *    errors.
 *  - The secret is never an argument (--secret and --secret=... are
 *    refused: /proc/PID/cmdline is public); reading it is a separate step
 *    so that the parser touches nothing but its arguments (fuzz_cli.c
 *    relies on that).
 */
#include "options.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

FILE *opts_errors;

static FILE *out(void) { return opts_errors ? opts_errors : stderr; }

int usage(const char *sub, const char *msg) {
  if (msg)
    fprintf(out(), "%s: %s\n", CT_TOOL_PROG, msg);
  fprintf(out(), "Try '%s %s%s--help'.\n", CT_TOOL_PROG, sub ? sub : "",
          sub ? " " : "");
  return EX_USAGEERR;
}

static bool parse_seconds(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  /* written so that NaN ("nan" parses) is refused too */
  if (errno || end == s || *end || !(v >= 0 && v <= 1e9))
    return false;
  *out = v;
  return true;
}

int opts_load_secret(struct opts *o) {
  if (o->secret_file) {
    int fd = open(o->secret_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      fprintf(out(), "%s: %s: %s\n", CT_TOOL_PROG, o->secret_file, strerror(errno));
      return -1;
    }
    ssize_t n = read(fd, o->secret, sizeof o->secret);
    close(fd);
    if (n < 0 || (size_t)n == sizeof o->secret) {
      fprintf(out(), "%s: %s: unreadable or longer than %zu bytes\n", CT_TOOL_PROG,
              o->secret_file, sizeof o->secret - 1);
      return -1;
    }
    o->secret_len = (size_t)n;
  } else {
    const char *env = getenv("CANCEL_TOKEN_SECRET");
    if (!env || !*env)
      return 0;
    o->secret_len = strlen(env);
    if (o->secret_len >= sizeof o->secret) {
      fprintf(out(), "%s: CANCEL_TOKEN_SECRET is too long\n", CT_TOOL_PROG);
      return -1;
    }
    memcpy(o->secret, env, o->secret_len);
  }
  while (o->secret_len &&
         (o->secret[o->secret_len - 1] == '\n' ||
          o->secret[o->secret_len - 1] == '\r'))
    o->secret_len--;
  if (!o->secret_len) {
    fprintf(out(), "%s: the secret is empty\n", CT_TOOL_PROG);
    return -1;
  }
  return 0;
}

int opts_parse(struct opts *o, const char *sub, unsigned accepts, int argc,
               char **argv) {
  o->grace = 5;
  o->connect_timeout = 10;
  o->pos = calloc((size_t)argc + 1, sizeof *o->pos);
  if (!o->pos) {
    fprintf(out(), "%s: out of memory\n", CT_TOOL_PROG);
    return 2;
  }
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    unsigned need = 0;
    if (strcmp(a, "--") == 0)
      need = OPT_CMD;
    else if (strcmp(a, "--secret-file") == 0 ||
             strcmp(a, "--connect-timeout") == 0)
      need = OPT_SECRET;
    else if (strcmp(a, "--timeout") == 0)
      need = OPT_TIMEOUT;
    else if (strcmp(a, "--grace") == 0)
      need = OPT_GRACE;
    else if (strcmp(a, "--allow-uid") == 0 || strcmp(a, "--allow-any-uid") == 0)
      need = OPT_UIDS;
    else if (strcmp(a, "--json") == 0)
      need = OPT_JSON;
    if (need && !(accepts & need)) {
      fprintf(out(), "%s: %s does not take %s\n", CT_TOOL_PROG, sub, a);
      return usage(sub, NULL), 1;
    }
    bool has_value = need && need != OPT_CMD && need != OPT_JSON &&
                     strcmp(a, "--allow-any-uid") != 0;
    if (has_value && !v) {
      fprintf(out(), "%s: %s needs a value\n", CT_TOOL_PROG, a);
      return usage(sub, NULL), 1;
    }
    if (need == OPT_CMD) {
      o->cmd = argv + i + 1;
      break;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      return -1;
    } else if (strcmp(a, "--secret") == 0 || strncmp(a, "--secret=", 9) == 0) {
      usage(sub, "--secret is not accepted: the command line is public; use "
                 "--secret-file FILE or CANCEL_TOKEN_SECRET");
      return 1;
    } else if (strcmp(a, "--secret-file") == 0) {
      o->secret_file = v, i++;
    } else if (strcmp(a, "--timeout") == 0) {
      if (!parse_seconds(v, &o->timeout))
        return usage(sub, "bad --timeout"), 1;
      o->has_timeout = true, i++;
    } else if (strcmp(a, "--grace") == 0) {
      if (!parse_seconds(v, &o->grace))
        return usage(sub, "bad --grace"), 1;
      i++;
    } else if (strcmp(a, "--connect-timeout") == 0) {
      if (!parse_seconds(v, &o->connect_timeout))
        return usage(sub, "bad --connect-timeout"), 1;
      i++;
    } else if (strcmp(a, "--allow-uid") == 0) {
      char *end;
      errno = 0;
      long u = strtol(v, &end, 10);
      if (errno || end == v || *end || u < 0 || o->nuids == OPTS_MAX_UIDS)
        return usage(sub, "bad --allow-uid"), 1;
      o->uids[o->nuids++] = (uid_t)u, i++;
    } else if (strcmp(a, "--allow-any-uid") == 0) {
      o->any_uid = true;
    } else if (strcmp(a, "--json") == 0) {
      o->json = true;
    } else if (a[0] == '-' && a[1] == '-') {
      fprintf(out(), "%s: unknown option: %s\n", CT_TOOL_PROG, a);
      return usage(sub, NULL), 1;
    } else {
      o->pos[o->npos++] = argv[i];
    }
  }
  return 0;
}

void opts_free(struct opts *o) {
  /* do not leave the secret in memory longer than needed */
  memset(o->secret, 0, sizeof o->secret);
  o->secret_len = 0;
  free(o->pos);
  o->pos = NULL;
  o->npos = 0;
}
