/* SPDX-License-Identifier: MIT
 *
 * backend_zk.c -- the cancel-token command's ZooKeeper backend (backend.h):
 * zk://HOST:PORT[,HOST:PORT...][/CHROOT] addresses, through the public
 * API of canceltoken_zk.h.  serve publishes each token under its name
 * (the chroot is created if missing) and owns it for as long as it runs;
 * the other subcommands attach proxies.
 *
 * Design notes
 *  - Credentials: the command's --secret-file / $CANCEL_TOKEN_SECRET, when
 *    given, are the ZooKeeper digest credentials ("user:password");
 *    otherwise the library reads $CT_ZK_AUTH_FILE or $CT_ZK_AUTH.  Never
 *    an argument.
 *  - The session timeout asked for is $CT_ZK_SESSION_MS (default: the
 *    library's, 10 s); serve prints the negotiated one on stderr, since
 *    "owner lost" reaches the proxies one session timeout after the
 *    process died.
 *  - The unreachable tolerance is $CT_ZK_UNREACHABLE_MS (default: three
 *    negotiated session timeouts); past it, wait reports "unreachable"
 *    (exit 4), distinct from owner lost (exit 2).
 */
#include "backend.h"
#include "canceltoken_zk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The library's lines, except the negotiated session timeout: serve says
 * it in its own words, and the other subcommands need not. */
static void zk_log_line(void *arg, const char *msg) {
  (void)arg;
  if (strncmp(msg, "session timeout:", 16) == 0)
    return;
  fprintf(stderr, "cancel-token: zk: %s\n", msg);
}

static int zk_open(ct_zk_client **c, const char *addr, const void *secret,
                   size_t secret_len, char *err, size_t errlen,
                   int64_t deadline) {
  ct_zk_options o;
  memset(&o, 0, sizeof o);
  o.log = zk_log_line;
  static const char *const envs[2] = {"CT_ZK_SESSION_MS",
                                      "CT_ZK_UNREACHABLE_MS"};
  for (int i = 0; i < 2; i++) {
    const char *ms = getenv(envs[i]);
    if (!ms || !*ms)
      continue;
    char *end;
    long long v = strtoll(ms, &end, 10);
    if (*end || v <= 0 || v > 86400000) {
      snprintf(err, errlen,
               "%s must be a number of milliseconds, 1..86400000", envs[i]);
      return -EINVAL;
    }
    if (i == 0)
      o.session_timeout_ns = v * 1000000LL;
    else
      o.unreachable_ns = v * 1000000LL;
  }
  char *auth = NULL;
  if (secret_len > 0) {
    auth = malloc(secret_len + 1);
    if (!auth)
      return -ENOMEM;
    memcpy(auth, secret, secret_len);
    auth[secret_len] = '\0';
    while (secret_len > 0 && (auth[secret_len - 1] == '\n' ||
                              auth[secret_len - 1] == '\r'))
      auth[--secret_len] = '\0';
    o.auth = auth;
  }
  int r = ct_zk_connect(c, addr, &o, err, errlen, deadline);
  if (auth) {
    memset(auth, 0, secret_len);
    free(auth);
  }
  return r;
}

static int zk_connect(void **conn, const char *addr, const void *secret,
                      size_t secret_len, char *err, size_t errlen,
                      int64_t deadline) {
  ct_zk_client *c = NULL;
  int r = zk_open(&c, addr, secret, secret_len, err, errlen, deadline);
  *conn = c;
  return r;
}

static int zk_get(void *conn, ct_token **proxy, const char *name,
                  int64_t deadline) {
  return ct_zk_get(conn, proxy, name, deadline);
}

static int zk_trigger(void *conn, ct_token *proxy, int64_t deadline) {
  return ct_zk_trigger(conn, proxy, CT_REASON_TRIGGER, 0, deadline);
}

struct list_ctx {
  ct_net_list_fn fn;
  void *arg;
};

static void zk_list_one(void *arg, const char *name, const ct_zk_status *st) {
  struct list_ctx *l = arg;
  ct_net_token_info i = {.name = name,
                         .triggered = st->triggered,
                         .reason = st->triggered ? st->reason : CT_REASON_NONE,
                         .detail = st->triggered ? st->detail : 0,
                         .cause = st->triggered ? st->cause : ""};
  l->fn(l->arg, &i);
}

static int zk_list(void *conn, ct_net_list_fn fn, void *arg,
                   int64_t deadline) {
  struct list_ctx l = {fn, arg};
  return ct_zk_list(conn, zk_list_one, &l, deadline);
}

/* The proxies report a lost owner or ensemble by their reason; there is no
 * connection error of the kind a socket has. */
static int zk_error(void *conn) {
  (void)conn;
  return 0;
}

static void zk_disconnect(void *conn) { ct_zk_client_free(conn); }

struct zk_srv {
  ct_zk_client *c;
  char addr[320];
};

#define SERVE_DEADLINE_NS (30 * INT64_C(1000000000))

static int zk_serve_new(void **srv, const char *addr,
                        const ct_tool_serve_opts *o, char *err,
                        size_t errlen) {
  *srv = NULL;
  if (o->n_allowed_uids || o->allow_any_uid) {
    snprintf(err, errlen, "--allow-uid/--allow-any-uid are for Unix sockets; "
                          "ZooKeeper uses credentials and ACLs");
    return -EINVAL;
  }
  struct zk_srv *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  int r = zk_open(&s->c, addr, o->secret, o->secret_len, err, errlen,
                  ct_deadline_after(SERVE_DEADLINE_NS));
  if (r < 0) {
    free(s);
    return r;
  }
  snprintf(s->addr, sizeof s->addr, "%s", addr);
  *srv = s;
  return 0;
}

static int zk_serve_add(void *srv, const char *name, ct_token *tok) {
  struct zk_srv *s = srv;
  int r = ct_zk_publish(s->c, name, tok, ct_deadline_after(SERVE_DEADLINE_NS));
  if (r == -EEXIST) /* the command then says "'NAME': exists already" */
    fprintf(stderr, "cancel-token: zk: tokens in an ensemble are one-shot: "
                    "a token once published under a name keeps it (publish "
                    "under a new name)\n");
  return r;
}

static int zk_serve_start(void *srv, char *addr, size_t addrlen) {
  struct zk_srv *s = srv;
  snprintf(addr, addrlen, "%s", s->addr);
  fprintf(stderr,
          "cancel-token: zk: session timeout %lld ms (negotiated with the "
          "ensemble): proxies learn that this process died that long after\n",
          (long long)(ct_zk_session_timeout(s->c) / 1000000));
  return 0;
}

static void zk_serve_free(void *srv) {
  struct zk_srv *s = srv;
  if (!s)
    return;
  ct_zk_client_free(s->c);
  free(s);
}

const ct_tool_backend ct_tool_zk_backend = {
    .name = "ZooKeeper",
    .connect = zk_connect,
    .get = zk_get,
    .trigger = zk_trigger,
    .list = zk_list,
    .error = zk_error,
    .disconnect = zk_disconnect,
    .serve_new = zk_serve_new,
    .serve_add = zk_serve_add,
    .serve_start = zk_serve_start,
    .serve_free = zk_serve_free,
};
