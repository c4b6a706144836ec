/* SPDX-License-Identifier: MIT
 *
 * test_net.c -- the token server and its proxies: getting a proxy, triggers
 * in both directions, what a proxy does like any token (wait, descriptor,
 * callbacks, deadlines, chaining), the owner lost (server killed with
 * SIGKILL), two client processes seeing each other's triggers, Unix, IPv4
 * and IPv6 sockets.  Servers and clients are real processes (net_peer) or
 * threads of this one, always over real sockets.
 */
#include "net_test_util.h"

#include <sched.h>
#include <semaphore.h>
#include <sys/eventfd.h>
#include <time.h>

struct fixture {
  char dir[64], path[96], addr[256];
  ct_net_server *s;
  ct_token *tok[3];
  ct_net_client *c;
};

static void fx_start(struct fixture *f, const char *address,
                     const ct_net_server_options *so) {
  memset(f, 0, sizeof *f);
  if (!address) {
    t_sock_path(f->dir, f->path);
    address = f->path;
  }
  ASSERT_OK(ct_net_server_new(&f->s, address, so));
  const char *names[3] = {"main", "job", "other"};
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(ct_token_new(&f->tok[i], names[i]));
    ASSERT_OK(ct_net_server_add(f->s, names[i], f->tok[i]));
  }
  ASSERT_OK(ct_net_server_start(f->s));
  assert_true(ct_net_server_address(f->s, f->addr, sizeof f->addr) > 0);
  char err[256];
  int r = ct_net_client_connect(&f->c, f->addr, NULL, err, sizeof err,
                                LONG_DEADLINE());
  if (r < 0)
    fail_msg("connect %s: %s (%s)", f->addr, ct_err_name(r), err);
}

static void fx_stop(struct fixture *f) {
  ct_net_client_free(f->c);
  ct_net_server_free(f->s);
  for (int i = 0; i < 3; i++)
    ct_token_unref(f->tok[i]);
  if (f->dir[0]) {
    struct stat st;
    assert_int_equal(stat(f->path, &st), -1); /* the server unlinked it */
    t_rmdir(f->dir, f->path);
  }
}

static void test_get_proxy_and_owner_trigger(void **state) {
  (void)state;
  struct fixture f;
  fx_start(&f, NULL, NULL);
  ct_token *p;
  ASSERT_OK(ct_net_client_get(f.c, &p, "main", LONG_DEADLINE()));
  assert_true(ct_token_is_proxy(p));
  assert_string_equal(ct_token_name(p), "main");
  assert_false(ct_token_triggered(p));
  ct_token *again;
  ASSERT_OK(ct_net_client_get(f.c, &again, "main", LONG_DEADLINE()));
  assert_ptr_equal(again, p); /* same name, same proxy */
  ct_token_unref(again);
  ASSERT_ERR(ct_net_client_get(f.c, &again, "nope", LONG_DEADLINE()),
             -ENOENT);
  ASSERT_ERR(ct_net_client_get(f.c, &again, "", LONG_DEADLINE()), -EINVAL);

  ct_token_trigger(f.tok[0]); /* the owner triggers: pushed to the proxy */
  ASSERT_OK(ct_token_wait(p, LONG_DEADLINE()));
  assert_int_equal(ct_token_reason(p, NULL), CT_REASON_TRIGGER);
  assert_string_equal(ct_token_name(ct_token_triggered_token(p)), "main");
  char msg[128];
  assert_true(ct_token_message(p, msg, sizeof msg) > 0);
  assert_string_equal(msg, "Cancellation requested by main token");
  assert_false(ct_token_triggered(f.tok[1]));
  ct_token_unref(p);
  fx_stop(&f);
}

