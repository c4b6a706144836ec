/* SPDX-License-Identifier: MIT
 *
 * test_zk.c -- the ZooKeeper backend against a real 3-member ensemble
 * (started by the ctest fixture) with real processes: bad input, a proxy
 * attached after the trigger, 50 proxy processes, 10 processes racing to
 * trigger, the owner killed with SIGKILL, credentials and ACLs.  Outcomes
 * are asserted, never durations (those are in bench/zk_bench.c).
 */
#include "zk_test_util.h"

#include <stdlib.h>

#include <sys/stat.h>

#define LINE_MS 60000 /* guard against a hung peer; never a timing claim */

static void test_bad_input(void **state) {
  (void)state;
  ct_zk_client *c = NULL;
  char err[256];
  const char *bad[] = {"zk://", "zk://host", "zk://127.0.0.1:99999",
                       "zk://127.0.0.1:2181/a/", "zk://127.0.0.1:2181,",
                       "zk://127.0.0.1:0", "zk://127.0.0.1:2181//x",
                       "/tmp/socket.sock", "127.0.0.1:2181", ""};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    err[0] = '\0';
    ASSERT_ERR(ct_zk_connect(&c, bad[i], NULL, err, sizeof err, 0), -EINVAL);
    assert_null(c);
    assert_true(strlen(err) > 0); /* a clear message */
  }
  ASSERT_ERR(ct_zk_connect(NULL, zt_addr, NULL, NULL, 0, 0), -EINVAL);
  ASSERT_ERR(ct_zk_connect(&c, NULL, NULL, NULL, 0, 0), -EINVAL);

  /* ABI-safe options: a size this library does not know is refused
   * before anything else of the struct is read or any connection made. */
  ct_zk_options wrong = CT_ZK_OPTIONS_INIT;
  wrong.size = sizeof wrong + 8;
  err[0] = '\0';
  ASSERT_ERR(ct_zk_connect(&c, zt_addr, &wrong, err, sizeof err, 0), -EINVAL);
  assert_null(c);
  assert_non_null(strstr(err, "unknown size"));
  wrong.size = 3;
  ASSERT_ERR(ct_zk_connect(&c, zt_addr, &wrong, NULL, 0, 0), -EINVAL);
  /* The first layout in a heap block of exactly its size (ASan sees any
   * read past it), and ct_zk_options_init(): both connect. */
  ct_zk_options *old = malloc(CT_ZK_OPTIONS_SIZE_1);
  assert_non_null(old);
  memset(old, 0, CT_ZK_OPTIONS_SIZE_1);
  old->size = CT_ZK_OPTIONS_SIZE_1;
  old->log = zt_quiet;
  ASSERT_OK(ct_zk_connect(&c, zt_addr, old, err, sizeof err,
                          ct_deadline_after(30000000000LL)));
  ct_zk_client_free(c);
  c = NULL;
  free(old);
  ct_zk_options fresh;
  ct_zk_options_init(&fresh);
  assert_int_equal(fresh.size, sizeof fresh);
  fresh.log = zt_quiet;
  ASSERT_OK(ct_zk_connect(&c, zt_addr, &fresh, err, sizeof err,
                          ct_deadline_after(30000000000LL)));
  ct_zk_client_free(c);
  c = NULL;
  ct_zk_options_init(NULL); /* does nothing */

  /* Unreachable at connect: a port nobody listens on.  It must return
   * with -ETIMEDOUT at the deadline instead of hanging (the ctest TIMEOUT
   * is the guard). */
  ASSERT_ERR(ct_zk_connect(&c, "zk://127.0.0.1:1,127.0.0.1:2/x", NULL, err,
                           sizeof err, ct_deadline_after(1500000000)),
             -ETIMEDOUT);
  assert_null(c);
  assert_non_null(strstr(err, "before the deadline"));

  c = zt_connect(4000);
  ct_token *p = NULL, *t;
  /* Bad names. */
  const char *names[] = {"", "/", "a//b", "a/", "@x", "a/@owner", "a/./b",
                         "..", "a\nb"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    ASSERT_ERR(ct_zk_get(c, &p, names[i], ZT_OP_DEADLINE()),
               -EINVAL);
  char longname[CT_ZK_NAME_MAX + 8];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  ASSERT_ERR(ct_zk_get(c, &p, longname, CT_FOREVER), -ENAMETOOLONG);
  ASSERT_ERR(ct_zk_get(c, &p, NULL, CT_FOREVER), -EINVAL);
  ASSERT_ERR(ct_zk_get(c, &p, "x", -5), -EINVAL);
  /* No such token (the chroot itself does not exist yet either). */
  ASSERT_ERR(ct_zk_get(c, &p, "nothing/here", ZT_OP_DEADLINE()),
             -ENOENT);
  /* A path that exists but is not a token: the parent made by publish. */
  ASSERT_OK(ct_token_new(&t, "leaf"));
  ASSERT_OK(ct_zk_publish(c, "dir/leaf", t, ZT_OP_DEADLINE()));
  ASSERT_ERR(ct_zk_get(c, &p, "dir", ZT_OP_DEADLINE()), -EPROTO);
  assert_null(p);
  /* One-shot names: publishing again is refused. */
  ct_token *t2;
  ASSERT_OK(ct_token_new(&t2, "leaf"));
  ASSERT_ERR(ct_zk_publish(c, "dir/leaf", t2, ZT_OP_DEADLINE()),
             -EEXIST);
  /* Trigger of a token that is not this client's. */
  ASSERT_ERR(ct_zk_trigger(c, t2, CT_REASON_TRIGGER, 0, CT_FOREVER), -EINVAL);
  /* Backend-only reasons may not be sent. */
  ASSERT_ERR(ct_zk_trigger(c, t, CT_REASON_OWNER_LOST, 0, CT_FOREVER),
             -EINVAL);
  ASSERT_ERR(ct_zk_trigger(c, t, CT_REASON_UNREACHABLE, 0, CT_FOREVER),
             -EINVAL);
  ASSERT_ERR(ct_zk_trigger(c, t, CT_REASON_TRIGGER, 256, CT_FOREVER), -EINVAL);
  ct_zk_status st;
  ASSERT_OK(ct_zk_status_get(c, "dir/leaf", &st, ZT_OP_DEADLINE()));
  assert_true(st.owned);
  assert_false(st.triggered);
  assert_int_equal(st.owner_pid, getpid());
  ASSERT_ERR(ct_zk_status_get(c, "dir", &st, ZT_OP_DEADLINE()),
             -EPROTO);
  assert_true(ct_zk_session_timeout(c) > 0);
  ct_zk_client_free(c);
  ct_token_unref(t);
  ct_token_unref(t2);
}

