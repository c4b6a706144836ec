/* SPDX-License-Identifier: MIT
 *
 * test_net_heartbeat.c -- the clients' heartbeats (ct_net_client_options
 * .heartbeat_ns) against a real server in another process (net_peer
 * serve) over a real Unix socket, many clients of this process sharing
 * its I/O thread and so its heartbeat heap (src/remote/client_io.c):
 *   - a server that stops answering (SIGSTOP) loses every client with a
 *     heartbeat, with -ETIMEDOUT and its proxies triggered OWNER_LOST,
 *     including clients connected after others were freed from the middle
 *     of the heap (slots and heap entries reused), while clients without
 *     one stay connected (nothing can close their sockets) until the
 *     server is killed, and so do the clients of a second server that
 *     keeps answering, whose long-period entries are the heap's newest;
 *   - a server that answers keeps them: after more than three periods of
 *     silence from its side, no client is lost, because each pinged and
 *     the pongs counted as traffic;
 *   - frees from two threads while the loop is sweeping heartbeats that
 *     are due all the time (1 ms) touch no freed client (ASan, TSan), and
 *     the loop then serves a new client;
 *   - heartbeats up to INT64_MAX (whose due times used to overflow and
 *     hang the I/O thread) are served like any other.
 * Timing: waits are unbounded or LONG_DEADLINE() (failure only), except
 * that the second case assumes a running server answers a ping within
 * two seconds (heartbeat 1 s or more, lost after three); figures are not
 * measured here.
 */
#include "net_test_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define NHB 300     /* clients with a heartbeat, first wave */
#define NMORE 60    /* connected after a third of the first are freed */
#define NPLAIN 5    /* clients without one */
#define NLIVE 10    /* clients of a server that keeps answering */
#define MS (INT64_C(1000000))


static ct_net_client *connect_hb(const char *addr, int64_t hb) {
  ct_net_client_options o = CT_NET_CLIENT_OPTIONS_INIT;
  o.heartbeat_ns = hb;
  ct_net_client *c;
  ASSERT_OK(ct_net_client_connect(&c, addr, &o, NULL, 0, LONG_DEADLINE()));
  return c;
}

/* A net_peer server in another process, serving one token `name` at a
 * fresh socket path. */
struct peer_srv {
  char dir[64], path[96], addr[256];
  struct child ch;
};

static void peer_start(struct peer_srv *v, const char *name) {
  t_sock_path(v->dir, v->path);
  char *argv[] = {NET_PEER, "serve", v->path, (char *)name, NULL};
  t_start_server(&v->ch, argv, v->addr);
}

/* End it in order (EOF on its stdin: it frees its server and exits 0). */
static void peer_stop(struct peer_srv *v) {
  close(v->ch.in);
  v->ch.in = -1;
  assert_int_equal(t_wait_child(&v->ch), 0);
  t_rmdir(v->dir, v->path);
}

