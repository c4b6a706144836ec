/* SPDX-License-Identifier: MIT
 *
 * test_net_security.c -- the shared secret (both directions, wrong,
 * missing, replayed, truncated handshakes, a proof wrong in one byte), the Unix socket's mode and peer-uid check (a client
 * run as another uid with setpriv), the loopback rule for TCP, and that an
 * unauthenticated peer can neither trigger a token nor learn about it.
 */
#include "net_test_util.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

static const char SECRET[] = "correct horse battery staple";

struct srv {
  char dir[64], path[96], addr[256];
  ct_net_server *s;
  ct_token *t;
};

static void srv_start(struct srv *v, const char *address,
                      ct_net_server_options *o) {
  memset(v, 0, sizeof *v);
  if (!address) {
    t_sock_path(v->dir, v->path);
    address = v->path;
  }
  ASSERT_OK(ct_net_server_new(&v->s, address, o));
  ASSERT_OK(ct_token_new(&v->t, "secret-token"));
  ASSERT_OK(ct_net_server_add(v->s, "secret-token", v->t));
  ASSERT_OK(ct_net_server_start(v->s));
  ct_net_server_address(v->s, v->addr, sizeof v->addr);
}

static void srv_stop(struct srv *v) {
  ct_net_server_free(v->s);
  ct_token_unref(v->t);
  if (v->dir[0])
    t_rmdir(v->dir, v->path);
}

static int try_connect(const char *addr, const char *secret, char *err,
                       size_t errlen) {
  ct_net_client_options o = {0};
  if (secret) {
    o.secret = secret;
    o.secret_len = strlen(secret);
  }
  ct_net_client *c = NULL;
  int r = ct_net_client_connect(&c, addr, &o, err, errlen, LONG_DEADLINE());
  if (r == 0) {
    ct_token *p;
    ASSERT_OK(ct_net_client_get(c, &p, "secret-token", LONG_DEADLINE()));
    ct_token_unref(p);
    ct_net_client_free(c);
  }
  return r;
}

static void test_secret_checked_both_ways(void **state) {
  (void)state;
  ct_net_server_options o = {.secret = SECRET, .secret_len = strlen(SECRET)};
  struct srv v;
  srv_start(&v, "127.0.0.1:0", &o);
  char err[256];
  ASSERT_OK(try_connect(v.addr, SECRET, err, sizeof err));
  ASSERT_ERR(try_connect(v.addr, "wrong", err, sizeof err), -EACCES);
  assert_non_null(strstr(err, "secret"));
  ASSERT_ERR(try_connect(v.addr, NULL, err, sizeof err), -EACCES);
  assert_non_null(strstr(err, "requires a secret"));
  srv_stop(&v);

  /* A client with a secret refuses a server that proves nothing. */
  srv_start(&v, "127.0.0.1:0", NULL);
  ASSERT_ERR(try_connect(v.addr, SECRET, err, sizeof err), -EACCES);
  assert_non_null(strstr(err, "does not check a secret"));
  srv_stop(&v);
}

/* HMAC-SHA256(secret, label || cnonce || snonce), as docs/PROTOCOL.md
 * specifies it, computed independently of the library. */
static void proof(const char *secret, const char *label, const uint8_t *cn,
                  const uint8_t *sn, uint8_t out[32]) {
  uint8_t msg[22 + 64];
  memcpy(msg, label, 22);
  memcpy(msg + 22, cn, 32);
  memcpy(msg + 54, sn, 32);
  unsigned int len = 32;
  assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), msg,
                       sizeof msg, out, &len));
}

/* A response replayed on another connection fails: the server's nonce is
 * fresh each time. */