/* The server-side token that fires is named by triggered_token. */
static void test_cause_names_server_token(void **state) {
  (void)state;
  char dir[64], path[96];
  t_sock_path(dir, path);
  ct_net_server *s;
  ASSERT_OK(ct_net_server_new(&s, path, NULL));
  ct_token *root, *child;
  ASSERT_OK(ct_token_new(&root, "shutdown"));
  ASSERT_OK(ct_token_new_child(&child, "request-7", root));
  ASSERT_OK(ct_net_server_add(s, "req", child)); /* served under another name */
  ASSERT_ERR(ct_net_server_add(s, "req", root), -EEXIST);
  ASSERT_OK(ct_net_server_start(s));
  ct_net_client *c;
  ASSERT_OK(ct_net_client_connect(&c, path, NULL, NULL, 0, LONG_DEADLINE()));
  ct_token *p;
  ASSERT_OK(ct_net_client_get(c, &p, "req", LONG_DEADLINE()));
  assert_string_equal(ct_token_name(p), "request-7"); /* the owner token's name */
  ct_token_trigger_reason(root, CT_REASON_SIGNAL, 15);
  ASSERT_OK(ct_token_wait(p, LONG_DEADLINE()));
  int detail = 0;
  assert_int_equal(ct_token_reason(p, &detail), CT_REASON_SIGNAL);
  assert_int_equal(detail, 15);
  ct_token *cause = ct_token_triggered_token(p);
  assert_string_equal(ct_token_name(cause), "shutdown");
  assert_true(ct_token_triggered(cause));
  ct_token_unref(p);
  ct_net_client_free(c);
  ct_net_server_free(s);
  ct_token_unref(child);
  ct_token_unref(root);
  t_rmdir(dir, path);
}

static void test_proxy_trigger_confirmed(void **state) {
  (void)state;
  struct fixture f;
  fx_start(&f, NULL, NULL);
  ct_token *p;
  ASSERT_OK(ct_net_client_get(f.c, &p, "job", LONG_DEADLINE()));
  ASSERT_ERR(ct_net_client_trigger(f.c, f.tok[1], CT_REASON_TRIGGER, 0,
                                   LONG_DEADLINE()),
             -EINVAL); /* not a proxy of this client */
  ASSERT_ERR(ct_net_client_trigger(f.c, p, CT_REASON_NONE, 0,
                                   LONG_DEADLINE()), -EINVAL);
  ASSERT_ERR(ct_net_client_trigger(f.c, p, CT_REASON_TRIGGER, 0,
                                   LONG_DEADLINE()), 1);
  /* confirmed: the owner's token is triggered, and so is the proxy */
  assert_true(ct_token_triggered(f.tok[1]));
  assert_true(ct_token_triggered(p));
  ASSERT_ERR(ct_net_client_trigger(f.c, p, CT_REASON_TRIGGER, 0,
                                   LONG_DEADLINE()), 0);
  ct_token_unref(p);
  fx_stop(&f);
}

/* A plain ct_token_trigger(proxy) is forwarded to the owner. */
static void test_local_trigger_forwarded(void **state) {
  (void)state;
  struct fixture f;
  fx_start(&f, NULL, NULL);
  ct_token *p;
  ASSERT_OK(ct_net_client_get(f.c, &p, "main", LONG_DEADLINE()));
  ct_token_trigger_reason(p, CT_REASON_USER, 3);
  ASSERT_OK(ct_token_wait(f.tok[0], LONG_DEADLINE()));
  int detail;
  assert_int_equal(ct_token_reason(f.tok[0], &detail), CT_REASON_USER);
  assert_int_equal(detail, 3);
  ct_token_unref(p);
  fx_stop(&f);
}

static void test_proxy_chaining(void **state) {
  (void)state;
  struct fixture f;
  fx_start(&f, NULL, NULL);
  ct_token *p, *local, *chained, *bad = NULL, *child;
  ASSERT_OK(ct_net_client_get(f.c, &p, "main", LONG_DEADLINE()));
  ASSERT_OK(ct_token_new(&local, "local"));
  ASSERT_OK(ct_token_chain(&chained, local, p)); /* chained *with*: fine */
  ASSERT_ERR(ct_token_chain(&bad, p, local), -ENOTSUP); /* *from*: no */
  assert_null(bad);
  ASSERT_OK(ct_token_new_child(&child, "req", p));
  ct_token_trigger(f.tok[0]);
  ASSERT_OK(ct_token_wait(chained, LONG_DEADLINE()));
  ASSERT_OK(ct_token_wait(child, LONG_DEADLINE()));
  assert_string_equal(ct_token_name(ct_token_triggered_token(chained)),
                      "main");
  assert_false(ct_token_triggered(local));
  ct_token_unref(child);
  ct_token_unref(chained);
  ct_token_unref(local);
  ct_token_unref(p);
  fx_stop(&f);
}

static void count_cb(ct_token *t, void *arg) {
  (void)t;
  atomic_fetch_add((_Atomic int *)arg, 1);
}