static void sleep_ns(int64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

static void test_silent_server_loses_heartbeat_clients(void **state) {
  (void)state;
  struct peer_srv v;
  peer_start(&v, "a");
  const char *addr = v.addr;

  static ct_net_client *hb[NHB + NMORE];
  static ct_token *px[NHB + NMORE];
  ct_net_client *plain[NPLAIN];
  ct_token *ppx[NPLAIN];
  /* Periods of 20 to 50 ms, in no order, so that the heap is mixed. */
  for (size_t i = 0; i < NHB; i++) {
    hb[i] = connect_hb(addr, (20 + (int64_t)(i * 7 % 31)) * MS);
    ASSERT_OK(ct_net_client_get(hb[i], &px[i], "a", LONG_DEADLINE()));
  }
  for (size_t i = 0; i < NPLAIN; i++) {
    plain[i] = connect_hb(addr, 0);
    ASSERT_OK(ct_net_client_get(plain[i], &ppx[i], "a", LONG_DEADLINE()));
  }
  /* Free a third, in a random order: entries leave the heap from the
   * middle and slots are freed; then more clients take them again. */
  size_t order[NHB];
  t_shuffle(order, NHB, 0x9e3779b97f4a7c15u);
  for (size_t k = 0; k < NHB / 3; k++) {
    size_t i = order[k];
    ct_token_unref(px[i]);
    ct_net_client_free(hb[i]);
    hb[i] = NULL;
    px[i] = NULL;
  }
  for (size_t i = NHB; i < NHB + NMORE; i++) {
    hb[i] = connect_hb(addr, (25 + (int64_t)(i % 13)) * MS);
    ASSERT_OK(ct_net_client_get(hb[i], &px[i], "a", LONG_DEADLINE()));
  }

  /* Last, clients with a long period of a second server, which keeps
   * answering: the most recent entries of the heap, so a heap that
   * failed to sink an entry whose key moved up would keep one of them on
   * top for good and hide the clients of the stopped server below it. */
  struct peer_srv live;
  peer_start(&live, "b");
  ct_net_client *lc[NLIVE];
  ct_token *lpx[NLIVE];
  for (size_t i = 0; i < NLIVE; i++) {
    lc[i] = connect_hb(live.addr, (1000 + 100 * (int64_t)i) * MS);
    ASSERT_OK(ct_net_client_get(lc[i], &lpx[i], "b", LONG_DEADLINE()));
  }

  assert_int_equal(kill(v.ch.pid, SIGSTOP), 0);
  for (size_t i = 0; i < NHB + NMORE; i++) {
    if (!hb[i])
      continue;
    ASSERT_OK(ct_token_wait(ct_net_client_lost_token(hb[i]),
                            LONG_DEADLINE()));
    ASSERT_ERR(ct_net_client_error(hb[i]), -ETIMEDOUT);
    ASSERT_OK(ct_token_wait(px[i], LONG_DEADLINE()));
    assert_int_equal(ct_token_reason(px[i], NULL), CT_REASON_OWNER_LOST);
  }
  /* The server is stopped, not gone: without a heartbeat nothing tells. */
  for (size_t i = 0; i < NPLAIN; i++) {
    assert_false(ct_token_triggered(ct_net_client_lost_token(plain[i])));
    assert_false(ct_token_triggered(ppx[i]));
    assert_int_equal(ct_net_client_error(plain[i]), 0);
  }
  /* Neither are the clients of the live server, which answer pings. */
  for (size_t i = 0; i < NLIVE; i++) {
    assert_int_equal(ct_net_client_error(lc[i]), 0);
    assert_false(ct_token_triggered(lpx[i]));
    ct_token_unref(lpx[i]);
    ct_net_client_free(lc[i]);
  }
  peer_stop(&live);
  assert_int_equal(kill(v.ch.pid, SIGKILL), 0);
  for (size_t i = 0; i < NPLAIN; i++) {
    ASSERT_OK(ct_token_wait(ppx[i], LONG_DEADLINE()));
    assert_int_equal(ct_token_reason(ppx[i], NULL), CT_REASON_OWNER_LOST);
    ASSERT_ERR(ct_net_client_error(plain[i]), -ECONNRESET);
    ct_token_unref(ppx[i]);
    ct_net_client_free(plain[i]);
  }
  for (size_t i = 0; i < NHB + NMORE; i++) {
    if (!hb[i])
      continue;
    ct_token_unref(px[i]);
    ct_net_client_free(hb[i]);
  }
  assert_int_equal(t_wait_child(&v.ch), 128 + SIGKILL);
  t_rmdir(v.dir, v.path);
}

#define NKEEP 20

static void test_answering_server_keeps_heartbeat_clients(void **state) {
  (void)state;
  struct peer_srv v;
  peer_start(&v, "a");
  const char *addr = v.addr;
  ct_net_client *c[NKEEP];
  ct_token *p[NKEEP];
  int64_t longest = 0;
  for (size_t i = 0; i < NKEEP; i++) {
    int64_t hb = (1000 + (int64_t)(i * 37 % 500)) * MS; /* 1.0-1.5 s */
    if (hb > longest)
      longest = hb;
    c[i] = connect_hb(addr, hb);
    ASSERT_OK(ct_net_client_get(c[i], &p[i], "a", LONG_DEADLINE()));
  }
  /* The server sends nothing of its own: past three periods every client
   * would be lost, unless its pings were sent and answered. */
  sleep_ns(3 * longest + 500 * MS);
  for (size_t i = 0; i < NKEEP; i++) {
    assert_int_equal(ct_net_client_error(c[i]), 0);
    assert_false(ct_token_triggered(ct_net_client_lost_token(c[i])));
    assert_false(ct_token_triggered(p[i]));
  }
  /* And they still work: a trigger at the server reaches every proxy. */
  t_send_line(&v.ch, "trigger a");
  char line[64];
  assert_true(t_read_line(&v.ch, line, sizeof line, LONG_DEADLINE()));
  assert_string_equal(line, "ok");
  for (size_t i = 0; i < NKEEP; i++) {
    ASSERT_OK(ct_token_wait(p[i], LONG_DEADLINE()));
    assert_int_equal(ct_token_reason(p[i], NULL), CT_REASON_TRIGGER);
    ct_token_unref(p[i]);
    ct_net_client_free(c[i]);
  }
  peer_stop(&v);
}

#define NRACE 200

struct freer {
  ct_net_client **c;
  const size_t *order;
  size_t from, to;
};

static void *free_some(void *arg) {
  struct freer *f = arg;
  for (size_t k = f->from; k < f->to; k++)
    ct_net_client_free(f->c[f->order[k]]);
  return NULL;
}

static void test_free_races_heartbeat_sweep(void **state) {
  (void)state;
  struct peer_srv v;
  peer_start(&v, "a");
  const char *addr = v.addr;
  for (int round = 0; round < 3; round++) {
    static ct_net_client *c[NRACE];
    static size_t order[NRACE];
    /* 1 ms: the loop has heartbeat work on nearly every pass (whether a
     * client is then lost for a slow pong does not matter here). */
    for (size_t i = 0; i < NRACE; i++)
      c[i] = connect_hb(addr, 1 * MS);
    t_shuffle(order, NRACE, 0x2545f4914f6cdd1du + (uint64_t)round);
    struct freer a = {c, order, 0, NRACE / 2};
    struct freer b = {c, order, NRACE / 2, NRACE};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, free_some, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, free_some, &b), 0);
    assert_int_equal(pthread_join(ta, NULL), 0);
    assert_int_equal(pthread_join(tb, NULL), 0);
  }
  /* The loop stopped with its last client; a new one starts it again and
   * is served. */
  ct_net_client *c = connect_hb(addr, 0);
  ct_token *p;
  ASSERT_OK(ct_net_client_get(c, &p, "a", LONG_DEADLINE()));
  t_send_line(&v.ch, "trigger a");
  char line[64];
  assert_true(t_read_line(&v.ch, line, sizeof line, LONG_DEADLINE()));
  ASSERT_OK(ct_token_wait(p, LONG_DEADLINE()));
  assert_int_equal(ct_token_reason(p, NULL), CT_REASON_TRIGGER);
  ct_token_unref(p);
  ct_net_client_free(c);
  peer_stop(&v);
}

