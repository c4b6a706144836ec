/* SPDX-License-Identifier: MIT
 *
 * test_net_badpeer.c -- peers that misbehave: garbage, oversized,
 * malformed and truncated frames, a peer that sends a byte at a time, one
 * that never reads, one that dies mid-frame, a client of another protocol
 * version, a server that is not a token server, too many clients, and a
 * server out of descriptors.  After each, a well-behaved client of the same
 * server must still be served: it gets a proxy and triggers through it.
 */
#include "net_test_util.h"

#include <netinet/in.h>
#include <sys/resource.h>
#include <time.h>

static _Atomic int log_lines;

static void count_log(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
  atomic_fetch_add(&log_lines, 1);
}

/* Which token the next still_served() uses: one per check, from t0 for
 * each server (tests run one at a time). */
static int next_token;

/* The server of these tests: struct t_srv (net_test_util.h) with a small
 * output bound, its log lines counted, and the given handshake and frame
 * timeouts (0: the defaults, 10 s).  Short timeouts only where a case
 * waits for one to pass: elsewhere a peer descheduled for 2 s between
 * connecting and its next frame (a loaded machine) would be told TIMEOUT
 * instead of the error the case is about. */
static void srv_start_timeouts(struct t_srv *v, int64_t handshake,
                               int64_t frame) {
  ct_net_server_options d = {.max_output = 64 * 1024,
                             .handshake_timeout_ns = handshake,
                             .frame_timeout_ns = frame,
                             .log = count_log};
  next_token = 0;
  t_srv_start(v, &d);
}

static void srv_start(struct t_srv *v, ct_net_server_options *o) {
  if (o) {
    next_token = 0;
    t_srv_start(v, o);
  } else {
    srv_start_timeouts(v, 0, 0);
  }
}

/* The well-behaved client is still served (t_srv_still_served). */
static void still_served(struct t_srv *v) {
  t_srv_still_served(v, next_token++);
}

/* Expect an ERROR frame with `code`, then the end of the connection. */
static void expect_error_and_eof(int fd, int code) {
  uint8_t b[2048];
  size_t n;
  int type = t_raw_recv(fd, b, sizeof b, &n);
  assert_int_equal(type, 0x05);
  assert_int_equal(b[4] << 8 | b[5], code);
  assert_true(t_raw_until_eof(fd));
  close(fd);
}

static void test_garbage(void **state) {
  (void)state;
  struct t_srv v;
  srv_start(&v, NULL);
  int before = atomic_load(&log_lines);
  int fd = t_raw_connect(v.path);
  const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
  send(fd, http, sizeof http - 1, MSG_NOSIGNAL);
  expect_error_and_eof(fd, 5); /* "GET " read as a length: too big */
  assert_true(atomic_load(&log_lines) > before); /* a log line */
  still_served(&v);
  t_srv_stop(&v);
}

static void test_oversized_and_malformed(void **state) {
  (void)state;
  struct t_srv v;
  srv_start(&v, NULL);
  int fd = t_raw_connect(v.path);
  t_raw_handshake(fd);
  uint8_t hdr[5];
  t_put32(hdr, 1u << 20); /* 1 MiB frame: above the limit */
  hdr[4] = 0x10;
  send(fd, hdr, 5, MSG_NOSIGNAL);
  expect_error_and_eof(fd, 5);

  fd = t_raw_connect(v.path);
  t_raw_handshake(fd);
  t_raw_send(fd, 0x10, "\0\0", 2); /* GET too short */
  expect_error_and_eof(fd, 4);

  fd = t_raw_connect(v.path);
  t_raw_handshake(fd);
  t_raw_send(fd, 0x7f, "x", 1); /* unknown type */
  expect_error_and_eof(fd, 6);

  fd = t_raw_connect(v.path);
  uint8_t zero[5] = {0};
  send(fd, zero, 5, MSG_NOSIGNAL); /* zero-length frame */
  expect_error_and_eof(fd, 4);

  fd = t_raw_connect(v.path);
  t_raw_handshake(fd);
  uint8_t trig[10] = {0, 0, 0, 7, 0, 0, 0x10, 0, 1, 0}; /* bad handle */
  t_raw_send(fd, 0x12, trig, sizeof trig);
  uint8_t b[256];
  size_t n;
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x05);
  assert_int_equal(t_get32(b), 7);          /* the request's error ... */
  assert_int_equal(b[4] << 8 | b[5], 8);    /* BAD_HANDLE */
  uint8_t ping[4] = {0, 0, 0, 9};           /* ... and it is still served */
  t_raw_send(fd, 0x17, ping, 4);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x18);
  close(fd);
  still_served(&v);
  t_srv_stop(&v);
}

