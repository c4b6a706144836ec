/* SPDX-License-Identifier: MIT
 *
 * cancel_token.c -- the cancel-token command: serve named tokens at an
 * address, and trigger, wait for, inspect or run a command under a token
 * served by another process.  A thin application of canceltoken_net.h and
 * canceltoken_os.h (ct_run, ct_signal_hook); docs/net.md is its manual.
 *
 * Exit statuses (also in --help and docs/net.md):
 *   0   success; for wait: the token was triggered
 *   1   wait: the timeout passed first
 *   2   wait: the owner was lost (the server went away)
 *   3   error (cannot connect, no such token, refused, ...)
 *   64  usage error
 *   run: the command's own exit status, 128+N if signal N ended it, 125 for
 *        an error of cancel-token itself or a token triggered before the
 *        command could start, 126/127 if the command could not be run.
 *
 * The secret is read from --secret-file FILE or the environment variable
 * CANCEL_TOKEN_SECRET, never from an argument: arguments are visible to
 * every user through /proc/PID/cmdline and ps(1).
 */
#include "canceltoken.h"
#include "canceltoken_net.h"
#include "canceltoken_os.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { EX_TRIGGERED = 0, EX_TIMEOUT = 1, EX_LOST = 2, EX_ERROR = 3,
       EX_USAGEERR = 64, EX_RUN_ERROR = 125 };

#define SEC (INT64_C(1000000000))

static const char *prog = "cancel-token";

static const char usage_text[] =
    "usage: cancel-token COMMAND ADDRESS [ARGS...] [OPTIONS]\n"
    "\n"
    "Commands:\n"
    "  serve ADDRESS NAME...          hold tokens NAME... and serve them at\n"
    "                                 ADDRESS until SIGINT or SIGTERM\n"
    "  trigger ADDRESS NAME           trigger the token NAME served there\n"
    "  wait ADDRESS NAME [--timeout S]\n"
    "                                 wait until NAME is triggered\n"
    "  status ADDRESS [NAME]          show the served tokens (or one)\n"
    "  run ADDRESS NAME [--grace S] -- CMD [ARGS...]\n"
    "                                 run CMD; when NAME fires send it\n"
    "                                 SIGTERM, then SIGKILL after S seconds\n"
    "                                 (default 5)\n"
    "\n"
    "ADDRESS is a Unix socket path (anything with a '/'), or HOST:PORT for\n"
    "TCP ([::1]:PORT for IPv6; an empty HOST means 127.0.0.1).\n"
    "\n"
    "Options (every command):\n"
    "  --secret-file FILE   the shared secret (else $CANCEL_TOKEN_SECRET);\n"
    "                       a trailing newline is ignored.  Never given on\n"
    "                       the command line, where ps(1) would show it.\n"
    "  --connect-timeout S  give up connecting after S seconds (default 10)\n"
    "  --help               this text\n"
    "serve only:\n"
    "  --allow-uid UID      also accept Unix-socket peers of this uid\n"
    "                       (repeatable; the socket file is mode 0600, so\n"
    "                       change its mode or group as well)\n"
    "  --allow-any-uid      accept peers of any uid\n"
    "\n"
    "Exit status: 0 success (wait: triggered), 1 wait timed out, 2 owner\n"
    "lost, 3 error, 64 usage.  run exits with the command's status (128+N\n"
    "for signal N), 125 for its own errors, 126/127 if CMD cannot run.\n";

static int usage(const char *msg) {
  if (msg)
    fprintf(stderr, "%s: %s\n", prog, msg);
  fprintf(stderr, "Try '%s --help'.\n", prog);
  return EX_USAGEERR;
}

/* ---- options ---- */

struct opts {
  const char *secret_file;
  char secret[4096];
  size_t secret_len;
  double timeout, grace, connect_timeout;
  bool has_timeout;
  uid_t uids[64];
  size_t nuids;
  bool any_uid;
  char **pos; /* positional arguments */
  int npos;
  char **cmd; /* after "--" */
};

static bool parse_seconds(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || v < 0 || v > 1e9)
    return false;
  *out = v;
  return true;
}

static int64_t secs_ns(double s) { return (int64_t)(s * 1e9); }