/* Descriptor, callbacks and deadlines on a proxy. */
static void test_proxy_fd_callback_deadline(void **state) {
  (void)state;
  struct fixture f;
  fx_start(&f, NULL, NULL);
  ct_token *p, *q;
  ASSERT_OK(ct_net_client_get(f.c, &p, "main", LONG_DEADLINE()));
  ASSERT_OK(ct_net_client_get(f.c, &q, "other", LONG_DEADLINE()));
  int fd = ct_token_fd(p);
  assert_true(fd >= 0);
  _Atomic int calls = 0;
  ct_callback cb = {0};
  ASSERT_OK(ct_callback_register(&cb, p, count_cb, &calls));
  struct pollfd pf = {fd, POLLIN, 0};
  assert_int_equal(poll(&pf, 1, 0), 0);
  ct_token_trigger(f.tok[0]);
  assert_int_equal(ct_wait_fd(q, fd, POLLIN, LONG_DEADLINE()),
                   POLLIN);
  ASSERT_OK(ct_token_wait(p, LONG_DEADLINE()));
  /* The wait ends when the proxy's state flips; its callbacks run just
   * after, on the clients' thread: unregistering before that would
   * cancel the call (returns 0).  Wait for it. */
  int64_t dl = LONG_DEADLINE();
  while (atomic_load(&calls) == 0 && ct_now() < dl)
    sched_yield();
  ASSERT_ERR(ct_callback_unregister(&cb), 1); /* it ran */
  assert_int_equal(atomic_load(&calls), 1);
  /* A deadline on a proxy triggers it, and is forwarded to the owner. */
  int64_t start = ct_now();
  ASSERT_ARMED(ct_token_set_deadline(q, ct_deadline_after(20 * MS)));
  ASSERT_OK(ct_token_wait(f.tok[2], LONG_DEADLINE()));
  assert_true(ct_now() - start >= 20 * MS);
  assert_int_equal(ct_token_reason(f.tok[2], NULL), CT_REASON_DEADLINE);
  ct_token_unref(q);
  ct_token_unref(p);
  fx_stop(&f);
}

static void test_get_already_triggered(void **state) {
  (void)state;
  struct fixture f;
  fx_start(&f, NULL, NULL);
  ct_token_trigger_reason(f.tok[1], CT_REASON_USER, 9);
  ct_token *p;
  ASSERT_OK(ct_net_client_get(f.c, &p, "job", LONG_DEADLINE()));
  assert_true(ct_token_triggered(p)); /* at once, no wait */
  int detail;
  assert_int_equal(ct_token_reason(p, &detail), CT_REASON_USER);
  assert_int_equal(detail, 9);
  ct_token_unref(p);
  fx_stop(&f);
}

static void done_cb(void *arg, int result) {
  int *fds = arg;
  uint64_t v = (uint64_t)(result + 10);
  assert_int_equal(write(fds[0], &v, sizeof v), (ssize_t)sizeof v);
}

/* The non-blocking trigger completes through a callback (here writing an
 * eventfd an event loop would poll). */
static void test_async_trigger(void **state) {
  (void)state;
  struct fixture f;
  fx_start(&f, NULL, NULL);
  ct_token *p;
  ASSERT_OK(ct_net_client_get(f.c, &p, "other", LONG_DEADLINE()));
  int efd = eventfd(0, EFD_CLOEXEC);
  int arg[1] = {efd};
  ASSERT_ERR(ct_net_client_trigger_async(f.c, p, CT_REASON_TRIGGER, 0, NULL,
                                         NULL), -EINVAL);
  ASSERT_OK(ct_net_client_trigger_async(f.c, p, CT_REASON_TRIGGER, 0, done_cb,
                                        arg));
  struct pollfd pf = {efd, POLLIN, 0};
  assert_int_equal(poll(&pf, 1, 30000), 1);
  uint64_t v;
  assert_int_equal(read(efd, &v, sizeof v), (ssize_t)sizeof v);
  assert_int_equal(v, 11); /* result 1 */
  assert_true(ct_token_triggered(f.tok[2]));
  assert_true(ct_token_triggered(p));
  close(efd);
  ct_token_unref(p);
  fx_stop(&f);
}

struct listed {
  int n;
  char names[8][32];
  bool trig[8];
};

static void list_cb(void *arg, const ct_net_token_info *info) {
  struct listed *l = arg;
  snprintf(l->names[l->n], 32, "%s", info->name);
  l->trig[l->n++] = info->triggered;
}

static void test_list(void **state) {
  (void)state;
  struct fixture f;
  fx_start(&f, NULL, NULL);
  ct_token_trigger(f.tok[1]);
  struct listed l = {0};
  ASSERT_ERR(ct_net_client_list(f.c, list_cb, &l, LONG_DEADLINE()), 3);
  assert_string_equal(l.names[0], "main");
  assert_string_equal(l.names[1], "job");
  assert_string_equal(l.names[2], "other");
  assert_false(l.trig[0]);
  assert_true(l.trig[1]);
  fx_stop(&f);
}