static void test_truncated_frames(void **state) {
  (void)state;
  struct t_srv v;
  srv_start_timeouts(&v, 0, 2 * SEC_NS); /* frames: 2 s */
  /* dies mid-frame (in another process, with SIGKILL) */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = t_raw_connect(v.path);
    t_raw_handshake(fd);
    uint8_t part[9] = {0, 0, 0, 100, 0x10, 0, 0, 0, 1};
    send(fd, part, sizeof part, MSG_NOSIGNAL);
    raise(SIGKILL);
  }
  int st;
  waitpid(pid, &st, 0);
  assert_true(WIFSIGNALED(st));
  still_served(&v);
  /* stays mid-frame: dropped when the frame is not finished in time */
  int fd = t_raw_connect(v.path);
  t_raw_handshake(fd);
  uint8_t part[9] = {0, 0, 0, 100, 0x10, 0, 0, 0, 1};
  send(fd, part, sizeof part, MSG_NOSIGNAL);
  expect_error_and_eof(fd, 11); /* TIMEOUT */
  still_served(&v);
  t_srv_stop(&v);
  /* half a HELLO, then nothing: the handshake times out */
  srv_start_timeouts(&v, 2 * SEC_NS, 0); /* handshakes: 2 s */
  fd = t_raw_connect(v.path);
  send(fd, part, 6, MSG_NOSIGNAL);
  expect_error_and_eof(fd, 11);
  still_served(&v);
  t_srv_stop(&v);
}

