/* SPDX-License-Identifier: MIT
 *
 * cancel_token.c -- the cancel-token command: serve named tokens at an
 * address, and trigger, wait for, inspect or run a command under a token
 * served by another process.  A thin application of the public API
 * (canceltoken_net.h through backend.h, canceltoken_os.h for ct_run and
 * ct_signal_hook); its manual is docs/man/cancel-token.1.scd, with more in
 * docs/net.md.
 *
 * Exit statuses (also in --help and the man page):
 *   0   success; for wait: the token was triggered
 *   1   wait: the timeout passed first
 *   2   wait: the owner was lost (the server went away or was shut down)
 *   3   error (cannot connect, no such token, refused, ...)
 *   4   wait: the backend could not be reached for longer than allowed
 *       (CT_REASON_UNREACHABLE: a proxy cut off from a ZooKeeper quorum)
 *   64  usage error
 *   run: the command's own exit status, 128+N if signal N ended it, 125 for
 *        an error of cancel-token itself or a token triggered before the
 *        command could start, 126/127 if the command could not be run.
 *
 * The secret is read from --secret-file FILE or the environment variable
 * CANCEL_TOKEN_SECRET, never from an argument: arguments are visible to
 * every user through /proc/PID/cmdline and ps(1).
 *
 * Design notes
 *  - One table, `subcmds`, gives each subcommand its synopsis, its help
 *    and the options it accepts; "cancel-token SUB --help" prints that
 *    entry only, and an option another subcommand takes is a usage error
 *    here (64) rather than silently ignored.
 *  - Every address goes through backend_for() (one function): the command
 *    never parses addresses itself, and a second kind of address is one
 *    more backend (backend.h).
 *  - Token names are any UTF-8, tabs and newlines included.  The plain
 *    output is one line per token with tab-separated fields, so names are
 *    escaped there (\t, \n, \\, \xHH for other control bytes); --json
 *    prints proper JSON strings instead.
 */
#include "backend.h"
#include "canceltoken.h"
#include "escape.h"
#include "options.h"
#include "canceltoken_os.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define SEC (INT64_C(1000000000))

static const char *prog = CT_TOOL_PROG;

/* ---- the subcommands and their options ---- */

struct subcmd {
  const char *name;
  const char *synopsis; /* after "cancel-token " */
  const char *about;    /* what it does, and its own options */
  unsigned accepts;     /* OPT_* */
  int (*run)(struct opts *);
};

static const char common_help[] =
    "ADDRESS is a Unix socket path (anything with a '/'), or HOST:PORT for\n"
    "TCP ([::1]:PORT for IPv6; an empty HOST means 127.0.0.1).\n"
    "\n"
    "Common options:\n"
    "  --secret-file FILE   the shared secret (else $CANCEL_TOKEN_SECRET);\n"
    "                       a trailing newline is ignored.  Never given on\n"
    "                       the command line, where ps(1) would show it.\n"
    "  --connect-timeout S  give up connecting after S seconds (default 10)\n"
    "  --help               this text\n";

static int cmd_serve(struct opts *o);
static int cmd_trigger(struct opts *o);
static int cmd_wait(struct opts *o);
static int cmd_status(struct opts *o);
static int cmd_run(struct opts *o);

