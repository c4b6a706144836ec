/* SPDX-License-Identifier: MIT
 *
 * test_zk_review.c -- the findings of an outside review of
 * include/canceltoken_zk.h, each checked against the real 3-member
 * ensemble started by the ctest fixture:
 *  - a published token that fires with a backend-only reason (its parent
 *    is a proxy that lost its owner; the application said "shutdown") is
 *    recorded, not dropped;
 *  - a failed publish leaves no trace in the client;
 *  - a ct_zk_trigger() that timed out after its create was applied is
 *    reported as won exactly once, and counted in records_won;
 *  - ct_zk_list() lists every token beside foreign nodes it cannot read
 *    or that no token can be;
 *  - names and chroots ZooKeeper would refuse are refused up front;
 *  - credentials with a newline are refused from every source, and
 *    bracketed IPv6 members get a clear error.
 * Outcomes only; the deadlines are failure guards, never timing claims.
 */
#include "zk_test_util.h"

#include <stdlib.h>

#define THREADED
#include <zookeeper/zookeeper.h>

static void show_reason(ct_token *t, ct_reason want_reason,
                        const char *want_cause) {
  int d = -1;
  ct_reason r = ct_token_reason(t, &d);
  ct_token *tt = ct_token_triggered_token(t);
  if (r != want_reason || !tt || strcmp(ct_token_name(tt), want_cause) != 0)
    fail_msg("token %s: reason %d, triggered_token %s; expected %d, %s",
             ct_token_name(t), (int)r, tt ? ct_token_name(tt) : "(none)",
             (int)want_reason, want_cause);
}

/* Finding 1: a local trigger of a published token with a backend-only
 * reason is written (before, owned_fired() dropped it: the proxy elsewhere
 * never fired and the status said owned, not triggered). */
static void test_backend_reason_recorded(void **state) {
  (void)state;
  ct_zk_client *a = zt_connect(4000), *b = zt_connect(4000),
               *c = zt_connect(4000);
  ct_token *parent, *P, *job, *pj;
  ASSERT_OK(ct_token_new(&parent, "parent"));
  ASSERT_OK(ct_zk_publish(a, "parent", parent, ZT_OP_DEADLINE()));
  ASSERT_OK(ct_zk_get(b, &P, "parent", ZT_OP_DEADLINE()));
  ASSERT_OK(ct_token_new_child(&job, "job", P));
  ASSERT_OK(ct_zk_publish(b, "job", job, ZT_OP_DEADLINE()));
  ASSERT_OK(ct_zk_get(c, &pj, "job", ZT_OP_DEADLINE()));
  /* The owner of "parent" goes: B's proxy P reports owner lost, so B's
   * published "job" (P's child) fires with CT_REASON_OWNER_LOST. */
  ct_zk_client_free(a);
  ASSERT_OK(ct_token_wait(P, ZT_OP_DEADLINE()));
  assert_int_equal(ct_token_reason(P, NULL), CT_REASON_OWNER_LOST);
  ASSERT_OK(ct_token_wait(job, ZT_OP_DEADLINE()));
  /* ... and that reaches C's proxy of "job" through the record. */
  ASSERT_OK(ct_token_wait(pj, ZT_OP_DEADLINE()));
  show_reason(pj, CT_REASON_OWNER_LOST, "parent");
  ct_zk_status st;
  ASSERT_OK(ct_zk_status_get(c, "job", &st, ZT_OP_DEADLINE()));
  assert_true(st.owned); /* B is alive: the owner was not lost */
  assert_true(st.triggered);
  assert_int_equal(st.reason, CT_REASON_OWNER_LOST);
  assert_string_equal(st.cause, "parent");

  /* The application triggers its own token with a backend-only reason. */
  ct_token *t2, *p2;
  ASSERT_OK(ct_token_new(&t2, "t2"));
  ASSERT_OK(ct_zk_publish(b, "t2", t2, ZT_OP_DEADLINE()));
  ASSERT_OK(ct_zk_get(c, &p2, "t2", ZT_OP_DEADLINE()));
  ASSERT_ERR(ct_token_trigger_reason(t2, CT_REASON_SHUTDOWN, 0), 1);
  ASSERT_OK(ct_token_wait(p2, ZT_OP_DEADLINE()));
  show_reason(p2, CT_REASON_SHUTDOWN, "t2");
  ASSERT_OK(ct_zk_status_get(c, "t2", &st, ZT_OP_DEADLINE()));
  assert_true(st.triggered);
  assert_int_equal(st.reason, CT_REASON_SHUTDOWN);
  assert_int_equal(st.pid, getpid());

  /* A published token chained to a proxy of its own client fires with
   * CT_REASON_SHUTDOWN inside ct_zk_client_free(), after the session is
   * closed: not written (documented); the fleet records "owner lost". */
  ct_token *q, *Q, *kid, *pk;
  ASSERT_OK(ct_token_new(&q, "q"));
  ASSERT_OK(ct_zk_publish(c, "q", q, ZT_OP_DEADLINE()));
  ASSERT_OK(ct_zk_get(b, &Q, "q", ZT_OP_DEADLINE()));
  ASSERT_OK(ct_token_new_child(&kid, "kid", Q));
  ASSERT_OK(ct_zk_publish(b, "kid", kid, ZT_OP_DEADLINE()));
  ASSERT_OK(ct_zk_get(c, &pk, "kid", ZT_OP_DEADLINE()));
  ct_zk_client_free(b);
  assert_int_equal(ct_token_reason(Q, NULL), CT_REASON_SHUTDOWN);
  assert_int_equal(ct_token_reason(kid, NULL), CT_REASON_SHUTDOWN);
  ASSERT_OK(ct_token_wait(pk, ZT_OP_DEADLINE()));
  show_reason(pk, CT_REASON_OWNER_LOST, "kid");
  assert_false(ct_token_triggered(q));

  ct_zk_client_free(c);
  ct_token_unref(q);
  ct_token_unref(Q);
  ct_token_unref(kid);
  ct_token_unref(pk);
  ct_token_unref(parent);
  ct_token_unref(P);
  ct_token_unref(job);
  ct_token_unref(pj);
  ct_token_unref(t2);
  ct_token_unref(p2);
}

