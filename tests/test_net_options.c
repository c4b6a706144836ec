/* SPDX-License-Identifier: MIT
 *
 * test_net_options.c -- the options structs' leading size field (issue 11):
 * the initialiser and init functions, a zero-initialised struct and NULL
 * (as every caller before the field), a struct of the first sized layout
 * given in a heap block of exactly that size (a library that read past it
 * would be caught by ASan, and takes the default for the later field), a
 * struct of the current layout using the later field, and sizes that are
 * no layout of this library (-EINVAL, nothing else of the struct read);
 * and ct_net_address_kind(), the address parser's public face.
 */
#include "net_test_util.h"

#include <stdlib.h>

static void quiet(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

static void test_init_macro_and_function(void **state) {
  (void)state;
  ct_net_server_options a = CT_NET_SERVER_OPTIONS_INIT, b;
  memset(&b, 0xff, sizeof b);
  ct_net_server_options_init(&b);
  assert_int_equal(a.size, sizeof a);
  assert_memory_equal(&a, &b, sizeof a);
  ct_net_client_options c = CT_NET_CLIENT_OPTIONS_INIT, d;
  memset(&d, 0xff, sizeof d);
  ct_net_client_options_init(&d);
  assert_int_equal(c.size, sizeof c);
  assert_memory_equal(&c, &d, sizeof c);
  ct_net_server_options_init(NULL); /* harmless */
  ct_net_client_options_init(NULL);
  assert_true(CT_NET_SERVER_OPTIONS_SIZE_1 < CT_NET_SERVER_OPTIONS_SIZE_2);
}

/* Zero (no size) and NULL: the defaults, as before the field existed. */
static void test_zero_size_and_null_still_work(void **state) {
  (void)state;
  char dir[64], path[96];
  t_sock_path(dir, path);
  ct_net_server_options z = {.log = quiet}; /* size 0 */
  ct_net_server *s;
  ASSERT_OK(ct_net_server_new(&s, path, &z));
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_OK(ct_net_server_add(s, "t", t));
  ASSERT_OK(ct_net_server_start(s));
  ct_net_client_options zc = {0};
  ct_net_client *c1, *c2;
  ASSERT_OK(ct_net_client_connect(&c1, path, &zc, NULL, 0, LONG_DEADLINE()));
  ASSERT_OK(ct_net_client_connect(&c2, path, NULL, NULL, 0, LONG_DEADLINE()));
  ct_token *p;
  ASSERT_OK(ct_net_client_get(c2, &p, "t", LONG_DEADLINE()));
  ct_token_unref(p);
  ct_net_client_free(c1);
  ct_net_client_free(c2);
  ct_net_server_free(s);
  ct_token_unref(t);
  t_rmdir(dir, path);
}

/* A caller built against the first sized layout: its struct ends before
 * max_handshakes.  Given in a block of exactly that size, it is read to
 * its end and no further (ASan), and max_handshakes takes its default: a
 * second handshake in progress is accepted. */
static void test_old_size_struct(void **state) {
  (void)state;
  char dir[64], path[96];
  t_sock_path(dir, path);
  ct_net_server_options full = CT_NET_SERVER_OPTIONS_INIT;
  full.size = CT_NET_SERVER_OPTIONS_SIZE_1;
  full.log = quiet;
  full.max_handshakes = 1; /* not part of the old layout: ignored */
  void *old = malloc(CT_NET_SERVER_OPTIONS_SIZE_1);
  memcpy(old, &full, CT_NET_SERVER_OPTIONS_SIZE_1);
  ct_net_server *s;
  ASSERT_OK(ct_net_server_new(&s, path, old));
  free(old);
  ASSERT_OK(ct_net_server_start(s));
  int a = t_raw_connect(path), b = t_raw_connect(path);
  t_raw_handshake(a);
  t_raw_handshake(b); /* both handshakes were accepted */
  close(a);
  close(b);
  ct_net_server_free(s);

  /* the current layout: max_handshakes is read */
  ct_net_server_options cur = CT_NET_SERVER_OPTIONS_INIT;
  cur.log = quiet;
  cur.max_handshakes = 1;
  ASSERT_OK(ct_net_server_new(&s, path, &cur));
  ASSERT_OK(ct_net_server_start(s));
  a = t_raw_connect(path);
  uint8_t part[5] = {0, 0, 0, 41, 0x01}; /* the start of a HELLO: waits */
  assert_int_equal(send(a, part, sizeof part, MSG_NOSIGNAL), 5);
  t_wait_read_by_peer(a);
  b = t_raw_connect(path);
  t_raw_hello_maybe_refused(b);
  uint8_t buf[256];
  size_t n;
  assert_int_equal(t_raw_recv(b, buf, sizeof buf, &n), 0x05);
  assert_int_equal(buf[4] << 8 | buf[5], 9); /* LIMIT */
  close(b);
  close(a);
  int64_t dl = LONG_DEADLINE(); /* until the server has seen both go */
  for (ct_net_server_stats st;; ) {
    ct_net_server_get_stats(s, &st);
    if (st.active == 0)
      break;
    assert_true(ct_now() < dl);
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  ct_net_client *c; /* one handshake at a time: accepted */
  ASSERT_OK(ct_net_client_connect(&c, path, NULL, NULL, 0, LONG_DEADLINE()));
  ct_net_client_free(c);
  ct_net_server_free(s);
  t_rmdir(dir, path);
}

/* Sizes that are no layout of this library. */
static void test_bad_size_struct(void **state) {
  (void)state;
  char dir[64], path[96];
  t_sock_path(dir, path);
  const size_t bad[] = {1, sizeof(size_t), CT_NET_SERVER_OPTIONS_SIZE_1 - 8,
                        CT_NET_SERVER_OPTIONS_SIZE_1 + 1,
                        sizeof(ct_net_server_options) + 8, (size_t)-1};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    /* only the size is there: nothing else may be read */
    size_t *only = malloc(sizeof *only);
    *only = bad[i];
    ct_net_server *s = (ct_net_server *)1;
    ASSERT_ERR(ct_net_server_new(&s, path, (ct_net_server_options *)only),
               -EINVAL);
    assert_null(s);
    free(only);
  }
  struct stat st;
  assert_int_equal(stat(path, &st), -1); /* nothing was created */
  /* the client */
  ct_net_server *srv;
  ASSERT_OK(ct_net_server_new(&srv, path, NULL));
  ASSERT_OK(ct_net_server_start(srv));
  const size_t cbad[] = {1, CT_NET_CLIENT_OPTIONS_SIZE_1 - 8,
                         CT_NET_CLIENT_OPTIONS_SIZE_1 + 8};
  for (size_t i = 0; i < sizeof cbad / sizeof cbad[0]; i++) {
    size_t *only = malloc(sizeof *only);
    *only = cbad[i];
    char err[256] = "";
    ct_net_client *c = (ct_net_client *)1;
    ASSERT_ERR(ct_net_client_connect(&c, path, (ct_net_client_options *)only,
                                     err, sizeof err, LONG_DEADLINE()),
               -EINVAL);
    assert_non_null(strstr(err, "unknown size"));
    free(only);
    (void)c;
  }
  ct_net_server_stats stats;
  ct_net_server_get_stats(srv, &stats);
  assert_int_equal(stats.accepted, 0); /* refused before connecting */
  ct_net_server_free(srv);
  t_rmdir(dir, path);
}

/* The public face of the one address parser (ct_net_address_kind()). */
static void test_address_kind(void **state) {
  (void)state;
  char err[256];
  assert_int_equal(ct_net_address_kind("/run/x.sock", err, sizeof err),
                   CT_NET_ADDRESS_UNIX);
  assert_int_equal(ct_net_address_kind("tokens", NULL, 0),
                   CT_NET_ADDRESS_UNIX);
  assert_int_equal(ct_net_address_kind("127.0.0.1:5001", NULL, 0),
                   CT_NET_ADDRESS_TCP);
  assert_int_equal(ct_net_address_kind("[::1]:0", NULL, 0),
                   CT_NET_ADDRESS_TCP);
  assert_int_equal(ct_net_address_kind(":0", NULL, 0), CT_NET_ADDRESS_TCP);
  assert_int_equal(ct_net_address_kind("zk://a:2181,b:2182/ctok", NULL, 0),
                   CT_NET_ADDRESS_ZK);
  const char *bad[] = {"", "[::1:5", "::1:5000", "h:65536", "http://x:1",
                       "zk://", "zk://h:0", "zk://h:1/a/../b", NULL};
  for (int i = 0; i < 9; i++) {
    err[0] = '\0';
    ASSERT_ERR(ct_net_address_kind(bad[i], err, sizeof err), -EINVAL);
    assert_true(err[0] != '\0' || bad[i] == NULL);
  }
  char longpath[200];
  memset(longpath, 'p', sizeof longpath - 1);
  longpath[0] = '/';
  longpath[sizeof longpath - 1] = '\0';
  ASSERT_ERR(ct_net_address_kind(longpath, err, sizeof err), -ENAMETOOLONG);
  /* the server and the client agree: a zk:// address is not a socket */
  ct_net_server *s;
  ASSERT_ERR(ct_net_server_new(&s, "zk://h:2181", NULL), -EINVAL);
  ct_net_client *c;
  ASSERT_ERR(ct_net_client_connect(&c, "zk://h:2181", NULL, err, sizeof err,
                                   LONG_DEADLINE()), -EINVAL);
  assert_non_null(strstr(err, "ZooKeeper"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_init_macro_and_function),
      cmocka_unit_test(test_zero_size_and_null_still_work),
      cmocka_unit_test(test_old_size_struct),
      cmocka_unit_test(test_bad_size_struct),
      cmocka_unit_test(test_address_kind),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
