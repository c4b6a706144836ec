/* SPDX-License-Identifier: MIT
 *
 * test_net_many.c -- one client holding many proxies (NMANY, of as many
 * distinct tokens, on one connection) against a real server over a real
 * Unix socket.  The client finds a notice's proxy, and a reply's request,
 * through hash indexes (src/remote/client_req.c), and the server a
 * connection's handles through one (server_proto.c); this checks that
 * they find the right ones:
 *   - every proxy is named after its token, a second GET of a name gives
 *     the same proxy and no second subscription;
 *   - all NMANY tokens fire (in a random order, from another thread) and
 *     every proxy fires with its own token's reason, detail and cause,
 *     while the application drops half of the proxies in another random
 *     order as the notices arrive;
 *   - a dropped proxy's handle is reused by a later GET of its name, which
 *     gives a proxy already triggered as its token was;
 *   - NMANY asynchronous TRIGGERs pending at once each complete once, with
 *     the right result (the request index, with deletions in any order);
 *   - a second connection after the first is freed gets the same handles
 *     as grants (tokens already triggered, no subscription) and may
 *     TRIGGER every one of them, and a second server's TRIGGERs of live
 *     proxies fire the right tokens.
 * No timing: waits are unbounded or LONG_DEADLINE(), and the ctest TIMEOUT
 * turns a hang into a failure.  Figures are in bench/ (net_bench), not
 * here.
 */
#include "net_test_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define NMANY 20000

struct many {
  char dir[64], path[96];
  ct_net_server *s;
  ct_token *tok[NMANY];
  ct_token *px[NMANY];
  size_t order[NMANY];
  size_t thread_errors; /* trigger_all()'s, read after the join */
};

static void name_of(size_t i, char buf[32]) {
  snprintf(buf, 32, "many-%zu", i);
}

static uint64_t proxies_now(ct_net_server *s) {
  ct_net_server_stats st;
  ct_net_server_get_stats(s, &st);
  return st.proxies;
}

/* Proxy px fired as token i was triggered by trigger_all(). */
static void assert_fired_as(ct_token *px, size_t i) {
  char name[32];
  name_of(i, name);
  ASSERT_OK(ct_token_wait(px, LONG_DEADLINE()));
  int d = -1;
  assert_int_equal(ct_token_reason(px, &d), CT_REASON_TRIGGER);
  assert_int_equal(d, (int)(i % 251));
  ct_token *by = ct_token_triggered_token(px);
  assert_non_null(by);
  assert_string_equal(ct_token_name(by), name);
  assert_string_equal(ct_token_name(px), name);
}

/* The triggering thread: no cmocka assertion off the main thread; it
 * counts what went wrong in m->thread_errors, checked after the join. */
static void *trigger_all(void *arg) {
  struct many *m = arg;
  size_t *ord = malloc(NMANY * sizeof *ord);
  if (!ord) {
    m->thread_errors = NMANY;
    return NULL;
  }
  t_shuffle(ord, NMANY, 0x5eed1234);
  for (size_t k = 0; k < NMANY; k++) {
    size_t i = ord[k];
    if (ct_token_trigger_reason(m->tok[i], CT_REASON_TRIGGER,
                                (int)(i % 251)) != 1)
      m->thread_errors++;
  }
  free(ord);
  return NULL;
}

struct async_count {
  atomic_size_t done, wrong;
  int want;
};

static void on_done(void *arg, int result) {
  struct async_count *a = arg;
  /* wrong: relaxed, published by the release below.  done: release,
   * paired with the waiter's acquire load, so that once it sees the total
   * every callback's accesses to *a happened before it reuses the stack
   * *a lives on. */
  if (result != a->want)
    atomic_fetch_add_explicit(&a->wrong, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&a->done, 1, memory_order_release);
}

/* Send a TRIGGER of every proxy in px at once (none waits for the one
 * before), then wait until all have completed; each must say `want`. */
static void trigger_all_async(ct_net_client *c, ct_token **px, int want) {
  struct async_count a = {.want = want};
  for (size_t i = 0; i < NMANY; i++)
    ASSERT_OK(ct_net_client_trigger_async(c, px[i], CT_REASON_TRIGGER, 7,
                                          on_done, &a));
  while (atomic_load_explicit(&a.done, memory_order_acquire) < NMANY)
    usleep(1000);
  assert_int_equal(atomic_load_explicit(&a.wrong, memory_order_relaxed), 0);
}

static void get_all(ct_net_client *c, ct_token **px) {
  for (size_t i = 0; i < NMANY; i++) {
    char name[32];
    name_of(i, name);
    ASSERT_OK(ct_net_client_get(c, &px[i], name, LONG_DEADLINE()));
    assert_non_null(px[i]);
  }
}

/* A server on a fresh socket path serving NMANY tokens, named by
 * name_of(), with room for all of them on one connection. */
static void serve_many(struct many *m) {
  t_sock_path(m->dir, m->path);
  ct_net_server_options o = CT_NET_SERVER_OPTIONS_INIT;
  o.max_proxies_per_client = NMANY;
  ASSERT_OK(ct_net_server_new(&m->s, m->path, &o));
  for (size_t i = 0; i < NMANY; i++) {
    char name[32];
    name_of(i, name);
    ASSERT_OK(ct_token_new(&m->tok[i], name));
    ASSERT_OK(ct_net_server_add(m->s, name, m->tok[i]));
  }
  ASSERT_OK(ct_net_server_start(m->s));
}