static void test_replayed_response_fails(void **state) {
  (void)state;
  ct_net_server_options o = {.secret = SECRET, .secret_len = strlen(SECRET)};
  struct srv v;
  srv_start(&v, NULL, &o);
  uint8_t b[512], saved[32], sn1[32];
  size_t n;
  /* connection 1: a correct handshake (as a client that knows it) */
  int fd = t_raw_connect(v.addr);
  t_raw_hello(fd, 1, 1); /* client nonce: zeros */
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x02);
  assert_int_equal(b[2] & 1, 1); /* the server requires a secret */
  memcpy(sn1, b + 3, 32);
  uint8_t zeros[32] = {0}, sproof[32];
  proof(SECRET, "cancel-token v1 server", zeros, sn1, sproof);
  assert_memory_equal(sproof, b + 35, 32); /* the server proved it */
  proof(SECRET, "cancel-token v1 client", zeros, sn1, saved);
  t_raw_send(fd, 0x03, saved, 32);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x04); /* READY */
  close(fd);
  /* connection 2: same client nonce, replay the old response */
  fd = t_raw_connect(v.addr);
  t_raw_hello(fd, 1, 1);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x02);
  assert_memory_not_equal(b + 3, sn1, 32); /* fresh nonce */
  t_raw_send(fd, 0x03, saved, 32);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x05); /* ERROR */
  assert_int_equal(b[4] << 8 | b[5], 2);                   /* AUTH */
  /* and nothing more is accepted on it: a TRIGGER is not carried out */
  uint8_t trig[10] = {0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
  send(fd, "\0\0\0\x0b\x12", 5, MSG_NOSIGNAL);
  send(fd, trig, sizeof trig, MSG_NOSIGNAL);
  assert_true(t_raw_until_eof(fd));
  close(fd);
  assert_false(ct_token_triggered(v.t));
  srv_stop(&v);
}

/* Before authentication, no request is served: not even GET. */
static void test_unauthenticated_peer_learns_nothing(void **state) {
  (void)state;
  ct_net_server_options o = {.secret = SECRET, .secret_len = strlen(SECRET)};
  struct srv v;
  srv_start(&v, NULL, &o);
  uint8_t b[512];
  size_t n;
  int fd = t_raw_connect(v.addr);
  uint8_t get[4 + 12] = {0, 0, 0, 1};
  memcpy(get + 4, "secret-token", 12);
  t_raw_send(fd, 0x10, get, sizeof get); /* GET before HELLO */
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x05);
  assert_int_equal(b[4] << 8 | b[5], 6); /* UNEXPECTED */
  assert_true(t_raw_until_eof(fd));
  close(fd);

  fd = t_raw_connect(v.addr);
  t_raw_hello(fd, 1, 1);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x02);
  uint8_t trig[10] = {0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
  t_raw_send(fd, 0x12, trig, sizeof trig); /* TRIGGER instead of AUTH */
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x05);
  assert_true(t_raw_until_eof(fd));
  close(fd);
  assert_false(ct_token_triggered(v.t));
  srv_stop(&v);
}

/* A handshake cut short -- a HELLO whose body never comes, a HELLO too
 * short to hold a nonce, an AUTH of the wrong length, or a proof sent
 * half and the connection closed -- is refused, and nothing sent after
 * it is served: no TOKEN, no ACK, and the token is never triggered. */