static const struct subcmd subcmds[] = {
    {"serve", "serve ADDRESS NAME... [OPTIONS]",
     "Create the tokens NAME... and serve them at ADDRESS until SIGINT,\n"
     "SIGTERM or SIGHUP.  Prints \"listening on ADDRESS\" (with the real\n"
     "port for port 0) once clients can connect.\n"
     "\n"
     "Options:\n"
     "  --allow-uid UID      also accept Unix-socket peers of this uid\n"
     "                       (repeatable; the socket file is mode 0600, so\n"
     "                       change its mode or group as well)\n"
     "  --allow-any-uid      accept peers of any uid\n"
     "\n"
     "Exit status: 0 after a stop signal, 3 error, 64 usage.\n",
     OPT_SECRET | OPT_UIDS, cmd_serve},
    {"trigger", "trigger ADDRESS NAME [OPTIONS]",
     "Trigger the token NAME served at ADDRESS.  Prints \"NAME: triggered\"\n"
     "or \"NAME: already triggered\".\n"
     "\n"
     "Exit status: 0 done (either way), 3 error, 64 usage.\n",
     OPT_SECRET, cmd_trigger},
    {"wait", "wait ADDRESS NAME [--timeout S] [--json] [OPTIONS]",
     "Wait until the token NAME served at ADDRESS is triggered.  Prints\n"
     "\"NAME: triggered by CAUSE (REASON)\".\n"
     "\n"
     "Options:\n"
     "  --timeout S          give up after S seconds (default: never)\n"
     "  --json               print one JSON object on standard output:\n"
     "                       {\"name\", \"outcome\" (\"triggered\", \"timeout\",\n"
     "                       \"owner-lost\", \"unreachable\"), \"reason\",\n"
     "                       \"detail\", \"cause\", \"error\" (owner-lost only)}\n"
     "\n"
     "Exit status: 0 triggered, 1 timed out, 2 owner lost (the server went\n"
     "away or shut down), 3 error, 4 backend unreachable, 64 usage.\n",
     OPT_SECRET | OPT_TIMEOUT | OPT_JSON, cmd_wait},
    {"status", "status ADDRESS [NAME] [--json] [OPTIONS]",
     "Show every token served at ADDRESS (or only NAME), one line each:\n"
     "NAME<tab>not-triggered, or NAME<tab>triggered<tab>REASON<tab>CAUSE.\n"
     "Tabs, newlines, backslashes and other control characters in names\n"
     "are written \\t, \\n, \\\\ and \\xHH.\n"
     "\n"
     "Options:\n"
     "  --json               print one JSON object instead:\n"
     "                       {\"tokens\": [{\"name\", \"triggered\", \"reason\",\n"
     "                       \"detail\", \"cause\"}, ...]}\n"
     "\n"
     "Exit status: 0 success, 3 error, 64 usage.\n",
     OPT_SECRET | OPT_JSON, cmd_status},
    {"run", "run ADDRESS NAME [--grace S] -- CMD [ARGS...]",
     "Run CMD; when the token NAME fires (or cancel-token gets SIGINT or\n"
     "SIGTERM), send CMD SIGTERM, then SIGKILL after the grace period.\n"
     "\n"
     "Options:\n"
     "  --grace S            seconds between SIGTERM and SIGKILL (default 5)\n"
     "\n"
     "Exit status: the command's (128+N for signal N), 125 for an error of\n"
     "cancel-token itself or a token already triggered, 126/127 if CMD\n"
     "cannot run, 64 usage.\n",
     OPT_SECRET | OPT_GRACE | OPT_CMD, cmd_run},
};
#define N_SUBCMDS (sizeof subcmds / sizeof subcmds[0])

static const struct subcmd *find_subcmd(const char *name) {
  for (size_t i = 0; i < N_SUBCMDS; i++)
    if (strcmp(subcmds[i].name, name) == 0)
      return &subcmds[i];
  return NULL;
}

static void print_global_help(FILE *f) {
  fputs("usage: cancel-token COMMAND ADDRESS [ARGS...] [OPTIONS]\n"
        "       cancel-token COMMAND --help | --help | --version\n"
        "\n"
        "Commands:\n",
        f);
  for (size_t i = 0; i < N_SUBCMDS; i++)
    fprintf(f, "  %s\n", subcmds[i].synopsis);
  fputs("\n", f);
  fputs(common_help, f);
  fputs("  --version            print the version and exit\n"
        "\n"
        "Exit status: 0 success (wait: triggered), 1 wait timed out, 2 owner\n"
        "lost, 3 error, 4 wait: backend unreachable, 64 usage.  run exits\n"
        "with the command's status (128+N for signal N), 125 for its own\n"
        "errors, 126/127 if CMD cannot run.\n"
        "'cancel-token COMMAND --help' describes one command.\n",
        f);
}

static void print_subcmd_help(const struct subcmd *sc) {
  printf("usage: cancel-token %s\n\n%s\n%s", sc->synopsis, sc->about,
         common_help);
}