static int load_secret(struct opts *o) {
  if (o->secret_file) {
    int fd = open(o->secret_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      fprintf(stderr, "%s: %s: %s\n", prog, o->secret_file, strerror(errno));
      return -1;
    }
    ssize_t n = read(fd, o->secret, sizeof o->secret);
    close(fd);
    if (n < 0 || (size_t)n == sizeof o->secret) {
      fprintf(stderr, "%s: %s: unreadable or longer than %zu bytes\n", prog,
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
      fprintf(stderr, "%s: CANCEL_TOKEN_SECRET is too long\n", prog);
      return -1;
    }
    memcpy(o->secret, env, o->secret_len);
  }
  while (o->secret_len &&
         (o->secret[o->secret_len - 1] == '\n' ||
          o->secret[o->secret_len - 1] == '\r'))
    o->secret_len--;
  if (!o->secret_len) {
    fprintf(stderr, "%s: the secret is empty\n", prog);
    return -1;
  }
  return 0;
}

/* Returns -1 after printing --help (exit 0), 1 on a usage error. */
static int parse(int argc, char **argv, struct opts *o) {
  o->grace = 5;
  o->connect_timeout = 10;
  o->pos = calloc((size_t)argc + 1, sizeof *o->pos);
  if (!o->pos)
    return 1;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--") == 0) {
      o->cmd = argv + i + 1;
      break;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage_text, stdout);
      return -1;
    } else if (strcmp(a, "--secret") == 0 || strncmp(a, "--secret=", 9) == 0) {
      usage("--secret is not accepted: the command line is public; use "
            "--secret-file FILE or CANCEL_TOKEN_SECRET");
      return 1;
    } else if (strcmp(a, "--secret-file") == 0 && v) {
      o->secret_file = v, i++;
    } else if (strcmp(a, "--timeout") == 0 && v) {
      if (!parse_seconds(v, &o->timeout))
        return usage("bad --timeout"), 1;
      o->has_timeout = true, i++;
    } else if (strcmp(a, "--grace") == 0 && v) {
      if (!parse_seconds(v, &o->grace))
        return usage("bad --grace"), 1;
      i++;
    } else if (strcmp(a, "--connect-timeout") == 0 && v) {
      if (!parse_seconds(v, &o->connect_timeout))
        return usage("bad --connect-timeout"), 1;
      i++;
    } else if (strcmp(a, "--allow-uid") == 0 && v) {
      char *end;
      long u = strtol(v, &end, 10);
      if (*end || u < 0 || o->nuids == 64)
        return usage("bad --allow-uid"), 1;
      o->uids[o->nuids++] = (uid_t)u, i++;
    } else if (strcmp(a, "--allow-any-uid") == 0) {
      o->any_uid = true;
    } else if (a[0] == '-' && a[1] == '-') {
      fprintf(stderr, "%s: unknown option or missing value: %s\n", prog, a);
      return usage(NULL), 1;
    } else {
      o->pos[o->npos++] = argv[i];
    }
  }
  return load_secret(o) < 0 ? 2 : 0;
}

/* ---- client commands ---- */

static int connect_client(const struct opts *o, const char *addr,
                          ct_net_client **c) {
  ct_net_client_options co = {.secret = o->secret_len ? o->secret : NULL,
                              .secret_len = o->secret_len};
  char err[256];
  int r = ct_net_client_connect(c, addr, &co, err, sizeof err,
                                ct_deadline_after(secs_ns(o->connect_timeout)));
  if (r < 0)
    fprintf(stderr, "%s: %s: %s\n", prog, addr, *err ? err : ct_strerror(r));
  return r;
}

static int get_proxy(const struct opts *o, ct_net_client *c, const char *name,
                     ct_token **p) {
  int r = ct_net_client_get(c, p, name,
                            ct_deadline_after(secs_ns(o->connect_timeout)));
  if (r == -ENOENT)
    fprintf(stderr, "%s: no token named '%s' is served there\n", prog, name);
  else if (r < 0)
    fprintf(stderr, "%s: %s: %s\n", prog, name, ct_strerror(r));
  return r;
}

static int cmd_trigger(struct opts *o) {
  if (o->npos != 2)
    return usage("trigger takes ADDRESS NAME");
  ct_net_client *c;
  ct_token *p;
  if (connect_client(o, o->pos[0], &c) < 0)
    return EX_ERROR;
  int rc = EX_ERROR;
  if (get_proxy(o, c, o->pos[1], &p) == 0) {
    int r = ct_net_client_trigger(
        c, p, CT_REASON_TRIGGER, 0,
        ct_deadline_after(secs_ns(o->connect_timeout)));
    if (r < 0)
      fprintf(stderr, "%s: trigger %s: %s\n", prog, o->pos[1], ct_strerror(r));
    else {
      printf("%s: %s\n", o->pos[1], r ? "triggered" : "already triggered");
      rc = 0;
    }
    ct_token_unref(p);
  }
  ct_net_client_free(c);
  return rc;
}