static void test_ipv4_and_ipv6(void **state) {
  (void)state;
  const char *addrs[] = {"127.0.0.1:0", "[::1]:0", ":0"};
  for (int i = 0; i < 3; i++) {
    struct fixture f;
    fx_start(&f, addrs[i], NULL);
    if (i == 1)
      assert_memory_equal(f.addr, "[::1]:", 6);
    else
      assert_memory_equal(f.addr, "127.0.0.1:", 10); /* '' is loopback */
    ct_token *p;
    ASSERT_OK(ct_net_client_get(f.c, &p, "main", LONG_DEADLINE()));
    ct_token_trigger(f.tok[0]);
    ASSERT_OK(ct_token_wait(p, LONG_DEADLINE()));
    ct_token_unref(p);
    fx_stop(&f);
  }
}

/* serve_forever on one thread, stopped from another. */
static void *serve_thread(void *arg) {
  ct_net_server *s = arg;
  ASSERT_OK(ct_net_server_serve_forever(s));
  return NULL;
}

static void test_serve_forever_stopped_from_another_thread(void **state) {
  (void)state;
  char dir[64], path[96];
  t_sock_path(dir, path);
  ct_net_server *s;
  ASSERT_OK(ct_net_server_new(&s, path, NULL));
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_OK(ct_net_server_add(s, "t", t));
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, serve_thread, s), 0);
  ct_net_client *c;
  ASSERT_OK(ct_net_client_connect(&c, path, NULL, NULL, 0, LONG_DEADLINE()));
  ct_token *p;
  ASSERT_OK(ct_net_client_get(c, &p, "t", LONG_DEADLINE()));
  ASSERT_ERR(ct_net_server_start(s), -EBUSY);
  ct_net_server_stop(s);
  pthread_join(th, NULL);
  /* stopping said ERROR SHUTDOWN and closed the connection: an orderly
   * stop, told apart from a server that died (issue 13, 18) */
  ASSERT_OK(ct_token_wait(p, LONG_DEADLINE()));
  assert_int_equal(ct_token_reason(p, NULL), CT_REASON_SHUTDOWN);
  ASSERT_ERR(ct_net_client_error(c), -ESHUTDOWN);
  assert_false(ct_token_triggered(t));
  ASSERT_ERR(ct_net_server_add(s, "u", t), -ESHUTDOWN);
  ct_token_unref(p);
  ct_net_client_free(c);
  ct_net_server_free(s);
  ct_token_unref(t);
  t_rmdir(dir, path);
}

/* No global state: several servers and clients in one process. */
static void test_several_servers_and_clients(void **state) {
  (void)state;
  enum { N = 3 };
  struct fixture f[N];
  ct_token *p[N];
  for (int i = 0; i < N; i++) {
    fx_start(&f[i], i == 1 ? "127.0.0.1:0" : NULL, NULL);
    ASSERT_OK(ct_net_client_get(f[i].c, &p[i], "main", LONG_DEADLINE()));
  }
  ct_token_trigger(f[1].tok[0]);
  ASSERT_OK(ct_token_wait(p[1], LONG_DEADLINE()));
  assert_false(ct_token_triggered(p[0]));
  assert_false(ct_token_triggered(p[2]));
  for (int i = 0; i < N; i++) {
    ct_token_unref(p[i]);
    fx_stop(&f[i]);
  }
}

/* One notice to many subscribers (sent from more than one thread by the
 * server, server_fanout.c): every proxy is triggered, with the reason and
 * cause, and the requester's proxy is triggered when its confirmed
 * trigger returns (the notice before the ACK), over Unix and TCP. */
static void test_trigger_reaches_many_subscribers(void **state) {
  (void)state;
  enum { N = 150 };
  const char *addrs[] = {NULL, "127.0.0.1:0"};
  for (int k = 0; k < 2; k++) {
    struct fixture f;
    fx_start(&f, addrs[k], NULL);
    static ct_net_client *cl[N];
    static ct_token *px[N];
    for (int i = 0; i < N; i++) {
      ASSERT_OK(ct_net_client_connect(&cl[i], f.addr, NULL, NULL, 0,
                                      LONG_DEADLINE()));
      ASSERT_OK(ct_net_client_get(cl[i], &px[i], "main", LONG_DEADLINE()));
    }
    ASSERT_ERR(ct_net_client_trigger(cl[N / 2], px[N / 2], CT_REASON_USER, 7,
                                     LONG_DEADLINE()), 1);
    assert_true(ct_token_triggered(px[N / 2])); /* before the ACK */
    for (int i = 0; i < N; i++) {
      ASSERT_OK(ct_token_wait(px[i], LONG_DEADLINE()));
      int detail = 0;
      assert_int_equal(ct_token_reason(px[i], &detail), CT_REASON_USER);
      assert_int_equal(detail, 7);
      ct_token_unref(px[i]);
      ct_net_client_free(cl[i]);
    }
    fx_stop(&f);
  }
}