static void test_truncated_handshake_refused(void **state) {
  (void)state;
  /* Case 1 waits for the handshake timeout, so its server has a short
   * one; the others have the default (10 s), since on a loaded machine a
   * peer that does nothing wrong may take longer than 0.5 s to send its
   * next frame, and would then be told TIMEOUT instead of MALFORMED. */
  ct_net_server_options quick = {.secret = SECRET,
                                 .secret_len = strlen(SECRET),
                                 .handshake_timeout_ns = SEC_NS / 2};
  ct_net_server_options o = {.secret = SECRET, .secret_len = strlen(SECRET)};
  struct srv q, v;
  srv_start(&q, NULL, &quick);
  srv_start(&v, NULL, &o);
  uint8_t b[512];
  size_t n;
  uint8_t get[4 + 12] = {0, 0, 0, 1};
  memcpy(get + 4, "secret-token", 12);
  uint8_t trig[10] = {0, 0, 0, 2, 0, 0, 0, 0, 1, 0};

  /* 1. HELLO header promising 41 bytes, 10 sent: the handshake times out
   *    (TIMEOUT) and requests glued after it are part of the frame. */
  int fd = t_raw_connect(q.addr);
  send(fd, "\0\0\0\x29\x01" "CTNT\0\1\0\1\0", 15, MSG_NOSIGNAL);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x05);
  assert_int_equal(b[4] << 8 | b[5], 11); /* TIMEOUT */
  assert_true(t_raw_until_eof(fd));
  close(fd);
  ct_net_server_stats st;
  ct_net_server_get_stats(q.s, &st);
  assert_int_equal(st.proxies, 0);
  assert_int_equal(st.ready, 0);
  assert_true(st.dropped >= 1);
  assert_false(ct_token_triggered(q.t));
  srv_stop(&q);

  /* 2. A complete HELLO frame too short for its nonce: MALFORMED. */
  fd = t_raw_connect(v.addr);
  t_raw_send(fd, 0x01, "CTNT\0\1\0\1", 8);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x05);
  assert_int_equal(b[4] << 8 | b[5], 4); /* MALFORMED */
  assert_true(t_raw_until_eof(fd));
  close(fd);

  /* 3. An AUTH of 16 bytes instead of 32, then requests: MALFORMED, and
   *    the requests are never answered. */
  fd = t_raw_connect(v.addr);
  t_raw_hello(fd, 1, 1);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x02);
  uint8_t half[16] = {0};
  t_raw_send(fd, 0x03, half, sizeof half);
  t_raw_send(fd, 0x10, get, sizeof get);
  t_raw_send(fd, 0x12, trig, sizeof trig);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x05);
  assert_int_equal(b[4] << 8 | b[5], 4);
  assert_true(t_raw_until_eof(fd)); /* nothing but the error came */
  close(fd);

  /* 4. Half an AUTH frame, then the client closes: nothing is left. */
  fd = t_raw_connect(v.addr);
  t_raw_hello(fd, 1, 1);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x02);
  send(fd, "\0\0\0\x21\x03" "0123456789", 15, MSG_NOSIGNAL);
  close(fd);

  /* None of them got in: the token is untouched, nobody subscribed, and a
   * client with the secret is still served. */
  assert_false(ct_token_triggered(v.t));
  ct_net_server_get_stats(v.s, &st);
  assert_int_equal(st.proxies, 0);
  assert_int_equal(st.ready, 0);
  assert_true(st.dropped >= 2); /* 2 and 3: we read their end */
  char err[256];
  ASSERT_OK(try_connect(v.addr, SECRET, err, sizeof err));
  assert_false(ct_token_triggered(v.t));
  srv_stop(&v);
}

/* The proofs are compared in constant time: net_proof_equal() is
 * CRYPTO_memcmp() (checked by reading common.c; a timing test would be a
 * timing assertion).  What a test can check is that a proof differing in
 * its last byte only is refused like one differing in its first. */
static void test_proof_differing_in_last_byte_refused(void **state) {
  (void)state;
  ct_net_server_options o = {.secret = SECRET, .secret_len = strlen(SECRET)};
  struct srv v;
  srv_start(&v, NULL, &o);
  for (int pos = 0; pos < 32; pos += 31) {
    uint8_t b[512], good[32], zeros[32] = {0};
    size_t n;
    int fd = t_raw_connect(v.addr);
    t_raw_hello(fd, 1, 1);
    assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x02);
    proof(SECRET, "cancel-token v1 client", zeros, b + 3, good);
    good[pos] ^= 0x01;
    t_raw_send(fd, 0x03, good, 32);
    assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x05);
    assert_int_equal(b[4] << 8 | b[5], 2); /* AUTH */
    assert_true(t_raw_until_eof(fd));
    close(fd);
  }
  assert_false(ct_token_triggered(v.t));
  srv_stop(&v);
}