static void test_byte_at_a_time_peer(void **state) {
  (void)state;
  struct t_srv v;
  /* short timeouts: one of them may be what drops it */
  srv_start_timeouts(&v, 2 * SEC_NS, 2 * SEC_NS);
  int fd = t_raw_connect(v.path);
  uint8_t f[45] = {0, 0, 0, 41, 0x01, 'C', 'T', 'N', 'T', 0, 1, 0, 1};
  bool dropped = false;
  for (size_t i = 0; i < sizeof f && !dropped; i++) {
    if (send(fd, f + i, 1, MSG_NOSIGNAL) != 1)
      dropped = true;
    /* pace the bytes so that each arrives on its own */
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  /* either the pieces rule or the handshake deadline drops it */
  assert_true(t_raw_until_eof(fd));
  close(fd);
  still_served(&v);
  t_srv_stop(&v);
}

/* A peer that sends requests but never reads the answers is dropped when
 * they pile up; the others are served all along. */
static void test_peer_that_never_reads(void **state) {
  (void)state;
  struct t_srv v;
  srv_start(&v, NULL);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  snprintf(un.sun_path, sizeof un.sun_path, "%s", v.path);
  assert_int_equal(connect(fd, (struct sockaddr *)&un, sizeof un), 0);
  struct timeval tv = {30, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  t_raw_handshake(fd);
  uint8_t pings[9 * 512];
  for (int i = 0; i < 512; i++) {
    t_put32(pings + 9 * i, 5);
    pings[9 * i + 4] = 0x17;
    t_put32(pings + 9 * i + 5, (uint32_t)i + 1);
  }
  bool mid = false;
  for (long sent = 0; sent < 100000000; sent += (long)sizeof pings) {
    if (send(fd, pings, sizeof pings, MSG_NOSIGNAL) < 0) {
      assert_true(errno == EPIPE || errno == ECONNRESET);
      break;
    }
    if (!mid && sent > 64 * 1024) {
      still_served(&v); /* served while the bad peer floods */
      mid = true;
    }
  }
  close(fd);
  ct_net_server_stats st;
  ct_net_server_get_stats(v.s, &st);
  assert_true(st.dropped >= 1);
  still_served(&v);
  t_srv_stop(&v);
}

static void test_version_mismatch(void **state) {
  (void)state;
  struct t_srv v;
  srv_start(&v, NULL);
  int fd = t_raw_connect(v.path);
  t_raw_hello(fd, 7, 9);
  uint8_t b[2048];
  size_t n;
  assert_int_equal(t_raw_recv(fd, b, sizeof b - 1, &n), 0x05);
  assert_int_equal(b[4] << 8 | b[5], 1); /* VERSION */
  b[n] = '\0';
  assert_non_null(strstr((char *)b + 6, "client speaks 7..9"));
  assert_true(t_raw_until_eof(fd));
  close(fd);
  still_served(&v);
  t_srv_stop(&v);
}

/* ---- the client against fake servers ---- */

struct fake {
  int lfd;
  const void *reply;
  size_t len;
};

static void *fake_server(void *arg) {
  struct fake *f = arg;
  int fd = accept(f->lfd, NULL, NULL);
  uint8_t b[64];
  recv(fd, b, sizeof b, 0); /* the HELLO */
  send(fd, f->reply, f->len, MSG_NOSIGNAL);
  uint8_t sink[64];
  while (recv(fd, sink, sizeof sink, 0) > 0)
    ;
  close(fd);
  return NULL;
}

static int connect_to_fake(const void *reply, size_t len, char *err,
                           size_t errlen) {
  char dir[64], path[96];
  t_sock_path(dir, path);
  struct fake f = {socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), reply,
                   len};
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
  assert_int_equal(bind(f.lfd, (struct sockaddr *)&un, sizeof un), 0);
  assert_int_equal(listen(f.lfd, 4), 0);
  pthread_t th;
  pthread_create(&th, NULL, fake_server, &f);
  ct_net_client *c = NULL;
  int r = ct_net_client_connect(&c, path, NULL, err, errlen, LONG_DEADLINE());
  assert_null(c);
  pthread_join(th, NULL);
  close(f.lfd);
  t_rmdir(dir, path);
  return r;
}

static void test_client_refuses_bad_servers(void **state) {
  (void)state;
  char err[256];
  uint8_t welcome[5 + 67] = {0, 0, 0, 68, 0x02, 0, 9}; /* version 9 */
  ASSERT_ERR(connect_to_fake(welcome, sizeof welcome, err, sizeof err),
             -EPROTONOSUPPORT);
  assert_non_null(strstr(err, "version 9"));
  const char http[] = "HTTP/1.0 400 Bad Request\r\n\r\n";
  ASSERT_ERR(connect_to_fake(http, sizeof http - 1, err, sizeof err),
             -EPROTO);
  assert_non_null(strstr(err, "cancel-token server"));
}

static void test_too_many_clients(void **state) {
  (void)state;
  struct t_srv v;
  ct_net_server_options o = {.max_clients = 2, .log = count_log};
  srv_start(&v, &o); /* the good client is one */
  int a = t_raw_connect(v.path);
  t_raw_handshake(a); /* the second, accepted */
  int b = t_raw_connect(v.path);
  t_raw_hello_maybe_refused(b);
  expect_error_and_eof(b, 9); /* LIMIT */
  close(a);
  still_served(&v);
  t_srv_stop(&v);
}

/* A server process out of descriptors refuses clients (EMFILE on accept)
 * instead of spinning or crashing, and serves again once they go. */
static void test_server_out_of_descriptors(void **state) {
  (void)state;
  char dir[64], path[96], addr[256], line[300];
  t_sock_path(dir, path);
  struct child srv;
  char *argv[] = {NET_PEER, "serve", path, "--max-fds", "24", "a", NULL};
  t_start_server(&srv, argv, addr);
  enum { N = 40 };
  int fds[N], refused = 0, welcomed = 0;
  for (int i = 0; i < N; i++) {
    fds[i] = t_raw_connect(addr);
    t_raw_hello_maybe_refused(fds[i]);
  }
  for (int i = 0; i < N; i++) {
    uint8_t b[256];
    size_t n;
    int type = t_raw_recv(fds[i], b, sizeof b, &n);
    if (type == 0x05) {
      assert_int_equal(b[4] << 8 | b[5], 9); /* LIMIT */
      refused++;
    } else if (type == 0x02) {
      welcomed++;
    }
  }
  assert_true(refused >= 1);
  assert_true(welcomed >= 1);
  for (int i = 0; i < N; i++)
    close(fds[i]);
  /* served again: a client in another process triggers "a".  The server
   * sees our closes when it gets to them: under load it may still be out
   * of descriptors for a moment, and refuse (LIMIT) -- then try again. */
  int64_t dl = LONG_DEADLINE();
  for (;;) {
    struct child trig;
    char *targv[] = {NET_PEER, "trigger", addr, "a", NULL};
    t_spawn(&trig, targv);
    assert_true(t_read_line(&trig, line, sizeof line, LONG_DEADLINE()));
    int st = t_wait_child(&trig);
    if (strncmp(line, "error ENOSPC", 12) == 0 && ct_now() < dl) {
      struct timespec ts = {0, 20 * 1000 * 1000};
      nanosleep(&ts, NULL);
      continue;
    }
    assert_string_equal(line, "result 1");
    assert_int_equal(st, 0);
    break;
  }
  close(srv.in);
  srv.in = -1;
  assert_int_equal(t_wait_child(&srv), 0);
  t_rmdir(dir, path);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_oversized_and_malformed),
      cmocka_unit_test(test_truncated_frames),
      cmocka_unit_test(test_byte_at_a_time_peer),
      cmocka_unit_test(test_peer_that_never_reads),
      cmocka_unit_test(test_version_mismatch),
      cmocka_unit_test(test_client_refuses_bad_servers),
      cmocka_unit_test(test_too_many_clients),
      cmocka_unit_test(test_server_out_of_descriptors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