/* Finding 2: a publish that fails with -EEXIST must not leave its token's
 * name in the client (before, a later ct_zk_get in B gave a proxy named
 * "beta", and its triggered_token became a stand-in "alpha"). */
static void test_failed_publish_no_effect(void **state) {
  (void)state;
  ct_zk_client *a = zt_connect(4000), *b = zt_connect(4000);
  ct_token *ta, *tb, *pb;
  ASSERT_OK(ct_token_new(&ta, "alpha"));
  ASSERT_OK(ct_token_new(&tb, "beta"));
  ASSERT_OK(ct_zk_publish(a, "a", ta, ZT_OP_DEADLINE()));
  ASSERT_ERR(ct_zk_publish(b, "a", tb, ZT_OP_DEADLINE()), -EEXIST);
  ASSERT_OK(ct_zk_get(b, &pb, "a", ZT_OP_DEADLINE()));
  assert_string_equal(ct_token_name(pb), "alpha");
  ASSERT_ERR(ct_token_trigger(ta), 1);
  ASSERT_OK(ct_token_wait(pb, ZT_OP_DEADLINE()));
  assert_ptr_equal(ct_token_triggered_token(pb), pb); /* no stand-in */
  /* beta was never taken: B may publish it elsewhere. */
  ASSERT_OK(ct_zk_publish(b, "b", tb, ZT_OP_DEADLINE()));
  ct_zk_client_free(b);
  ct_zk_client_free(a);
  ct_token_unref(ta);
  ct_token_unref(tb);
  ct_token_unref(pb);
}

/* Finding 5: a ct_zk_trigger() whose deadline (0) passed but whose create
 * was applied won; "won" must still be reported once (before, every later
 * call returned 0 and records_won stayed 0: nobody ever won). */