static void print_version(void) {
  /* The header this was compiled with and the library actually loaded. */
  printf("cancel-token %d.%d.%d (libcanceltoken %s)\n", CT_VERSION_MAJOR,
         CT_VERSION_MINOR, CT_VERSION_PATCH, ct_version_string());
}

/* ---- the remote: the one place an address is looked at ---- */

struct remote {
  const ct_tool_backend *be;
  void *conn;
};

/* The backend that serves ADDRESS, by the library's one address parser
 * (ct_net_address_kind): zk:// addresses go to the ZooKeeper backend when
 * it is compiled in, Unix paths and HOST:PORT to the token server.  A
 * malformed address is reported here, with the parser's reason. */
static const ct_tool_backend *backend_for(const char *addr) {
  char err[256] = "";
  int kind = ct_net_address_kind(addr, err, sizeof err);
  if (kind < 0) { /* the reason names the address */
    if (*err)
      fprintf(stderr, "%s: %s\n", prog, err);
    else
      fprintf(stderr, "%s: %s: %s\n", prog, addr, ct_strerror(kind));
    return NULL;
  }
  if (kind == CT_NET_ADDRESS_ZK) {
#ifdef CT_TOOL_HAVE_ZK
    return &ct_tool_zk_backend;
#else
    fprintf(stderr,
            "%s: %s: zk:// addresses need a build with the ZooKeeper "
            "backend (libzookeeper-mt-dev, CT_WITH_ZK)\n",
            prog, addr);
    return NULL;
#endif
  }
  return &ct_tool_net_backend;
}

static int remote_open(const struct opts *o, const char *addr,
                       struct remote *rm) {
  rm->conn = NULL;
  rm->be = backend_for(addr);
  if (!rm->be)
    return -EINVAL;
  char err[256] = "";
  int r = rm->be->connect(&rm->conn, addr, o->secret_len ? o->secret : NULL,
                          o->secret_len, err, sizeof err,
                          ct_deadline_after(secs_ns(o->connect_timeout)));
  if (r < 0) {
    fprintf(stderr, "%s: %s: %s\n", prog, addr, *err ? err : ct_strerror(r));
    rm->conn = NULL;
  }
  return r;
}

static void remote_close(struct remote *rm) {
  if (rm->conn)
    rm->be->disconnect(rm->conn);
  rm->conn = NULL;
}

static int remote_get(const struct opts *o, struct remote *rm,
                      const char *name, ct_token **p) {
  int r = rm->be->get(rm->conn, p, name,
                      ct_deadline_after(secs_ns(o->connect_timeout)));
  if (r < 0) {
    fprintf(stderr, "%s: ", prog);
    if (r == -ENOENT) {
      fputs("no token named '", stderr);
      put_plain(stderr, name);
      fputs("' is served there\n", stderr);
    } else {
      put_plain(stderr, name);
      fprintf(stderr, ": %s\n", ct_strerror(r));
    }
  }
  return r;
}

/* ---- client commands ---- */

static int cmd_trigger(struct opts *o) {
  if (o->npos != 2)
    return usage("trigger", "trigger takes ADDRESS NAME");
  struct remote rm;
  ct_token *p;
  if (remote_open(o, o->pos[0], &rm) < 0)
    return EX_ERROR;
  int rc = EX_ERROR;
  if (remote_get(o, &rm, o->pos[1], &p) == 0) {
    int r = rm.be->trigger(rm.conn, p,
                           ct_deadline_after(secs_ns(o->connect_timeout)));
    if (r < 0) {
      fprintf(stderr, "%s: trigger ", prog);
      put_plain(stderr, o->pos[1]);
      fprintf(stderr, ": %s\n", ct_strerror(r));
    } else {
      put_plain(stdout, o->pos[1]);
      printf(": %s\n", r ? "triggered" : "already triggered");
      rc = 0;
    }
    ct_token_unref(p);
  }
  remote_close(&rm);
  return rc;
}

/* How a wait ended, for both outputs: the owner gone (crashed or stopped
 * in order) is 2; the backend out of reach (the owner may be fine) is 4. */