struct seen {
  int n, late;
};
static void on_token(void *arg, const char *name, const ct_zk_status *st) {
  struct seen *s = arg;
  s->n++;
  if (strcmp(name, "late") == 0 && st->triggered &&
      st->reason == CT_REASON_USER + 3)
    s->late++;
}

/* Runs after the two tests that publish "dir/leaf" and "late". */
static void test_list(void **state) {
  (void)state;
  ct_zk_client *c = zt_connect(4000);
  struct seen s = {0};
  int n = ct_zk_list(c, on_token, &s, ZT_OP_DEADLINE());
  assert_true(n >= 2);
  assert_int_equal(n, s.n);
  /* (dir/leaf is listed too; its owner's client is gone, so its state
   * depends on who watched it: only "late"'s is checked.) */
  assert_int_equal(s.late, 1);
  ASSERT_ERR(ct_zk_list(c, NULL, NULL, CT_FOREVER), -EINVAL);
  ct_zk_client_free(c);
}

static void test_attached_after_trigger(void **state) {
  (void)state;
  ct_zk_client *c = zt_connect(4000);
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "late"));
  ASSERT_OK(ct_zk_publish(c, "late", t, ZT_OP_DEADLINE()));
  ASSERT_ERR(ct_zk_trigger(c, t, CT_REASON_USER + 3, 7, CT_FOREVER), 1);
  assert_true(ct_token_triggered(t));
  int d = -1;
  assert_int_equal(ct_token_reason(t, &d), CT_REASON_USER + 3);
  assert_int_equal(d, 7);
  /* A second trigger loses (first wins) and changes nothing. */
  ASSERT_ERR(ct_zk_trigger(c, t, CT_REASON_USER + 4, 0, CT_FOREVER), 0);

  /* Another session, this process: the proxy is triggered before
   * ct_zk_get() returns. */
  ct_zk_client *c2 = zt_connect(4000);
  ct_token *p;
  ASSERT_OK(ct_zk_get(c2, &p, "late", ZT_OP_DEADLINE()));
  assert_true(ct_token_is_proxy(p));
  assert_true(ct_token_triggered(p));
  assert_int_equal(ct_token_reason(p, &d), CT_REASON_USER + 3);
  assert_int_equal(d, 7);
  assert_string_equal(ct_token_name(ct_token_triggered_token(p)), "late");
  /* A proxy cannot be chained from, but can be chained with. */
  ct_token *x, *ch;
  ASSERT_OK(ct_token_new(&x, "x"));
  ASSERT_ERR(ct_token_chain(&ch, p, x), -ENOTSUP);
  ASSERT_OK(ct_token_chain(&ch, x, p));
  assert_true(ct_token_triggered(ch));
  ct_token_unref(ch);
  ct_token_unref(x);

  /* And in another process. */
  struct zt_peer pr;
  char line[512];
  zt_peer_start(&pr, "proxy", "late", "3");
  zt_peer_line(&pr, line, sizeof line, LINE_MS);
  assert_true(strncmp(line, "ready", 5) == 0);
  zt_peer_line(&pr, line, sizeof line, LINE_MS);
  assert_string_equal(line, "fired 67 late 1");
  zt_peer_send(&pr, "quit\n");
  zt_peer_line(&pr, line, sizeof line, LINE_MS);
  assert_string_equal(line, "calls 3");
  assert_int_equal(zt_peer_end(&pr), 0);

  ct_zk_client_free(c2);
  /* Freed client: a proxy stays a valid (triggered) token. */
  assert_true(ct_token_triggered(p));
  ct_token_unref(p);
  ct_zk_client_free(c);
  ct_token_unref(t);
}