static void test_many_proxies_on_one_connection(void **state) {
  (void)state;
  struct many *m = calloc(1, sizeof *m);
  assert_non_null(m);
  serve_many(m);
  ct_net_client *c;
  ASSERT_OK(ct_net_client_connect(&c, m->path, NULL, NULL, 0,
                                  LONG_DEADLINE()));

  /* Many proxies, each its token's; a second GET is the same proxy. */
  get_all(c, m->px);
  for (size_t i = 0; i < NMANY; i += 7) {
    char name[32];
    name_of(i, name);
    ct_token *again;
    ASSERT_OK(ct_net_client_get(c, &again, name, LONG_DEADLINE()));
    assert_ptr_equal(again, m->px[i]);
    ct_token_unref(again);
  }
  for (size_t i = 0; i < NMANY; i++) {
    char name[32];
    name_of(i, name);
    assert_string_equal(ct_token_name(m->px[i]), name);
    assert_false(ct_token_triggered(m->px[i]));
  }
  assert_int_equal(proxies_now(m->s), NMANY); /* GET replied: subscribed */

  /* All fire, from another thread, while half the proxies are dropped. */
  t_shuffle(m->order, NMANY, 0xfeedbeef);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, trigger_all, m), 0);
  for (size_t k = 0; k < NMANY / 2; k++) {
    size_t i = m->order[k];
    ct_token_unref(m->px[i]);
    m->px[i] = NULL;
  }
  for (size_t k = NMANY / 2; k < NMANY; k++)
    assert_fired_as(m->px[m->order[k]], m->order[k]);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(m->thread_errors, 0);

  /* The dropped proxies' handles, reused: the same names give proxies
   * triggered as their tokens were. */
  for (size_t k = 0; k < NMANY / 2; k++) {
    size_t i = m->order[k];
    char name[32];
    name_of(i, name);
    ASSERT_OK(ct_net_client_get(c, &m->px[i], name, LONG_DEADLINE()));
    assert_fired_as(m->px[i], i);
  }
  assert_int_equal(proxies_now(m->s), NMANY);

  /* NMANY requests pending at once; the tokens fired already: each ACK
   * says "not by this trigger" (0). */
  trigger_all_async(c, m->px, 0);

  ct_net_client_free(c);
  while (proxies_now(m->s) != 0) /* the server saw the close */
    usleep(1000);
  for (size_t i = 0; i < NMANY; i++) { /* proxies outlive their client */
    assert_fired_as(m->px[i], i);
    ct_token_unref(m->px[i]);
  }

  /* A second connection: the same handles, now grants (no subscription),
   * each of which it may TRIGGER. */
  ASSERT_OK(ct_net_client_connect(&c, m->path, NULL, NULL, 0,
                                  LONG_DEADLINE()));
  get_all(c, m->px);
  for (size_t i = 0; i < NMANY; i++)
    assert_fired_as(m->px[i], i);
  assert_int_equal(proxies_now(m->s), 0);
  trigger_all_async(c, m->px, 0);
  for (size_t i = 0; i < NMANY; i += 101)
    ASSERT_ERR(ct_net_client_trigger(c, m->px[i], CT_REASON_TRIGGER, 0,
                                     LONG_DEADLINE()), 0);
  ct_net_client_free(c);
  for (size_t i = 0; i < NMANY; i++)
    ct_token_unref(m->px[i]);
  ct_net_server_free(m->s);
  for (size_t i = 0; i < NMANY; i++)
    ct_token_unref(m->tok[i]);
  t_rmdir(m->dir, m->path);
  free(m);
}

/* The client's TRIGGERs through many live proxies: each fires the right
 * served token (the server finds the handle in the connection's index),
 * and every proxy of a second client fires with it. */
static void test_many_client_triggers(void **state) {
  (void)state;
  struct many *m = calloc(1, sizeof *m);
  assert_non_null(m);
  ct_token **px2 = calloc(NMANY, sizeof *px2);
  assert_non_null(px2);
  serve_many(m);
  ct_net_client *a, *b;
  ASSERT_OK(ct_net_client_connect(&a, m->path, NULL, NULL, 0,
                                  LONG_DEADLINE()));
  ASSERT_OK(ct_net_client_connect(&b, m->path, NULL, NULL, 0,
                                  LONG_DEADLINE()));
  get_all(a, m->px);
  get_all(b, px2);
  assert_int_equal(proxies_now(m->s), 2 * NMANY);
  /* a triggers every token but the last through its proxy, in a random
   * order, waiting for each ACK (1: this trigger fired it). */
  t_shuffle(m->order, NMANY, 0xabcdef);
  for (size_t k = 0; k < NMANY; k++) {
    size_t i = m->order[k];
    if (i == NMANY - 1)
      continue;
    ASSERT_ERR(ct_net_client_trigger(a, m->px[i], CT_REASON_TRIGGER,
                                     (int)(i % 251), LONG_DEADLINE()), 1);
  }
  for (size_t i = 0; i + 1 < NMANY; i++) {
    assert_true(ct_token_triggered(m->tok[i]));
    assert_fired_as(px2[i], i);
    assert_fired_as(m->px[i], i);
  }
  /* The one not triggered is not, on either side. */
  assert_false(ct_token_triggered(m->tok[NMANY - 1]));
  assert_false(ct_token_triggered(px2[NMANY - 1]));
  assert_false(ct_token_triggered(m->px[NMANY - 1]));
  ct_net_client_free(a);
  ct_net_client_free(b);
  for (size_t i = 0; i < NMANY; i++) {
    ct_token_unref(m->px[i]);
    ct_token_unref(px2[i]);
  }
  ct_net_server_free(m->s);
  for (size_t i = 0; i < NMANY; i++)
    ct_token_unref(m->tok[i]);
  t_rmdir(m->dir, m->path);
  free(px2);
  free(m);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_many_proxies_on_one_connection),
      cmocka_unit_test(test_many_client_triggers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