static bool lost_reason(ct_reason why) {
  return why == CT_REASON_OWNER_LOST || why == CT_REASON_SHUTDOWN;
}

static int cmd_wait(struct opts *o) {
  if (o->npos != 2)
    return usage("wait", "wait takes ADDRESS NAME");
  int64_t deadline =
      o->has_timeout ? ct_deadline_after(secs_ns(o->timeout)) : CT_FOREVER;
  struct remote rm;
  ct_token *p;
  if (remote_open(o, o->pos[0], &rm) < 0)
    return EX_ERROR;
  int rc = EX_ERROR;
  const char *name = o->pos[1];
  if (remote_get(o, &rm, name, &p) == 0) {
    int r = ct_token_wait(p, deadline);
    int detail = 0;
    ct_reason why = r == 0 ? ct_token_reason(p, &detail) : CT_REASON_NONE;
    const char *cause =
        r == 0 ? ct_token_name(ct_token_triggered_token(p)) : "";
    const char *outcome;
    int lost_err = 0;
    if (r == -ETIMEDOUT) {
      outcome = "timeout", rc = EX_TIMEOUT;
    } else if (r < 0) {
      outcome = NULL; /* an error of the wait itself */
      fprintf(stderr, "%s: wait: %s\n", prog, ct_strerror(r));
    } else if (lost_reason(why)) {
      outcome = "owner-lost", rc = EX_LOST;
      lost_err = rm.be->error(rm.conn);
    } else if (why == CT_REASON_UNREACHABLE) {
      outcome = "unreachable", rc = EX_UNREACHABLE;
    } else {
      outcome = "triggered", rc = EX_TRIGGERED;
    }
    if (outcome && o->json) {
      fputs("{\"name\": ", stdout);
      put_json(stdout, name);
      printf(", \"outcome\": \"%s\", \"reason\": \"%s\", \"detail\": %d, "
             "\"cause\": ",
             outcome, ct_reason_name(why), detail);
      put_json(stdout, cause);
      if (rc == EX_LOST) {
        fputs(", \"error\": ", stdout);
        put_json(stdout, lost_err ? ct_strerror(lost_err) : "");
      }
      fputs("}\n", stdout);
    } else if (rc == EX_TIMEOUT) {
      fprintf(stderr, "%s: ", prog);
      put_plain(stderr, name);
      fputs(": timed out\n", stderr);
    } else if (rc == EX_LOST) {
      fprintf(stderr, "%s: ", prog);
      put_plain(stderr, name);
      if (why == CT_REASON_SHUTDOWN)
        fputs(": owner lost (the server shut down)\n", stderr);
      else
        fprintf(stderr, ": owner lost (%s)\n",
                lost_err ? ct_strerror(lost_err) : ct_reason_name(why));
    } else if (rc == EX_UNREACHABLE) {
      fprintf(stderr, "%s: ", prog);
      put_plain(stderr, name);
      fputs(": the backend was unreachable for too long\n", stderr);
    } else if (rc == EX_TRIGGERED) {
      put_plain(stdout, name);
      fputs(": triggered by ", stdout);
      put_plain(stdout, cause);
      printf(" (%s)\n", ct_reason_name(why));
    }
    ct_token_unref(p);
  }
  remote_close(&rm);
  return rc;
}

struct listing {
  bool json;
  int n;
};

static void print_info(void *arg, const ct_net_token_info *i) {
  struct listing *l = arg;
  if (l->json) {
    fputs(l->n ? ",\n  {\"name\": " : "\n  {\"name\": ", stdout);
    put_json(stdout, i->name);
    printf(", \"triggered\": %s, \"reason\": \"%s\", \"detail\": %d, "
           "\"cause\": ",
           i->triggered ? "true" : "false",
           ct_reason_name(i->triggered ? i->reason : CT_REASON_NONE),
           i->triggered ? i->detail : 0);
    put_json(stdout, i->triggered ? i->cause : "");
    fputs("}", stdout);
  } else {
    put_plain(stdout, i->name);
    if (i->triggered) {
      printf("\ttriggered\t%s\t", ct_reason_name(i->reason));
      put_plain(stdout, i->cause);
      fputs("\n", stdout);
    } else {
      fputs("\tnot-triggered\n", stdout);
    }
  }
  l->n++;
}