#define FAN 50

static void test_fanout_50_processes(void **state) {
  (void)state;
  struct zt_peer owner, px[FAN];
  char line[512];
  zt_peer_start(&owner, "owner", "fan", NULL);
  zt_peer_line(&owner, line, sizeof line, LINE_MS);
  assert_true(strncmp(line, "ready", 5) == 0);
  for (int i = 0; i < FAN; i++)
    zt_peer_start(&px[i], "proxy", "fan", "1");
  for (int i = 0; i < FAN; i++) {
    zt_peer_line(&px[i], line, sizeof line, LINE_MS);
    assert_true(strncmp(line, "ready", 5) == 0);
  }
  zt_peer_send(&owner, "trigger 65\n");
  zt_peer_line(&owner, line, sizeof line, LINE_MS);
  assert_string_equal(line, "trig 1");
  for (int i = 0; i < FAN; i++) {
    zt_peer_line(&px[i], line, sizeof line, LINE_MS);
    assert_string_equal(line, "fired 65 fan 1");
    zt_peer_send(&px[i], "quit\n");
  }
  for (int i = 0; i < FAN; i++) {
    zt_peer_line(&px[i], line, sizeof line, LINE_MS);
    assert_string_equal(line, "calls 1"); /* exactly once */
    assert_int_equal(zt_peer_end(&px[i]), 0);
  }
  zt_peer_send(&owner, "wait\n");
  zt_peer_line(&owner, line, sizeof line, LINE_MS);
  assert_string_equal(line, "fired 65 fan");
  zt_peer_send(&owner, "quit\n");
  assert_int_equal(zt_peer_end(&owner), 0);
}

#define RACERS 10