static void test_timed_out_trigger_won_once(void **state) {
  (void)state;
  ct_zk_client *a = zt_connect(4000), *b = zt_connect(4000);
  ct_token *t, *p;
  ASSERT_OK(ct_token_new(&t, "once"));
  ASSERT_OK(ct_zk_publish(a, "once", t, ZT_OP_DEADLINE()));
  ASSERT_OK(ct_zk_get(b, &p, "once", ZT_OP_DEADLINE()));
  int wins = 0;
  int rc = ct_zk_trigger(b, p, CT_REASON_USER + 1, 2, 0);
  if (rc != -ETIMEDOUT && rc != 1)
    fail_msg("ct_zk_trigger(deadline 0) = %d", rc);
  wins += rc == 1;
  /* The create was sent: its watch triggers the proxy once applied. */
  ASSERT_OK(ct_token_wait(p, ZT_OP_DEADLINE()));
  rc = ct_zk_trigger(b, p, CT_REASON_TRIGGER, 0, ZT_OP_DEADLINE());
  assert_true(rc == 0 || rc == 1);
  wins += rc;
  ASSERT_ERR(ct_zk_trigger(b, p, CT_REASON_TRIGGER, 0, ZT_OP_DEADLINE()), 0);
  ASSERT_ERR(ct_zk_trigger(a, t, CT_REASON_TRIGGER, 0, ZT_OP_DEADLINE()), 0);
  assert_int_equal(wins, 1);
  ct_zk_stats sb, sa;
  ct_zk_get_stats(b, &sb);
  ct_zk_get_stats(a, &sa);
  assert_int_equal(sb.records_won, 1);
  assert_int_equal(sa.records_won, 0);
  ct_zk_status st;
  ASSERT_OK(ct_zk_status_get(a, "once", &st, ZT_OP_DEADLINE()));
  assert_int_equal(st.reason, CT_REASON_USER + 1);
  assert_int_equal(st.detail, 2);
  assert_int_equal(ct_token_reason(t, NULL), CT_REASON_USER + 1);
  ct_zk_client_free(b);
  ct_zk_client_free(a);
  ct_token_unref(t);
  ct_token_unref(p);
}

/* --- a plain ZooKeeper handle, for foreign nodes under our chroot --- */

static void raw_watcher(zhandle_t *zh, int type, int st, const char *path,
                        void *ctx) {
  (void)zh, (void)type, (void)st, (void)path, (void)ctx;
}

static void raw_create(zhandle_t *zh, const char *path,
                       const struct ACL_vector *acl) {
  int rc;
  for (int i = 0; i < 600; i++) { /* until the handle has connected */
    rc = zoo_create(zh, path, "x", 1, acl, 0, NULL, 0);
    if (rc != ZCONNECTIONLOSS && rc != ZINVALIDSTATE &&
        rc != ZOPERATIONTIMEOUT)
      break;
    usleep(100000);
  }
  if (rc != ZOK)
    fail_msg("zoo_create %s: %s", path, zerror(rc));
}

struct seen {
  int n;
  bool x, y;
};

static void on_token(void *arg, const char *name, const ct_zk_status *st) {
  struct seen *s = arg;
  (void)st;
  s->n++;
  s->x |= strcmp(name, "x") == 0;
  s->y |= strcmp(name, "plain/y") == 0;
}

/* Finding 3: one foreign node under the chroot made the whole listing fail
 * (-ENAMETOOLONG for a name over 255 bytes, -EACCES for an unreadable one). */
static void test_list_beside_foreign_nodes(void **state) {
  (void)state;
  /* A chroot of its own: the other cases' tokens are in zt_addr's. */
  char addr[2300], err[256];
  snprintf(addr, sizeof addr, "%s/list", zt_addr);
  ct_zk_options o = CT_ZK_OPTIONS_INIT;
  o.log = zt_quiet;
  ct_zk_client *c = NULL;
  int crc = ct_zk_connect(&c, addr, &o, err, sizeof err, ZT_OP_DEADLINE());
  if (crc < 0)
    fail_msg("connect %s: %d (%s)", addr, crc, err);
  ct_token *x, *y;
  ASSERT_OK(ct_token_new(&x, "x"));
  ASSERT_OK(ct_token_new(&y, "y"));
  ASSERT_OK(ct_zk_publish(c, "x", x, ZT_OP_DEADLINE()));
  ASSERT_OK(ct_zk_publish(c, "plain/y", y, ZT_OP_DEADLINE()));
  const char *chroot = strchr(addr + 5, '/');
  assert_non_null(chroot);
  zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
  zhandle_t *zh = zookeeper_init(zt_hosts, raw_watcher, 10000, NULL, NULL, 0);
  assert_non_null(zh);
  char p[1024];
  int l = snprintf(p, sizeof p, "%s/", chroot);
  memset(p + l, 'L', 300);
  p[l + 300] = '\0';
  raw_create(zh, p, &ZOO_OPEN_ACL_UNSAFE); /* a name no token can have */
  struct ACL a1[1] = {{ZOO_PERM_ALL,
                       {(char *)"digest",
                        (char *)"other:4uDyIvQR5sIZZOQDcVu8cDDEjVo="}}};
  struct ACL_vector av = {1, a1};
  snprintf(p, sizeof p, "%s/secret", chroot);
  raw_create(zh, p, &av); /* not readable by us */
  snprintf(p, sizeof p, "%s/plain/data", chroot);
  raw_create(zh, p, &ZOO_OPEN_ACL_UNSAFE); /* not a token: passed over */
  zookeeper_close(zh);
  struct seen s = {0};
  ASSERT_ERR(ct_zk_list(c, on_token, &s, ZT_OP_DEADLINE()), 2);
  assert_int_equal(s.n, 2);
  assert_true(s.x && s.y);
  ct_zk_client_free(c);
  ct_token_unref(x);
  ct_token_unref(y);
}