/* Freeing the client triggers its proxies (owner lost), unless told to
 * keep them; the proxies outlive the client. */
static void test_client_free_and_keep_option(void **state) {
  (void)state;
  struct fixture f;
  fx_start(&f, NULL, NULL);
  ct_token *p;
  ASSERT_OK(ct_net_client_get(f.c, &p, "main", LONG_DEADLINE()));
  ct_net_client_free(f.c);
  f.c = NULL;
  assert_true(ct_token_triggered(p));
  assert_int_equal(ct_token_reason(p, NULL), CT_REASON_OWNER_LOST);
  assert_false(ct_token_triggered(f.tok[0]));
  ct_token_trigger(p); /* no longer connected: local only, harmless */
  ct_token_unref(p);

  ct_net_client_options o = {.keep_proxies_on_loss = true};
  ASSERT_OK(ct_net_client_connect(&f.c, f.addr, &o, NULL, 0,
                                  LONG_DEADLINE()));
  ASSERT_OK(ct_net_client_get(f.c, &p, "job", LONG_DEADLINE()));
  ct_token *lost = ct_token_ref(ct_net_client_lost_token(f.c));
  ASSERT_OK(ct_net_client_error(f.c));
  ct_net_server_stop(f.s); /* SHUTDOWN to every connection, then closed */
  ASSERT_OK(ct_token_wait(lost, LONG_DEADLINE()));
  assert_int_equal(ct_token_reason(lost, NULL), CT_REASON_OWNER_LOST);
  assert_false(ct_token_triggered(p)); /* kept as it was */
  ASSERT_ERR(ct_net_client_error(f.c), -ESHUTDOWN);
  ct_token *q;
  ASSERT_ERR(ct_net_client_get(f.c, &q, "main", LONG_DEADLINE()),
             -ESHUTDOWN);
  ct_token_unref(lost);
  ct_token_unref(p);
  fx_stop(&f);
}

/* ---- real processes ---- */

/* kill -9 of the server while clients wait: every proxy is triggered with
 * CT_REASON_OWNER_LOST, in this process and in another. */
static void test_server_killed_owner_lost(void **state) {
  (void)state;
  char dir[64], path[96], addr[256], line[300];
  t_sock_path(dir, path);
  struct child srv, waiter;
  char *sargv[] = {NET_PEER, "serve", path, "a", "b", NULL};
  t_start_server(&srv, sargv, addr);
  char *wargv[] = {NET_PEER, "wait", addr, "a", NULL};
  t_spawn(&waiter, wargv);
  assert_true(t_read_line(&waiter, line, sizeof line, LONG_DEADLINE()));
  assert_string_equal(line, "ready");

  ct_net_client *c;
  ASSERT_OK(ct_net_client_connect(&c, addr, NULL, NULL, 0, LONG_DEADLINE()));
  ct_token *pa, *pb;
  ASSERT_OK(ct_net_client_get(c, &pa, "a", LONG_DEADLINE()));
  ASSERT_OK(ct_net_client_get(c, &pb, "b", LONG_DEADLINE()));
  kill(srv.pid, SIGKILL);
  ASSERT_OK(ct_token_wait(pa, LONG_DEADLINE()));
  ASSERT_OK(ct_token_wait(pb, LONG_DEADLINE()));
  assert_int_equal(ct_token_reason(pa, NULL), CT_REASON_OWNER_LOST);
  assert_int_equal(ct_token_reason(pb, NULL), CT_REASON_OWNER_LOST);
  assert_true(ct_token_triggered(ct_net_client_lost_token(c)));
  ASSERT_ERR(ct_net_client_error(c), -ECONNRESET);
  assert_true(t_read_line(&waiter, line, sizeof line, LONG_DEADLINE()));
  assert_memory_equal(line, "triggered 4 ", 12);
  assert_int_equal(t_wait_child(&waiter), 4);
  assert_int_equal(t_wait_child(&srv), 128 + SIGKILL);
  ct_token_unref(pa);
  ct_token_unref(pb);
  ct_net_client_free(c);
  t_rmdir(dir, path);
}