static void test_ten_racers_one_winner(void **state) {
  (void)state;
  ct_zk_client *c = zt_connect(4000);
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "race"));
  ASSERT_OK(ct_zk_publish(c, "race", t, ZT_OP_DEADLINE()));
  struct zt_peer r[RACERS];
  char line[512];
  for (int i = 0; i < RACERS; i++)
    zt_peer_start(&r[i], "racer", "race", NULL);
  for (int i = 0; i < RACERS; i++) {
    zt_peer_line(&r[i], line, sizeof line, LINE_MS);
    assert_true(strncmp(line, "ready", 5) == 0);
  }
  for (int i = 0; i < RACERS; i++) {
    char go[32];
    snprintf(go, sizeof go, "go %d\n", 100 + i);
    zt_peer_send(&r[i], go);
  }
  int winners = 0, winner_reason = -1, winner = -1, reasons[RACERS];
  for (int i = 0; i < RACERS; i++) {
    int rc, reason;
    zt_peer_line(&r[i], line, sizeof line, LINE_MS);
    assert_int_equal(sscanf(line, "won %d %d", &rc, &reason), 2);
    assert_true(rc == 0 || rc == 1);
    reasons[i] = reason;
    if (rc == 1) {
      winners++;
      winner_reason = 100 + i;
      winner = i;
      assert_int_equal(reason, 100 + i);
    }
    zt_peer_send(&r[i], "quit\n");
  }
  assert_int_equal(winners, 1);
  for (int i = 0; i < RACERS; i++) /* everybody agrees on the winner */
    assert_int_equal(reasons[i], winner_reason);
  assert_int_equal(ct_token_wait(t, ct_deadline_after(30000000000)), 0);
  assert_int_equal(ct_token_reason(t, NULL), winner_reason);
  ct_zk_status st;
  ASSERT_OK(ct_zk_status_get(c, "race", &st, ZT_OP_DEADLINE()));
  assert_true(st.triggered);
  assert_int_equal(st.reason, winner_reason);
  assert_int_equal(st.pid, r[winner].pid); /* origin: the winner */
  for (int i = 0; i < RACERS; i++)
    assert_int_equal(zt_peer_end(&r[i]), 0);
  ct_zk_client_free(c);
  ct_token_unref(t);
}

static void test_owner_killed_is_owner_lost(void **state) {
  (void)state;
  setenv("ZK_PEER_SESSION_MS", "1000", 1);
  struct zt_peer owner, px[3];
  char line[512];
  zt_peer_start(&owner, "owner", "doomed", NULL);
  unsetenv("ZK_PEER_SESSION_MS");
  zt_peer_line(&owner, line, sizeof line, LINE_MS);
  assert_true(strncmp(line, "ready", 5) == 0);
  for (int i = 0; i < 3; i++)
    zt_peer_start(&px[i], "proxy", "doomed", "2");
  for (int i = 0; i < 3; i++) {
    zt_peer_line(&px[i], line, sizeof line, LINE_MS);
    assert_true(strncmp(line, "ready", 5) == 0);
  }
  zt_peer_kill(&owner, SIGKILL);
  assert_int_equal(zt_peer_end(&owner), 128 + SIGKILL);
  char want[64];
  snprintf(want, sizeof want, "fired %d doomed 1", CT_REASON_OWNER_LOST);
  for (int i = 0; i < 3; i++) {
    zt_peer_line(&px[i], line, sizeof line, LINE_MS);
    assert_string_equal(line, want);
    zt_peer_send(&px[i], "quit\n");
    zt_peer_line(&px[i], line, sizeof line, LINE_MS);
    assert_string_equal(line, "calls 2");
    assert_int_equal(zt_peer_end(&px[i]), 0);
  }
  /* Recorded, so that everybody, later ones too, agrees. */
  ct_zk_client *c = zt_connect(4000);
  ct_zk_status st;
  ASSERT_OK(ct_zk_status_get(c, "doomed", &st, ZT_OP_DEADLINE()));
  assert_false(st.owned);
  assert_true(st.triggered);
  assert_int_equal(st.reason, CT_REASON_OWNER_LOST);
  ct_token *p;
  ASSERT_OK(ct_zk_get(c, &p, "doomed", ZT_OP_DEADLINE()));
  assert_int_equal(ct_token_reason(p, NULL), CT_REASON_OWNER_LOST);
  ct_token_unref(p);
  ct_zk_client_free(c);
}