static int cmd_wait(struct opts *o) {
  if (o->npos != 2)
    return usage("wait takes ADDRESS NAME");
  int64_t deadline =
      o->has_timeout ? ct_deadline_after(secs_ns(o->timeout)) : CT_FOREVER;
  ct_net_client *c;
  ct_token *p;
  if (connect_client(o, o->pos[0], &c) < 0)
    return EX_ERROR;
  int rc = EX_ERROR;
  if (get_proxy(o, c, o->pos[1], &p) == 0) {
    int r = ct_token_wait(p, deadline);
    if (r == -ETIMEDOUT) {
      fprintf(stderr, "%s: %s: timed out\n", prog, o->pos[1]);
      rc = EX_TIMEOUT;
    } else {
      int detail = 0;
      ct_reason why = ct_token_reason(p, &detail);
      if (why == CT_REASON_OWNER_LOST) {
        fprintf(stderr, "%s: %s: owner lost (%s)\n", prog, o->pos[1],
                ct_strerror(ct_net_client_error(c)));
        rc = EX_LOST;
      } else {
        printf("%s: triggered by %s (%s)\n", o->pos[1],
               ct_token_name(ct_token_triggered_token(p)), ct_reason_name(why));
        rc = EX_TRIGGERED;
      }
    }
    ct_token_unref(p);
  }
  ct_net_client_free(c);
  return rc;
}

static void print_info(void *arg, const ct_net_token_info *i) {
  (void)arg;
  if (i->triggered)
    printf("%s\ttriggered\t%s\t%s\n", i->name, ct_reason_name(i->reason),
           i->cause);
  else
    printf("%s\tnot-triggered\n", i->name);
}

static int cmd_status(struct opts *o) {
  if (o->npos != 1 && o->npos != 2)
    return usage("status takes ADDRESS [NAME]");
  ct_net_client *c;
  if (connect_client(o, o->pos[0], &c) < 0)
    return EX_ERROR;
  int rc = EX_ERROR;
  if (o->npos == 2) {
    ct_token *p;
    if (get_proxy(o, c, o->pos[1], &p) == 0) {
      bool trig = ct_token_triggered(p);
      ct_net_token_info i = {
          .name = o->pos[1], .triggered = trig,
          .reason = ct_token_reason(p, NULL),
          .cause = trig ? ct_token_name(ct_token_triggered_token(p)) : ""};
      print_info(NULL, &i);
      ct_token_unref(p);
      rc = 0;
    }
  } else {
    int n = ct_net_client_list(c, print_info, NULL,
                               ct_deadline_after(secs_ns(o->connect_timeout)));
    if (n < 0)
      fprintf(stderr, "%s: status: %s\n", prog, ct_strerror(n));
    else
      rc = 0;
  }
  ct_net_client_free(c);
  return rc;
}

static int cmd_run(struct opts *o) {
  if (o->npos != 2 || !o->cmd || !o->cmd[0])
    return usage("run takes ADDRESS NAME [--grace S] -- CMD [ARGS...]");
  ct_net_client *c;
  ct_token *p, *sig = NULL, *both = NULL;
  if (connect_client(o, o->pos[0], &c) < 0)
    return EX_RUN_ERROR;
  if (get_proxy(o, c, o->pos[1], &p) < 0) {
    ct_net_client_free(c);
    return EX_RUN_ERROR;
  }
  /* SIGINT/SIGTERM to us stop the command the same way the token does. */
  ct_token_new(&sig, "signal");
  ct_token *parents[2] = {p, sig};
  int rc = EX_RUN_ERROR;
  if (!sig || ct_token_chain_n(&both, parents, 2) < 0) {
    fprintf(stderr, "%s: out of memory\n", prog);
    goto out;
  }
  ct_signal_hook(SIGINT, sig, 0);
  ct_signal_hook(SIGTERM, sig, 0);
  ct_run_result res;
  int r = ct_run(both, o->cmd, secs_ns(o->grace), &res, CT_FOREVER);
  ct_signal_unhook(SIGINT);
  ct_signal_unhook(SIGTERM);
  if (r == -ENOENT || r == -EACCES || r == -ENOEXEC) {
    fprintf(stderr, "%s: %s: %s\n", prog, o->cmd[0], strerror(-r));
    rc = r == -ENOENT ? 127 : 126;
  } else if (r < 0 && r != -ECANCELED) {
    fprintf(stderr, "%s: run: %s\n", prog, ct_strerror(r));
  } else if (res.outcome == CT_RUN_NOT_STARTED) {
    fprintf(stderr, "%s: %s was already triggered; not started\n", prog,
            o->pos[1]);
  } else {
    if (r == -ECANCELED)
      fprintf(stderr, "%s: %s fired (%s): %s the command\n", prog, o->pos[1],
              ct_reason_name(ct_token_reason(both, NULL)),
              res.outcome == CT_RUN_KILLED ? "killed" : "terminated");
    rc = res.signo ? 128 + res.signo : res.exit_code;
  }
  ct_token_unref(both);
out:
  ct_token_unref(sig);
  ct_token_unref(p);
  ct_net_client_free(c);
  return rc;
}