/* Two client processes: one triggers through its proxy, the other sees
 * it; the owner triggers, both see it.  Over TCP this time. */
static void test_two_client_processes(void **state) {
  (void)state;
  char addr[256], line[300];
  struct child srv, w1, w2, w3, trig;
  char *sargv[] = {NET_PEER, "serve", "127.0.0.1:0", "x", "y", NULL};
  t_start_server(&srv, sargv, addr);
  char *w1argv[] = {NET_PEER, "wait", addr, "x", NULL};
  char *w2argv[] = {NET_PEER, "wait", addr, "x", NULL};
  char *w3argv[] = {NET_PEER, "wait", addr, "y", NULL};
  t_spawn(&w1, w1argv);
  t_spawn(&w2, w2argv);
  t_spawn(&w3, w3argv);
  struct child *ws[] = {&w1, &w2, &w3};
  for (int i = 0; i < 3; i++) {
    assert_true(t_read_line(ws[i], line, sizeof line, LONG_DEADLINE()));
    assert_string_equal(line, "ready");
  }
  char *targv[] = {NET_PEER, "trigger", addr, "x", NULL};
  t_spawn(&trig, targv);
  assert_true(t_read_line(&trig, line, sizeof line, LONG_DEADLINE()));
  assert_string_equal(line, "result 1");
  assert_int_equal(t_wait_child(&trig), 0);
  for (int i = 0; i < 2; i++) {
    assert_true(t_read_line(ws[i], line, sizeof line, LONG_DEADLINE()));
    assert_string_equal(line, "triggered 1 x");
    assert_int_equal(t_wait_child(ws[i]), 0);
  }
  t_send_line(&srv, "trigger y"); /* the owner */
  assert_true(t_read_line(&srv, line, sizeof line, LONG_DEADLINE()));
  assert_true(t_read_line(&w3, line, sizeof line, LONG_DEADLINE()));
  assert_string_equal(line, "triggered 1 y");
  assert_int_equal(t_wait_child(&w3), 0);
  close(srv.in);
  srv.in = -1;
  assert_int_equal(t_wait_child(&srv), 0);
}

/* ---- the shared I/O thread (client.c, "The loop") ---- */

#define MANY 100

struct seen {
  _Atomic int n;
  pthread_t th[MANY];
};

static void record_thread(ct_token *t, void *arg) {
  (void)t;
  struct seen *sn = arg;
  int i = atomic_fetch_add(&sn->n, 1);
  if (i < MANY)
    sn->th[i] = pthread_self();
}

/* Many clients in one process: every notice is delivered, all on one
 * thread that is not the caller's; clients freed while notices for them
 * arrive; the loop starts again after the last client is gone. */
static void test_many_clients_share_one_loop(void **state) {
  (void)state;
  struct fixture f;
  fx_start(&f, NULL, NULL);
  ct_net_client *c[MANY];
  ct_token *p[MANY], *q[MANY];
  ct_callback cb[MANY];
  memset(cb, 0, sizeof cb);
  struct seen sn = {0};
  for (int i = 0; i < MANY; i++) {
    ASSERT_OK(ct_net_client_connect(&c[i], f.addr, NULL, NULL, 0,
                                    LONG_DEADLINE()));
    ASSERT_OK(ct_net_client_get(c[i], &p[i], "main", LONG_DEADLINE()));
    ASSERT_OK(ct_net_client_get(c[i], &q[i], "job", LONG_DEADLINE()));
    ASSERT_OK(ct_callback_register(&cb[i], p[i], record_thread, &sn));
  }
  ct_token_trigger(f.tok[0]);
  for (int i = 0; i < MANY; i++) {
    ASSERT_OK(ct_token_wait(p[i], LONG_DEADLINE()));
    assert_int_equal(ct_token_reason(p[i], NULL), CT_REASON_TRIGGER);
  }
  /* A proxy is triggered just before its callbacks run. */
  int64_t dl = LONG_DEADLINE();
  while (atomic_load(&sn.n) < MANY && ct_now() < dl)
    sched_yield();
  assert_int_equal(atomic_load(&sn.n), MANY);
  for (int i = 0; i < MANY; i++)
    ct_callback_unregister(&cb[i]);
  for (int i = 0; i < MANY; i++) {
    assert_true(pthread_equal(sn.th[i], sn.th[0]));
    assert_false(pthread_equal(sn.th[i], pthread_self()));
  }
  /* Free the clients while the notices for "job" arrive. */
  ct_token_trigger(f.tok[1]);
  for (int i = 0; i < MANY; i++) {
    ct_net_client_free(c[i]);
    assert_true(ct_token_triggered(q[i])); /* by the notice or the free */
  }
  for (int i = 0; i < MANY; i++) {
    ct_token_unref(p[i]);
    ct_token_unref(q[i]);
  }
  /* A new client after the last one was freed: a new loop. */
  ct_token *o;
  ASSERT_OK(ct_net_client_get(f.c, &o, "other", LONG_DEADLINE()));
  ct_net_client_free(f.c);
  ASSERT_OK(ct_net_client_connect(&f.c, f.addr, NULL, NULL, 0,
                                  LONG_DEADLINE()));
  ct_token_unref(o);
  ASSERT_OK(ct_net_client_get(f.c, &o, "other", LONG_DEADLINE()));
  ct_token_trigger(f.tok[2]);
  ASSERT_OK(ct_token_wait(o, LONG_DEADLINE()));
  assert_int_equal(ct_token_reason(o, NULL), CT_REASON_TRIGGER);
  ct_token_unref(o);
  fx_stop(&f);
}