/* Finding 6: names ZooKeeper refuses are refused before anything is sent
 * (before, they went to the server: with deadline 0, -ETIMEDOUT). */
static void test_names_checked_up_front(void **state) {
  (void)state;
  ct_zk_client *c = zt_connect(4000);
  const char *bad[] = {
      "smile-\xf0\x9f\x98\x80", /* U+1F600, outside the BMP */
      "priv-\xee\x80\x80",      /* U+E000, private use */
      "spec-\xef\xbf\xb5",      /* U+FFF5 */
      "c1-\xc2\x85",            /* U+0085, a C1 control */
      "@owner", "a/@b", "a//b", "a/./b", "a/..", "tab\there",
  };
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    ct_token *p = NULL;
    ct_zk_status st;
    int rc = ct_zk_publish(c, bad[i], t, 0);
    if (rc != -EINVAL)
      fail_msg("publish '%s' (deadline 0) = %d, expected -EINVAL", bad[i], rc);
    ASSERT_ERR(ct_zk_get(c, &p, bad[i], 0), -EINVAL);
    ASSERT_ERR(ct_zk_status_get(c, bad[i], &st, 0), -EINVAL);
  }
  /* What ZooKeeper takes, we take: accents, CJK, the rest of the BMP. */
  ASSERT_OK(ct_zk_publish(c, "na\xc3\xafve/\xe6\x97\xa5\xe6\x9c\xac", t,
                          ZT_OP_DEADLINE()));
  ct_zk_client_free(c);
  ct_token_unref(t);
}

/* Finding 7: a chroot ZooKeeper cannot use, a bracketed IPv6 member and
 * credentials with a newline from the environment are refused at connect
 * (before: connected, -ENOENT "did not resolve?", and accepted). */
static void test_connect_refusals(void **state) {
  (void)state;
  ct_zk_client *c = NULL;
  char addr[2300], err[512];
  snprintf(addr, sizeof addr, "zk://%s/bad\xff", zt_hosts);
  ASSERT_ERR(ct_zk_connect(&c, addr, NULL, err, sizeof err, 0), -EINVAL);
  assert_null(c);
  assert_non_null(strstr(err, "chroot"));
  snprintf(addr, sizeof addr, "zk://%s/ok/\xee\x80\x80", zt_hosts);
  ASSERT_ERR(ct_zk_connect(&c, addr, NULL, err, sizeof err, 0), -EINVAL);
  const char *port = strrchr(zt_hosts, ':');
  assert_non_null(port);
  snprintf(addr, sizeof addr, "zk://[::1]%.*s/x", (int)strcspn(port, ","),
           port);
  err[0] = '\0';
  int rc = ct_zk_connect(&c, addr, NULL, err, sizeof err, 0);
  if (rc == 0)
    ct_zk_client_free(c); /* the parser refusing it is fine too */
  assert_int_equal(rc, -EINVAL);
  assert_true(strlen(err) > 0);

  ct_zk_options o = CT_ZK_OPTIONS_INIT;
  o.log = zt_quiet;
  o.auth = "u:p\nzz";
  ASSERT_ERR(ct_zk_connect(&c, zt_addr, &o, err, sizeof err, 0), -EPROTO);
  o.auth = NULL;
  setenv(CT_ZK_AUTH_ENV, "u:p\nzz", 1);
  unsetenv(CT_ZK_AUTH_FILE_ENV);
  rc = ct_zk_connect(&c, zt_addr, &o, err, sizeof err, ZT_OP_DEADLINE());
  unsetenv(CT_ZK_AUTH_ENV);
  if (rc == 0)
    ct_zk_client_free(c);
  assert_int_equal(rc, -EPROTO);
}

int main(void) {
  zt_setup();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_backend_reason_recorded),
      cmocka_unit_test(test_failed_publish_no_effect),
      cmocka_unit_test(test_timed_out_trigger_won_once),
      cmocka_unit_test(test_list_beside_foreign_nodes),
      cmocka_unit_test(test_names_checked_up_front),
      cmocka_unit_test(test_connect_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