/* ---- serve ---- */

static int cmd_serve(struct opts *o) {
  if (o->npos < 2)
    return usage("serve takes ADDRESS NAME...");
  /* Block the stop signals before any thread exists; sigwait them below. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  ct_net_server_options so = {.secret = o->secret_len ? o->secret : NULL,
                              .secret_len = o->secret_len,
                              .allowed_uids = o->uids,
                              .n_allowed_uids = o->nuids,
                              .allow_any_uid = o->any_uid};
  ct_net_server *s;
  int r = ct_net_server_new(&s, o->pos[0], &so);
  if (r < 0) {
    fprintf(stderr, "%s: cannot serve at %s: %s\n", prog, o->pos[0],
            r == -EPERM ? "a non-loopback address needs a secret"
                        : ct_strerror(r));
    return EX_ERROR;
  }
  int n = o->npos - 1, rc = 0;
  ct_token **toks = calloc((size_t)n, sizeof *toks);
  for (int i = 0; toks && i < n && rc == 0; i++) {
    const char *name = o->pos[1 + i];
    if ((r = ct_token_new(&toks[i], name)) < 0 ||
        (r = ct_net_server_add(s, name, toks[i])) < 0) {
      fprintf(stderr, "%s: token '%s': %s\n", prog, name,
              r == -EEXIST ? "given twice" : ct_strerror(r));
      rc = EX_ERROR;
    }
  }
  if (!toks || (rc == 0 && (r = ct_net_server_start(s)) < 0)) {
    fprintf(stderr, "%s: cannot start: %s\n", prog, ct_strerror(r));
    rc = EX_ERROR;
  }
  if (rc == 0) {
    char addr[320];
    ct_net_server_address(s, addr, sizeof addr);
    printf("listening on %s\n", addr);
    fflush(stdout);
    int signo;
    sigwait(&set, &signo);
  }
  ct_net_server_free(s);
  for (int i = 0; toks && i < n; i++)
    ct_token_unref(toks[i]);
  free(toks);
  return rc;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2)
    return usage("missing command");
  const char *cmd = argv[1];
  struct opts o;
  memset(&o, 0, sizeof o);
  int pr = parse(argc - 2, argv + 2, &o);
  int rc;
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
      strcmp(cmd, "help") == 0) {
    fputs(usage_text, stdout);
    rc = 0;
  } else if (pr < 0) {
    rc = 0; /* --help was printed */
  } else if (pr == 1) {
    rc = EX_USAGEERR;
  } else if (pr == 2) {
    rc = strcmp(cmd, "run") == 0 ? EX_RUN_ERROR : EX_ERROR;
  } else if (strcmp(cmd, "serve") == 0) {
    rc = cmd_serve(&o);
  } else if (strcmp(cmd, "trigger") == 0) {
    rc = cmd_trigger(&o);
  } else if (strcmp(cmd, "wait") == 0) {
    rc = cmd_wait(&o);
  } else if (strcmp(cmd, "status") == 0) {
    rc = cmd_status(&o);
  } else if (strcmp(cmd, "run") == 0) {
    rc = cmd_run(&o);
  } else {
    fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
    rc = usage(NULL);
  }
  /* do not leave the secret in memory longer than needed */
  memset(o.secret, 0, sizeof o.secret);
  free(o.pos);
  return rc;
}