struct cross {
  ct_net_client *other;
  int get_result;
  ct_token *lost_seen;
  sem_t entered, done;
  bool slow;
};

/* A proxy's callback of one client: a blocking call on another client
 * cannot work on the shared thread (-EDEADLK), freeing it does. */
static void free_other(ct_token *t, void *arg) {
  (void)t;
  struct cross *x = arg;
  ct_token *p = NULL;
  x->get_result = ct_net_client_get(x->other, &p, "job", LONG_DEADLINE());
  x->lost_seen = ct_token_ref(ct_net_client_lost_token(x->other));
  if (x->slow) { /* let the main thread free our own client meanwhile */
    sem_post(&x->entered);
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  ct_net_client_free(x->other);
  x->other = NULL;
  sem_post(&x->done);
}

static void cross_free(bool slow) {
  struct fixture f;
  fx_start(&f, NULL, NULL);
  struct cross x = {.slow = slow};
  sem_init(&x.entered, 0, 0);
  sem_init(&x.done, 0, 0);
  ASSERT_OK(ct_net_client_connect(&x.other, f.addr, NULL, NULL, 0,
                                  LONG_DEADLINE()));
  ct_token *p, *q;
  ASSERT_OK(ct_net_client_get(f.c, &p, "main", LONG_DEADLINE()));
  ASSERT_OK(ct_net_client_get(x.other, &q, "main", LONG_DEADLINE()));
  ct_callback cb = {0};
  ASSERT_OK(ct_callback_register(&cb, p, free_other, &x));
  ct_token_trigger(f.tok[0]);
  if (slow) {
    /* Our client is freed while its callback runs (free waits for it);
     * the callback then frees the last client, on the loop's thread. */
    sem_wait(&x.entered);
    ct_net_client_free(f.c);
    f.c = NULL;
  }
  sem_wait(&x.done);
  ct_callback_unregister(&cb);
  assert_null(x.other);
  ASSERT_ERR(x.get_result, -EDEADLK);
  assert_true(ct_token_triggered(x.lost_seen));
  assert_true(ct_token_triggered(q)); /* the notice, or the free */
  ct_token_unref(x.lost_seen);
  ct_token_unref(p);
  ct_token_unref(q);
  sem_destroy(&x.entered);
  sem_destroy(&x.done);
  fx_stop(&f);
}

static void test_callback_frees_another_client(void **state) {
  (void)state;
  cross_free(false);
  cross_free(true);
}

/* fork(): the child has no I/O thread; its own clients start one, and an
 * inherited client may be freed without disturbing the parent's. */
static void test_fork_child_gets_its_own_loop(void **state) {
  (void)state;
  struct fixture f;
  fx_start(&f, NULL, NULL);
  ct_token *p;
  ASSERT_OK(ct_net_client_get(f.c, &p, "main", LONG_DEADLINE()));
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int rc = 0;
    ct_net_client *c = NULL;
    ct_token *j = NULL;
    if (ct_net_client_connect(&c, f.addr, NULL, NULL, 0, LONG_DEADLINE()) <
            0 ||
        ct_net_client_get(c, &j, "job", LONG_DEADLINE()) < 0 ||
        ct_token_wait(j, LONG_DEADLINE()) < 0 ||
        ct_token_reason(j, NULL) != CT_REASON_TRIGGER)
      rc = 1;
    ct_net_client_free(f.c); /* inherited: only freed */
    ct_net_client_free(c);
    _exit(rc);
  }
  /* The child is waiting for "job": trigger it once it holds a proxy. */
  ct_net_server_stats st;
  int64_t dl = LONG_DEADLINE();
  do {
    ct_net_server_get_stats(f.s, &st);
  } while (st.proxies < 2 && ct_now() < dl);
  ct_token_trigger(f.tok[1]);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  /* The parent's client is still served. */
  ASSERT_OK(ct_net_client_error(f.c));
  ct_token_trigger(f.tok[0]);
  ASSERT_OK(ct_token_wait(p, LONG_DEADLINE()));
  assert_int_equal(ct_token_reason(p, NULL), CT_REASON_TRIGGER);
  ct_token_unref(p);
  fx_stop(&f);
}