static char *write_cred(const char *content, mode_t mode) {
  char *path = strdup("/tmp/zk-cred-XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, content, strlen(content)),
                   (ssize_t)strlen(content));
  fchmod(fd, mode);
  close(fd);
  return path;
}

static ct_zk_client *connect_cred(const char *file, int *rc) {
  ct_zk_options o = {0};
  o.auth_file = file;
  o.no_auth_env = true;
  o.log = zt_quiet;
  o.session_timeout_ns = 4000000000LL;
  ct_zk_client *c = NULL;
  char err[256];
  *rc = ct_zk_connect(&c, zt_addr, &o, err, sizeof err,
                      ct_deadline_after(30000000000LL));
  return c;
}

static void test_credentials_and_acl(void **state) {
  (void)state;
  char *good = write_cred("alice:s3cret\n", 0600);
  char *wrong = write_cred("alice:guess", 0600);
  char *open_mode = write_cred("alice:s3cret", 0644);
  char *malformed = write_cred("no-colon-here", 0600);
  int rc;
  ct_zk_client *bad = connect_cred(open_mode, &rc);
  ASSERT_ERR(rc, -EACCES);
  assert_null(bad);
  bad = connect_cred(malformed, &rc);
  ASSERT_ERR(rc, -EPROTO);
  bad = connect_cred("/nonexistent/cred", &rc);
  ASSERT_ERR(rc, -ENOENT);

  ct_zk_client *a = connect_cred(good, &rc);
  ASSERT_OK(rc);
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "guarded"));
  ASSERT_OK(ct_zk_publish(a, "acl/guarded", t, ZT_OP_DEADLINE()));

  /* Without credentials: may watch (world-readable), may not trigger. */
  ct_zk_client *anon = zt_connect(4000);
  ct_token *pa;
  ASSERT_OK(ct_zk_get(anon, &pa, "acl/guarded", ZT_OP_DEADLINE()));
  ASSERT_ERR(ct_zk_trigger(anon, pa, CT_REASON_TRIGGER, 0,
                           ZT_OP_DEADLINE()),
             -EACCES);
  /* nor publish under the guarded parent */
  ct_token *t3;
  ASSERT_OK(ct_token_new(&t3, "intruder"));
  ASSERT_ERR(ct_zk_publish(anon, "acl/intruder", t3,
                           ZT_OP_DEADLINE()),
             -EACCES);
  /* Wrong password: the same. */
  ct_zk_client *w = connect_cred(wrong, &rc);
  ASSERT_OK(rc);
  ct_token *pw;
  ASSERT_OK(ct_zk_get(w, &pw, "acl/guarded", ZT_OP_DEADLINE()));
  ASSERT_ERR(ct_zk_trigger(w, pw, CT_REASON_TRIGGER, 0,
                           ZT_OP_DEADLINE()),
             -EACCES);
  ct_zk_status st;
  ASSERT_OK(ct_zk_status_get(a, "acl/guarded", &st,
                             ZT_OP_DEADLINE()));
  assert_false(st.triggered);
  assert_false(ct_token_triggered(t));

  /* The holder can (credentials given by the program this time); everybody
   * sees it. */
  ct_zk_options ao = {0};
  ao.auth = "alice:s3cret";
  ao.no_auth_env = true;
  ao.log = zt_quiet;
  ct_zk_client *a2 = NULL;
  ASSERT_OK(ct_zk_connect(&a2, zt_addr, &ao, NULL, 0,
                          ct_deadline_after(30000000000LL)));
  ct_token *p2;
  ASSERT_OK(ct_zk_get(a2, &p2, "acl/guarded", ZT_OP_DEADLINE()));
  ASSERT_ERR(ct_zk_trigger(a2, p2, CT_REASON_USER, 0,
                           ZT_OP_DEADLINE()),
             1);
  assert_int_equal(ct_token_wait(t, ct_deadline_after(30000000000)), 0);
  assert_int_equal(ct_token_wait(pa, ct_deadline_after(30000000000)), 0);
  assert_int_equal(ct_token_reason(pa, NULL), CT_REASON_USER);
  assert_int_equal(ct_token_wait(pw, ct_deadline_after(30000000000)), 0);
  assert_int_equal(ct_token_reason(pw, NULL), CT_REASON_USER);

  ct_zk_client_free(a2);
  ct_zk_client_free(w);
  ct_zk_client_free(anon);
  ct_zk_client_free(a);
  ct_token_unref(t);
  ct_token_unref(t3);
  ct_token_unref(pa);
  ct_token_unref(pw);
  ct_token_unref(p2);
  unlink(good);
  unlink(wrong);
  unlink(open_mode);
  unlink(malformed);
  free(good);
  free(wrong);
  free(open_mode);
  free(malformed);
}

