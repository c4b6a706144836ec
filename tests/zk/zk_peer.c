/* SPDX-License-Identifier: MIT
 *
 * zk_peer.c -- the other processes of the ZooKeeper tests: an owner, a
 * holder of proxies, or a trigger-er, each in its own process with its own
 * session, driven by the test through stdin/stdout lines.
 *
 *   zk_peer ADDR owner NAME      publish a token named NAME; prints
 *                                "ready PID"; then reads commands:
 *                                  trigger R   ct_zk_trigger(reason R)
 *                                              -> "trig RC"
 *                                  local       ct_token_trigger() -> "ok"
 *                                  wait        -> "fired REASON CAUSE"
 *                                              once the token is triggered
 *                                  quit        free the client and exit
 *   zk_peer ADDR proxy NAME N    attach N proxies; prints "ready PID"; then
 *                                waits until all are triggered and prints
 *                                "fired REASON CAUSE SAME" (SAME: 1 if every
 *                                proxy reports that reason and cause), then
 *                                waits for "quit" (or EOF), frees the client
 *                                and prints "calls CALLS" (callback runs,
 *                                over all proxies) before exiting.
 *   zk_peer ADDR racer NAME      attach one proxy, print "ready PID", wait
 *                                for "go R", ct_zk_trigger(reason R), print
 *                                "won RC REASON" (REASON: what the proxy then
 *                                reports), wait for "quit".
 *
 * Environment: ZK_PEER_SESSION_MS (session timeout asked for),
 * ZK_PEER_UNREACH_MS (the unreachable tolerance), CT_ZK_AUTH... as usual.
 * Any failure prints "error WHAT RC MESSAGE" and exits 1.
 */
#include "canceltoken_zk.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void quiet(void *arg, const char *msg) {
  (void)arg;
  if (getenv("ZK_PEER_VERBOSE"))
    fprintf(stderr, "zk_peer[%d]: %s\n", (int)getpid(), msg);
}

static _Atomic int calls;
static void count(ct_token *t, void *arg) {
  (void)t;
  (void)arg;
  atomic_fetch_add(&calls, 1);
}

static int die(const char *what, int rc, const char *msg) {
  printf("error %s %d %s\n", what, rc, msg ? msg : ct_strerror(rc));
  fflush(stdout);
  return 1;
}

static const char *cause_of(ct_token *t) {
  const char *n = ct_token_name(ct_token_triggered_token(t));
  return n ? n : "?";
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 4)
    return die("usage", -EINVAL, "zk_peer ADDR owner|proxy|racer NAME [N]");
  const char *addr = argv[1], *role = argv[2], *name = argv[3];
  ct_zk_options o = {0};
  o.log = quiet;
  const char *s = getenv("ZK_PEER_SESSION_MS");
  if (s)
    o.session_timeout_ns = atoll(s) * 1000000LL;
  s = getenv("ZK_PEER_UNREACH_MS");
  if (s)
    o.unreachable_ns = atoll(s) * 1000000LL;
  char err[256];
  ct_zk_client *c;
  int rc = ct_zk_connect(&c, addr, &o, err, sizeof err,
                         ct_deadline_after(30000000000LL));
  if (rc < 0)
    return die("connect", rc, err);
  int64_t dl = ct_deadline_after(30000000000LL);
  char line[256];

  if (strcmp(role, "owner") == 0) {
    ct_token *t;
    const char *base = strrchr(name, '/');
    if ((rc = ct_token_new(&t, base ? base + 1 : name)) < 0 ||
        (rc = ct_zk_publish(c, name, t, dl)) < 0)
      return die("publish", rc, NULL);
    ct_callback cb = {0};
    ct_callback_register(&cb, t, count, NULL);
    printf("ready %d\n", (int)getpid());
    while (fgets(line, sizeof line, stdin)) {
      int r;
      if (sscanf(line, "trigger %d", &r) == 1) {
        rc = ct_zk_trigger(c, t, (ct_reason)r, 0,
                           ct_deadline_after(30000000000LL));
        printf("trig %d\n", rc);
      } else if (strncmp(line, "local", 5) == 0) {
        ct_token_trigger(t);
        printf("ok\n");
      } else if (strncmp(line, "wait", 4) == 0) {
        ct_token_wait(t, ct_deadline_after(60000000000LL));
        printf("fired %d %s\n", (int)ct_token_reason(t, NULL), cause_of(t));
      } else if (strncmp(line, "quit", 4) == 0) {
        break;
      }
    }
    ct_callback_unregister(&cb);
    ct_zk_client_free(c);
    ct_token_unref(t);
    return 0;
  }

  if (strcmp(role, "proxy") == 0) {
    int n = argc > 4 ? atoi(argv[4]) : 1;
    if (n < 1 || n > 10000)
      return die("usage", -EINVAL, "N out of range");
    ct_token **px = calloc((size_t)n, sizeof *px);
    ct_callback *cbs = calloc((size_t)n, sizeof *cbs);
    if (!px || !cbs)
      return die("alloc", -ENOMEM, NULL);
    for (int i = 0; i < n; i++) {
      if ((rc = ct_zk_get(c, &px[i], name, dl)) < 0)
        return die("get", rc, NULL);
      if (!ct_token_is_proxy(px[i]))
        return die("get", -EPROTO, "not a proxy");
      ct_callback_register(&cbs[i], px[i], count, NULL);
    }
    printf("ready %d\n", (int)getpid());
    for (int i = 0; i < n; i++)
      ct_token_wait(px[i], CT_FOREVER);
    int r0 = (int)ct_token_reason(px[0], NULL);
    const char *c0 = cause_of(px[0]);
    int same = 1;
    for (int i = 1; i < n; i++)
      if ((int)ct_token_reason(px[i], NULL) != r0 ||
          strcmp(cause_of(px[i]), c0) != 0)
        same = 0;
    /* Callbacks run after waiters wake, on the triggering thread: let them
     * all run before saying so (an unregister before a callback starts
     * would cancel it).  The guard only bounds a broken run. */
    int64_t guard = ct_deadline_after(30000000000LL);
    while (atomic_load(&calls) < n && ct_now() < guard)
      usleep(1000);
    printf("fired %d %s %d\n", r0, c0, same);
    while (fgets(line, sizeof line, stdin))
      if (strncmp(line, "quit", 4) == 0)
        break;
    for (int i = 0; i < n; i++)
      ct_callback_unregister(&cbs[i]); /* waits for a running callback */
    ct_zk_client_free(c);
    printf("calls %d\n", atomic_load(&calls));
    for (int i = 0; i < n; i++)
      ct_token_unref(px[i]);
    free(px);
    free(cbs);
    return 0;
  }

  if (strcmp(role, "racer") == 0) {
    ct_token *p;
    if ((rc = ct_zk_get(c, &p, name, dl)) < 0)
      return die("get", rc, NULL);
    printf("ready %d\n", (int)getpid());
    int r = 0;
    while (fgets(line, sizeof line, stdin))
      if (sscanf(line, "go %d", &r) == 1)
        break;
    rc = ct_zk_trigger(c, p, (ct_reason)r, 0,
                       ct_deadline_after(30000000000LL));
    printf("won %d %d\n", rc, (int)ct_token_reason(p, NULL));
    while (fgets(line, sizeof line, stdin))
      if (strncmp(line, "quit", 4) == 0)
        break;
    ct_zk_client_free(c);
    ct_token_unref(p);
    return 0;
  }
  return die("usage", -EINVAL, "unknown role");
}