/* The library's own threads run application callbacks: the clients' I/O
 * thread runs a proxy's, the server's thread those of a served token that
 * a client triggers.  They get the C library's default stack, as the core's
 * deadline and async threads do (they used to get 256 KiB; a callback with
 * 1 MiB of locals crashed): t_deep_stack_cb() in test_util.h puts 1 MiB on
 * the stack and touches every page. */
static void test_library_threads_give_callbacks_an_ordinary_stack(void **state) {
  (void)state;
  struct fixture f;
  fx_start(&f, NULL, NULL);
  ct_token *p, *q;
  ASSERT_OK(ct_net_client_get(f.c, &p, "main", LONG_DEADLINE()));
  ASSERT_OK(ct_net_client_get(f.c, &q, "job", LONG_DEADLINE()));
  /* 1: a proxy's callback, on the clients' I/O thread */
  struct t_deep_stack d1 = {0};
  ASSERT_OK(ct_token_new(&d1.done, "done1"));
  ct_callback cb1 = {0};
  ASSERT_OK(ct_callback_register(&cb1, p, t_deep_stack_cb, &d1));
  ct_token_trigger(f.tok[0]);
  ASSERT_OK(ct_token_wait(d1.done, LONG_DEADLINE()));
  assert_int_equal(atomic_load(&d1.sum), T_DEEP_STACK_SUM);
  /* 2: a served token's callback, on the server's thread, when a client
   * triggers it */
  struct t_deep_stack d2 = {0};
  ASSERT_OK(ct_token_new(&d2.done, "done2"));
  ct_callback cb2 = {0};
  ASSERT_OK(ct_callback_register(&cb2, f.tok[1], t_deep_stack_cb, &d2));
  ASSERT_ERR(ct_net_client_trigger(f.c, q, CT_REASON_TRIGGER, 0,
                                   LONG_DEADLINE()), 1);
  ASSERT_OK(ct_token_wait(d2.done, LONG_DEADLINE()));
  assert_int_equal(atomic_load(&d2.sum), T_DEEP_STACK_SUM);
  ct_callback_unregister(&cb1);
  ct_callback_unregister(&cb2);
  ct_token_unref(d1.done);
  ct_token_unref(d2.done);
  ct_token_unref(p);
  ct_token_unref(q);
  fx_stop(&f);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  if (getenv("CT_TEST_SKIP")) /* e.g. CT_TEST_SKIP='*cause*' */
    cmocka_set_skip_filter(getenv("CT_TEST_SKIP"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_proxy_and_owner_trigger),
      cmocka_unit_test(test_cause_names_server_token),
      cmocka_unit_test(test_proxy_trigger_confirmed),
      cmocka_unit_test(test_local_trigger_forwarded),
      cmocka_unit_test(test_proxy_chaining),
      cmocka_unit_test(test_proxy_fd_callback_deadline),
      cmocka_unit_test(test_get_already_triggered),
      cmocka_unit_test(test_async_trigger),
      cmocka_unit_test(test_list),
      cmocka_unit_test(test_ipv4_and_ipv6),
      cmocka_unit_test(test_serve_forever_stopped_from_another_thread),
      cmocka_unit_test(test_several_servers_and_clients),
      cmocka_unit_test(test_trigger_reaches_many_subscribers),
      cmocka_unit_test(test_client_free_and_keep_option),
      cmocka_unit_test(test_server_killed_owner_lost),
      cmocka_unit_test(test_two_client_processes),
      cmocka_unit_test(test_many_clients_share_one_loop),
      cmocka_unit_test(test_callback_frees_another_client),
      cmocka_unit_test(test_fork_child_gets_its_own_loop),
      cmocka_unit_test(test_library_threads_give_callbacks_an_ordinary_stack),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
