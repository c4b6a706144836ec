/* SPDX-License-Identifier: MIT
 *
 * options.h -- the cancel-token command's option parser, apart from the
 * subcommands so that fuzz/fuzz_cli.c can drive it with any argument
 * vector.  Pure: it reads only its arguments (the secret, which reads a
 * file or the environment, is a separate step, opts_load_secret()), and
 * writes only the struct and, for a usage error, one message (on stderr,
 * or where opts_errors says).
 */
#ifndef CT_TOOL_OPTIONS_H
#define CT_TOOL_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define CT_TOOL_PROG "cancel-token"

enum { EX_TRIGGERED = 0, EX_TIMEOUT = 1, EX_LOST = 2, EX_ERROR = 3,
       EX_UNREACHABLE = 4, EX_USAGEERR = 64, EX_RUN_ERROR = 125 };

/* Which options a subcommand accepts (struct subcmd's `accepts`). */
enum {
  OPT_SECRET = 1 << 0,  /* --secret-file, --connect-timeout */
  OPT_TIMEOUT = 1 << 1, /* --timeout */
  OPT_GRACE = 1 << 2,   /* --grace */
  OPT_UIDS = 1 << 3,    /* --allow-uid, --allow-any-uid */
  OPT_JSON = 1 << 4,    /* --json */
  OPT_CMD = 1 << 5,     /* -- CMD ARGS... */
};

#define OPTS_MAX_UIDS 64

struct subcmd;
struct opts {
  const struct subcmd *sc; /* set by the caller; not read by the parser */
  const char *secret_file;
  char secret[4096];
  size_t secret_len;
  double timeout, grace, connect_timeout; /* seconds, 0 ..= 1e9 */
  bool has_timeout, json;
  uid_t uids[OPTS_MAX_UIDS];
  size_t nuids;
  bool any_uid;
  char **pos; /* positional arguments (pointers into argv), npos of them */
  int npos;
  char **cmd; /* after "--": a NULL-terminated tail of argv, or NULL */
};

/* Where the parser's messages go: stderr while NULL (the command never
 * changes it; the fuzzer points it at /dev/null). */
extern FILE *opts_errors;

/* Print "cancel-token: MSG" (if msg) and the "Try ... --help" line on
 * stderr; returns EX_USAGEERR. */
int usage(const char *sub, const char *msg);

/* Parse argv[0..argc) (the words after the subcommand `sub`, which
 * accepts the OPT_* bits in `accepts`) into *o, which the caller zeroed.
 * argv must be NULL-terminated (argv[argc] == NULL), as main()'s is: the
 * command after "--" is a tail of it.  Returns 0; -1 when --help or -h
 * came first among the options (the caller prints the help); 1 for a
 * usage error (printed); 2 when out of memory (printed).  On every return
 * o->pos may be allocated: opts_free() releases it. */
int opts_parse(struct opts *o, const char *sub, unsigned accepts, int argc,
               char **argv);

/* Read the secret named by --secret-file, else CANCEL_TOKEN_SECRET, into
 * o->secret (a trailing newline dropped).  0, or -1 with the reason
 * printed (unreadable, too long, empty). */
int opts_load_secret(struct opts *o);

/* Free o->pos and wipe the secret. */
void opts_free(struct opts *o);

/* Seconds to nanoseconds (the parser keeps s within 0 ..= 1e9). */
static inline int64_t secs_ns(double s) { return (int64_t)(s * 1e9); }

#endif