static int cmd_status(struct opts *o) {
  if (o->npos != 1 && o->npos != 2)
    return usage("status", "status takes ADDRESS [NAME]");
  struct remote rm;
  if (remote_open(o, o->pos[0], &rm) < 0)
    return EX_ERROR;
  int rc = EX_ERROR;
  struct listing l = {.json = o->json};
  if (o->npos == 2) {
    ct_token *p;
    if (remote_get(o, &rm, o->pos[1], &p) == 0) {
      bool trig = ct_token_triggered(p);
      int detail = 0;
      ct_net_token_info i = {
          .name = o->pos[1], .triggered = trig,
          .reason = ct_token_reason(p, &detail), .detail = detail,
          .cause = trig ? ct_token_name(ct_token_triggered_token(p)) : ""};
      if (o->json)
        fputs("{\"tokens\": [", stdout);
      print_info(&l, &i);
      ct_token_unref(p);
      rc = 0;
    }
  } else {
    if (o->json)
      fputs("{\"tokens\": [", stdout);
    int n = rm.be->list(rm.conn, print_info, &l,
                        ct_deadline_after(secs_ns(o->connect_timeout)));
    if (n < 0)
      fprintf(stderr, "%s: status: %s\n", prog, ct_strerror(n));
    else
      rc = 0;
  }
  /* A started JSON document is always closed, even after an error, so a
   * reader never sees half an object; the exit status tells the error. */
  if (o->json && (rc == 0 || o->npos == 1))
    fputs(l.n ? "\n]}\n" : "]}\n", stdout);
  remote_close(&rm);
  return rc;
}