/* Any heartbeat_ns > 0 is accepted; the largest ones used to overflow
 * the due time (last receive + period wrapped negative), so the I/O
 * thread's sweep never ended and no client of the process was served
 * (outside review).  Now: every client, the huge ones included, gets its
 * notice, and none is lost. */
static void test_huge_heartbeat_is_served(void **state) {
  (void)state;
  char dir[64], path[96];
  t_sock_path(dir, path);
  ct_net_server *s;
  ct_token *tok;
  ASSERT_OK(ct_net_server_new(&s, path, NULL));
  ASSERT_OK(ct_token_new(&tok, "a"));
  ASSERT_OK(ct_net_server_add(s, "a", tok));
  ASSERT_OK(ct_net_server_start(s));
  const int64_t hbs[] = {INT64_MAX, INT64_MAX - 1, INT64_MAX / 2,
                         INT64_MAX / 3 + 1, 0};
  enum { N = sizeof hbs / sizeof hbs[0] };
  ct_net_client *c[N];
  ct_token *p[N];
  for (size_t i = 0; i < N; i++) {
    c[i] = connect_hb(path, hbs[i]);
    ASSERT_OK(ct_net_client_get(c[i], &p[i], "a", LONG_DEADLINE()));
  }
  assert_int_equal(ct_token_trigger(tok), 1);
  for (size_t i = 0; i < N; i++) {
    ASSERT_OK(ct_token_wait(p[i], LONG_DEADLINE()));
    assert_int_equal(ct_token_reason(p[i], NULL), CT_REASON_TRIGGER);
    assert_int_equal(ct_net_client_error(c[i]), 0);
    assert_false(ct_token_triggered(ct_net_client_lost_token(c[i])));
    ct_token_unref(p[i]);
    ct_net_client_free(c[i]);
  }
  ct_net_server_free(s);
  ct_token_unref(tok);
  t_rmdir(dir, path);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_silent_server_loses_heartbeat_clients),
      cmocka_unit_test(test_answering_server_keeps_heartbeat_clients),
      cmocka_unit_test(test_free_races_heartbeat_sweep),
      cmocka_unit_test(test_huge_heartbeat_is_served),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