struct reenter {
  ct_zk_client *c;
  _Atomic int rc;
};
/* Runs on the client's thread: its blocking calls must refuse. */
static void reenter_cb(ct_token *t, void *arg) {
  (void)t;
  struct reenter *re = arg;
  ct_token *x = NULL;
  atomic_store(&re->rc, ct_zk_get(re->c, &x, "fwd", CT_FOREVER));
}

/* A local trigger (ct_token_trigger on a proxy) is written for the fleet. */
static void test_local_trigger_forwarded(void **state) {
  (void)state;
  ct_zk_client *c = zt_connect(4000);
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "fwd"));
  ASSERT_OK(ct_zk_publish(c, "fwd", t, ZT_OP_DEADLINE()));
  ct_zk_client *c2 = zt_connect(4000);
  ct_token *p, *p2;
  ASSERT_OK(ct_zk_get(c2, &p, "fwd", ZT_OP_DEADLINE()));
  ASSERT_OK(ct_zk_get(c2, &p2, "fwd", ZT_OP_DEADLINE()));
  assert_ptr_not_equal(p, p2);
  struct reenter re = {c2, 1};
  ct_callback cb = {0};
  ASSERT_OK(ct_callback_register(&cb, p2, reenter_cb, &re));
  ASSERT_ERR(ct_token_trigger_reason(p, CT_REASON_USER + 9, 2), 1);
  /* The owner learns it through the ensemble, and so does the sibling. */
  assert_int_equal(ct_token_wait(t, ct_deadline_after(30000000000)), 0);
  int d;
  assert_int_equal(ct_token_reason(t, &d), CT_REASON_USER + 9);
  assert_int_equal(d, 2);
  assert_int_equal(ct_token_wait(p2, ct_deadline_after(30000000000)), 0);
  assert_int_equal(ct_token_reason(p2, NULL), CT_REASON_USER + 9);
  /* p2 was triggered from the record, on the client's thread, which runs
   * the callback after waking the waiters: wait for it (guarded). */
  for (int i = 0; i < 60000 && atomic_load(&re.rc) == 1; i++)
    usleep(1000);
  ct_callback_unregister(&cb);
  assert_int_equal(atomic_load(&re.rc), -EDEADLK);
  ct_zk_status st;
  ASSERT_OK(ct_zk_status_get(c, "fwd", &st, ZT_OP_DEADLINE()));
  assert_int_equal(st.reason, CT_REASON_USER + 9);
  assert_int_equal(st.pid, getpid());
  assert_string_equal(st.cause, "fwd");
  ct_zk_client_free(c2);
  ct_zk_client_free(c);
  ct_token_unref(p);
  ct_token_unref(p2);
  ct_token_unref(t);
}

int main(void) {
  zt_setup();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_attached_after_trigger),
      cmocka_unit_test(test_list),
      cmocka_unit_test(test_local_trigger_forwarded),
      cmocka_unit_test(test_ten_racers_one_winner),
      cmocka_unit_test(test_fanout_50_processes),
      cmocka_unit_test(test_owner_killed_is_owner_lost),
      cmocka_unit_test(test_credentials_and_acl),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