static int cmd_run(struct opts *o) {
  if (o->npos != 2 || !o->cmd || !o->cmd[0])
    return usage("run", "run takes ADDRESS NAME [--grace S] -- CMD [ARGS...]");
  struct remote rm;
  ct_token *p, *sig = NULL, *both = NULL;
  if (remote_open(o, o->pos[0], &rm) < 0)
    return EX_RUN_ERROR;
  if (remote_get(o, &rm, o->pos[1], &p) < 0) {
    remote_close(&rm);
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
  memset(&res, 0, sizeof res);
  int r = ct_run(both, o->cmd, secs_ns(o->grace), &res, CT_FOREVER);
  ct_signal_unhook(SIGINT);
  ct_signal_unhook(SIGTERM);
  if (r == -ENOENT || r == -EACCES || r == -ENOEXEC) {
    fprintf(stderr, "%s: %s: %s\n", prog, o->cmd[0], strerror(-r));
    rc = r == -ENOENT ? 127 : 126;
  } else if (r < 0 && r != -ECANCELED) {
    fprintf(stderr, "%s: run: %s\n", prog, ct_strerror(r));
  } else if (res.outcome == CT_RUN_NOT_STARTED) {
    fprintf(stderr, "%s: ", prog);
    put_plain(stderr, o->pos[1]);
    fputs(" was already triggered; not started\n", stderr);
  } else {
    if (r == -ECANCELED) {
      fprintf(stderr, "%s: ", prog);
      put_plain(stderr, o->pos[1]);
      fprintf(stderr, " fired (%s): %s the command\n",
              ct_reason_name(ct_token_reason(both, NULL)),
              res.outcome == CT_RUN_KILLED ? "killed" : "terminated");
    }
    rc = res.signo ? 128 + res.signo : res.exit_code;
  }
  ct_token_unref(both);
out:
  ct_token_unref(sig);
  ct_token_unref(p);
  remote_close(&rm);
  return rc;
}

/* ---- serve ---- */

static int cmd_serve(struct opts *o) {
  if (o->npos < 2)
    return usage("serve", "serve takes ADDRESS NAME...");
  const ct_tool_backend *be = backend_for(o->pos[0]);
  if (!be)
    return EX_ERROR;
  if (!be->serve_new) {
    fprintf(stderr, "%s: %s: the %s backend cannot serve tokens\n", prog,
            o->pos[0], be->name);
    return EX_ERROR;
  }
  /* Block the stop signals before any thread exists; sigwait them below. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  ct_tool_serve_opts so = {.secret = o->secret_len ? o->secret : NULL,
                           .secret_len = o->secret_len,
                           .allowed_uids = o->uids,
                           .n_allowed_uids = o->nuids,
                           .allow_any_uid = o->any_uid};
  void *s = NULL;
  char err[256] = "";
  int r = be->serve_new(&s, o->pos[0], &so, err, sizeof err);
  if (r < 0) {
    fprintf(stderr, "%s: cannot serve at %s: %s\n", prog, o->pos[0],
            *err ? err : ct_strerror(r));
    return EX_ERROR;
  }
  int n = o->npos - 1, rc = 0;
  ct_token **toks = calloc((size_t)n, sizeof *toks);
  /* A name given twice on the command line is the user's slip and is said
   * so; -EEXIST from the backend then means the name is taken elsewhere
   * (in a ZooKeeper ensemble: by an earlier owner, since names are
   * one-shot there), which the backend explains. */
  for (int i = 0; i < n && rc == 0; i++)
    for (int j = 0; j < i && rc == 0; j++)
      if (strcmp(o->pos[1 + i], o->pos[1 + j]) == 0) {
        fprintf(stderr, "%s: token '", prog);
        put_plain(stderr, o->pos[1 + i]);
        fprintf(stderr, "': given twice\n");
        rc = EX_ERROR;
      }
  for (int i = 0; toks && i < n && rc == 0; i++) {
    const char *name = o->pos[1 + i];
    if ((r = ct_token_new(&toks[i], name)) < 0 ||
        (r = be->serve_add(s, name, toks[i])) < 0) {
      fprintf(stderr, "%s: token '", prog);
      put_plain(stderr, name);
      fprintf(stderr, "': %s\n",
              r == -EEXIST ? "exists already" : ct_strerror(r));
      rc = EX_ERROR;
    }
  }
  char addr[320] = "";
  if (!toks) {
    fprintf(stderr, "%s: out of memory\n", prog);
    rc = EX_ERROR;
  } else if (rc == 0 && (r = be->serve_start(s, addr, sizeof addr)) < 0) {
    fprintf(stderr, "%s: cannot start: %s\n", prog, ct_strerror(r));
    rc = EX_ERROR;
  }
  if (rc == 0) {
    printf("listening on %s\n", addr);
    fflush(stdout);
    int signo;
    sigwait(&set, &signo);
  }
  be->serve_free(s);
  for (int i = 0; toks && i < n; i++)
    ct_token_unref(toks[i]);
  free(toks);
  return rc;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2)
    return usage(NULL, "missing command");
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    print_global_help(stdout);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
    print_version();
    return 0;
  }
  if (strcmp(cmd, "help") == 0) { /* "help" or "help COMMAND" */
    const struct subcmd *sc = argc > 2 ? find_subcmd(argv[2]) : NULL;
    if (argc > 2 && !sc) {
      fprintf(stderr, "%s: unknown command '%s'\n", prog, argv[2]);
      return usage(NULL, NULL);
    }
    if (sc)
      print_subcmd_help(sc);
    else
      print_global_help(stdout);
    return 0;
  }
  const struct subcmd *sc = find_subcmd(cmd);
  if (!sc) {
    fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
    return usage(NULL, NULL);
  }
  struct opts o;
  memset(&o, 0, sizeof o);
  o.sc = sc;
  int pr = opts_parse(&o, sc->name, sc->accepts, argc - 2, argv + 2);
  if (pr == 0 && opts_load_secret(&o) < 0)
    pr = 2;
  int rc;
  if (pr < 0) {
    print_subcmd_help(sc);
    rc = 0;
  } else if (pr == 1) {
    rc = EX_USAGEERR;
  } else if (pr == 2) {
    rc = sc->run == cmd_run ? EX_RUN_ERROR : EX_ERROR;
  } else {
    rc = sc->run(&o);
  }
  opts_free(&o);
  fflush(stdout);
  return rc;
}
