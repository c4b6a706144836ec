/* SPDX-License-Identifier: MIT
 *
 * net_peer.c -- a helper program the token-server tests run as a separate
 * process (fork/exec), so that servers and clients talk over real sockets
 * between real processes, and so that one can be killed with SIGKILL.
 *
 *   net_peer serve ADDRESS [--secret S] [--max-fds N] NAME...
 *       serve tokens NAME...; prints "ADDR <address>", then reads commands
 *       on stdin: "trigger NAME" (prints "ok"); EOF ends it.
 *   net_peer wait ADDRESS NAME [--secret S]
 *       prints "ready" once it holds the proxy, then "triggered <reason>
 *       <cause>" when it fires; exits 0, or 4 if the reason is OWNER_LOST.
 *   net_peer trigger ADDRESS NAME [--secret S]
 *       prints "result <n>" (1 triggered, 0 already).
 *   net_peer connect ADDRESS [--secret S]
 *       prints "connected" or "error <ENAME> <message>".
 * Errors print "error <ENAME> <message>" and exit 1.
 */
#include "canceltoken_net.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char *secret;
static long max_fds;

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

static int fail(int r, const char *msg) {
  const char *name = strerrorname_np(-r); /* EPERM, EACCES, ... */
  out("error %s %s", name ? name : ct_err_name(r),
      msg && *msg ? msg : ct_strerror(r));
  return 1;
}

static int connect_to(ct_net_client **c, const char *addr) {
  ct_net_client_options o = {0};
  if (secret) {
    o.secret = secret;
    o.secret_len = strlen(secret);
  }
  char err[256];
  int r = ct_net_client_connect(c, addr, &o, err, sizeof err,
                                ct_deadline_after(INT64_C(30000000000)));
  if (r < 0)
    fail(r, err);
  return r;
}

static int do_serve(const char *addr, char **names, int n) {
  if (max_fds) {
    struct rlimit rl = {(rlim_t)max_fds, (rlim_t)max_fds};
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  ct_net_server_options o = {0};
  if (secret) {
    o.secret = secret;
    o.secret_len = strlen(secret);
  }
  ct_net_server *s;
  int r = ct_net_server_new(&s, addr, &o);
  if (r < 0)
    return fail(r, "ct_net_server_new");
  ct_token **toks = calloc((size_t)n, sizeof *toks);
  for (int i = 0; i < n; i++) {
    if ((r = ct_token_new(&toks[i], names[i])) < 0 ||
        (r = ct_net_server_add(s, names[i], toks[i])) < 0)
      return fail(r, names[i]);
  }
  if ((r = ct_net_server_start(s)) < 0)
    return fail(r, "start");
  char a[300];
  ct_net_server_address(s, a, sizeof a);
  out("ADDR %s", a);
  char line[512];
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "trigger ", 8) == 0) {
      for (int i = 0; i < n; i++)
        if (strcmp(names[i], line + 8) == 0)
          ct_token_trigger(toks[i]);
      out("ok");
    } else if (strcmp(line, "stats") == 0) {
      ct_net_server_stats st;
      ct_net_server_get_stats(s, &st);
      out("stats accepted=%llu active=%llu ready=%llu dropped=%llu "
          "refused=%llu proxies=%llu",
          (unsigned long long)st.accepted, (unsigned long long)st.active,
          (unsigned long long)st.ready, (unsigned long long)st.dropped,
          (unsigned long long)st.refused, (unsigned long long)st.proxies);
    }
  }
  ct_net_server_free(s);
  for (int i = 0; i < n; i++)
    ct_token_unref(toks[i]);
  free(toks);
  return 0;
}

int main(int argc, char **argv) {
  char *args[64];
  int n = 0;
  for (int i = 1; i < argc && n < 64; i++) {
    if (strcmp(argv[i], "--secret") == 0 && i + 1 < argc)
      secret = argv[++i];
    else if (strcmp(argv[i], "--max-fds") == 0 && i + 1 < argc)
      max_fds = atol(argv[++i]);
    else
      args[n++] = argv[i];
  }
  if (n < 2)
    return fail(-EINVAL, "usage");
  const char *cmd = args[0], *addr = args[1];
  if (strcmp(cmd, "serve") == 0)
    return do_serve(addr, args + 2, n - 2);
  ct_net_client *c;
  if (connect_to(&c, addr) < 0)
    return 1;
  int rc = 0;
  if (strcmp(cmd, "connect") == 0) {
    out("connected");
  } else if (n >= 3) {
    ct_token *p;
    int r = ct_net_client_get(c, &p, args[2], ct_deadline_after(INT64_C(30000000000)));
    if (r < 0) {
      ct_net_client_free(c);
      return fail(r, args[2]);
    }
    if (strcmp(cmd, "wait") == 0) {
      out("ready");
      ct_token_wait(p, CT_FOREVER);
      ct_reason why = ct_token_reason(p, NULL);
      out("triggered %d %s", (int)why,
          ct_token_name(ct_token_triggered_token(p)));
      rc = why == CT_REASON_OWNER_LOST ? 4 : 0;
    } else if (strcmp(cmd, "trigger") == 0) {
      r = ct_net_client_trigger(c, p, CT_REASON_TRIGGER, 0, CT_FOREVER);
      if (r < 0)
        rc = fail(r, "trigger");
      else
        out("result %d", r);
    }
    ct_token_unref(p);
  }
  ct_net_client_free(c);
  return rc;
}