static void test_tcp_loopback_rule(void **state) {
  (void)state;
  ct_net_server *s = NULL;
  ASSERT_ERR(ct_net_server_new(&s, "0.0.0.0:0", NULL), -EPERM);
  ASSERT_ERR(ct_net_server_new(&s, "[::]:0", NULL), -EPERM);
  assert_null(s);
  /* '' is loopback, so no secret is needed */
  ASSERT_OK(ct_net_server_new(&s, ":0", NULL));
  char a[64];
  ct_net_server_address(s, a, sizeof a);
  assert_memory_equal(a, "127.0.0.1:", 10);
  ct_net_server_free(s);
  ASSERT_OK(ct_net_server_new(&s, "127.0.0.2:0", NULL)); /* 127/8 */
  ct_net_server_free(s);
  ASSERT_ERR(ct_net_server_new(&s, "127.0.0.1:99999", NULL), -EINVAL);
  ASSERT_ERR(ct_net_server_new(&s, "[::1:5", NULL), -EINVAL);
}

static void test_unix_socket_mode_0600(void **state) {
  (void)state;
  struct srv v;
  srv_start(&v, NULL, NULL);
  struct stat st;
  assert_int_equal(stat(v.path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0600);
  /* a second server on a live socket: in use */
  ct_net_server *s2;
  ASSERT_ERR(ct_net_server_new(&s2, v.path, NULL), -EADDRINUSE);
  srv_stop(&v);
}

/* Run "net_peer connect ADDR" as nobody; returns its first line. */
static void connect_as_nobody(const char *addr, char *line, size_t cap) {
  struct child ch;
  char *argv[] = {"setpriv", "--reuid=nobody", "--regid=nogroup",
                  "--clear-groups", NET_PEER, "connect", (char *)addr, NULL};
  t_spawn(&ch, argv);
  if (!t_read_line(&ch, line, cap, LONG_DEADLINE()))
    snprintf(line, cap, "(no output)");
  t_wait_child(&ch);
}

static void test_other_uid_refused(void **state) {
  (void)state;
  if (geteuid() != 0) {
    print_message("not root: cannot run a client as another uid; skipped\n");
    skip();
  }
  char line[512];
  struct srv v;
  srv_start(&v, NULL, NULL);
  /* the 0600 socket: the kernel refuses nobody at connect */
  connect_as_nobody(v.addr, line, sizeof line);
  assert_memory_equal(line, "error EACCES", 12);
  /* opened up: now the server's SO_PEERCRED check refuses it */
  assert_int_equal(chmod(v.path, 0666), 0);
  connect_as_nobody(v.addr, line, sizeof line);
  assert_memory_equal(line, "error EPERM", 11);
  assert_non_null(strstr(line, "not allowed"));
  ct_net_server_stats st;
  ct_net_server_get_stats(v.s, &st);
  assert_true(st.refused >= 1);
  srv_stop(&v);

  /* unless the owner allows that uid */
  uid_t nobody = 65534;
  ct_net_server_options o = {.allowed_uids = &nobody, .n_allowed_uids = 1};
  srv_start(&v, NULL, &o);
  assert_int_equal(chmod(v.path, 0666), 0);
  connect_as_nobody(v.addr, line, sizeof line);
  assert_string_equal(line, "connected");
  srv_stop(&v);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_secret_checked_both_ways),
      cmocka_unit_test(test_replayed_response_fails),
      cmocka_unit_test(test_unauthenticated_peer_learns_nothing),
      cmocka_unit_test(test_truncated_handshake_refused),
      cmocka_unit_test(test_proof_differing_in_last_byte_refused),
      cmocka_unit_test(test_tcp_loopback_rule),
      cmocka_unit_test(test_unix_socket_mode_0600),
      cmocka_unit_test(test_other_uid_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
