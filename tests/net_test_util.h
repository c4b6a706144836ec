/* SPDX-License-Identifier: MIT
 *
 * net_test_util.h -- what the token-server tests share: unique socket
 * paths, child processes with pipes on their stdin/stdout, reading a line
 * with a (generous, failure-only) deadline, and raw protocol frames.
 */
#ifndef CT_NET_TEST_UTIL_H
#define CT_NET_TEST_UTIL_H

#include "test_util.h"

#include "canceltoken_net.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEC_NS (INT64_C(1000000000))
/* Deadlines that only turn a hang into a failure; never a timing claim. */
#define LONG_DEADLINE() ct_deadline_after(30 * SEC_NS)

/* A fresh directory /tmp/ct-net-XXXXXX (mode 0755) and a socket path in
 * it; t_rmdir() removes both. */
static inline void t_sock_path(char dir[64], char path[96]) {
  strcpy(dir, "/tmp/ct-net-XXXXXX");
  assert_non_null(mkdtemp(dir));
  chmod(dir, 0755);
  snprintf(path, 96, "%s/tokens.sock", dir);
}
static inline void t_rmdir(const char *dir, const char *path) {
  unlink(path);
  rmdir(dir);
}

struct child {
  pid_t pid;
  int in;  /* write end of its stdin, or -1 */
  int out; /* read end of its stdout */
  char buf[4096];
  size_t len;
};

/* Start argv[0] with pipes on stdin and stdout (stderr inherited). */
static inline void t_spawn(struct child *ch, char *const argv[]) {
  int pin[2], pout[2];
  assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
  assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(pin[0], 0);
    dup2(pout[1], 1);
    execvp(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(pin[0]);
  close(pout[1]);
  ch->pid = pid;
  ch->in = pin[1];
  ch->out = pout[0];
  ch->len = 0;
}

/* Read one line (without the newline) into line; fails the test if none
 * comes before the deadline.  Returns false at EOF. */
static inline bool t_read_line(struct child *ch, char *line, size_t cap,
                               int64_t deadline) {
  for (;;) {
    char *nl = memchr(ch->buf, '\n', ch->len);
    if (nl) {
      size_t n = (size_t)(nl - ch->buf);
      assert_true(n < cap);
      memcpy(line, ch->buf, n);
      line[n] = '\0';
      memmove(ch->buf, nl + 1, ch->len - n - 1);
      ch->len -= n + 1;
      return true;
    }
    struct pollfd p = {ch->out, POLLIN, 0};
    int64_t left = deadline - ct_now();
    if (left <= 0)
      fail_msg("no line from child %d before the deadline", (int)ch->pid);
    int r = poll(&p, 1, (int)(left / 1000000) + 1);
    if (r < 0 && errno == EINTR)
      continue;
    assert_true(r >= 0);
    if (r == 0)
      continue;
    ssize_t n = read(ch->out, ch->buf + ch->len, sizeof ch->buf - ch->len - 1);
    if (n <= 0)
      return false;
    ch->len += (size_t)n;
  }
}

static inline void t_send_line(struct child *ch, const char *line) {
  size_t n = strlen(line);
  assert_int_equal(write(ch->in, line, n), (ssize_t)n);
  assert_int_equal(write(ch->in, "\n", 1), 1);
}

/* Wait for the child; returns its exit status, or 128 + signal. */
static inline int t_wait_child(struct child *ch) {
  int st;
  while (waitpid(ch->pid, &st, 0) < 0)
    assert_int_equal(errno, EINTR);
  if (ch->in >= 0)
    close(ch->in);
  close(ch->out);
  ch->in = ch->out = -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Start "net_peer serve ADDRESS [extra...] NAME..." and read its address. */
static inline void t_start_server(struct child *ch, char *const argv[],
                                  char addr[256]) {
  t_spawn(ch, argv);
  char line[300];
  assert_true(t_read_line(ch, line, sizeof line, LONG_DEADLINE()));
  assert_memory_equal(line, "ADDR ", 5);
  /* A longer line is a broken peer, not an address to cut short. */
  assert_true(snprintf(addr, 256, "%s", line + 5) < 256);
}

/* A reproducible permutation of 0..n-1 in a (xorshift from seed). */
static inline void t_shuffle(size_t *a, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++)
    a[i] = i;
  uint64_t x = seed | 1;
  for (size_t i = n - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    size_t j = (size_t)(x % (i + 1));
    size_t t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

/* ---- raw protocol, for peers that misbehave on purpose ---- */

static inline void t_put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16),
  p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}
static inline uint32_t t_get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

/* A blocking socket connected to a Unix path or "127.0.0.1:port". */
static inline int t_raw_connect(const char *addr) {
  int fd;
  if (addr[0] == '/') {
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    assert_true(snprintf(un.sun_path, sizeof un.sun_path, "%s", addr) <
                (int)sizeof un.sun_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&un, sizeof un), 0);
  } else {
    fail_msg("t_raw_connect: unix paths only");
    return -1;
  }
  struct timeval tv = {30, 0}; /* a hang becomes a failure */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

static inline void t_raw_send(int fd, uint8_t type, const void *body,
                              size_t n) {
  uint8_t f[64 + 4096];
  assert_true(n <= 4096);
  t_put32(f, (uint32_t)(1 + n));
  f[4] = type;
  memcpy(f + 5, body, n);
  assert_int_equal(send(fd, f, 5 + n, MSG_NOSIGNAL), (ssize_t)(5 + n));
}

/* Read one frame: returns its type and body length, or -1 at EOF/reset. */
static inline int t_raw_recv(int fd, uint8_t *body, size_t cap, size_t *n) {
  uint8_t h[5];
  size_t got = 0;
  *n = 0; /* defined on every return, including the early -1 */
  while (got < 5) {
    ssize_t r = recv(fd, h + got, 5 - got, 0);
    if (r <= 0)
      return -1;
    got += (size_t)r;
  }
  uint32_t len = t_get32(h);
  assert_true(len >= 1 && len - 1 <= cap);
  got = 0;
  while (got < len - 1) {
    ssize_t r = recv(fd, body + got, len - 1 - got, 0);
    if (r <= 0)
      return -1;
    got += (size_t)r;
  }
  *n = len - 1;
  return h[4];
}

/* Read until EOF or reset; true if it came (the server dropped us). */
static inline bool t_raw_until_eof(int fd) {
  uint8_t b[4096];
  for (;;) {
    ssize_t r = recv(fd, b, sizeof b, 0);
    if (r == 0 || (r < 0 && errno == ECONNRESET))
      return true;
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return false; /* SO_RCVTIMEO: no EOF in 30 s */
  }
}

/* Wait until the peer has read everything sent on fd (SIOCOUTQ of a Unix
 * socket: what is queued and not read yet; of TCP: not acknowledged), so
 * that pacing never depends on a sleep.  Fails after the long deadline. */
static inline void t_wait_read_by_peer(int fd) {
  int64_t dl = LONG_DEADLINE();
  for (;;) {
    int q = -1;
    assert_int_equal(ioctl(fd, SIOCOUTQ, &q), 0);
    if (q == 0)
      return;
    if (ct_now() > dl)
      fail_msg("the peer never read what was sent");
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
}

/* HELLO with versions vmin..vmax and a zero nonce. */
static inline void t_raw_hello(int fd, uint16_t vmin, uint16_t vmax) {
  uint8_t b[40] = {'C', 'T', 'N', 'T', (uint8_t)(vmin >> 8), (uint8_t)vmin,
                   (uint8_t)(vmax >> 8), (uint8_t)vmax};
  t_raw_send(fd, 0x01, b, sizeof b);
}

/* The same, for a peer the server may have refused already (then the
 * send may fail with EPIPE; what the server said is still to be read). */
static inline void t_raw_hello_maybe_refused(int fd) {
  uint8_t f[45] = {0, 0, 0, 41, 0x01, 'C', 'T', 'N', 'T', 0, 1, 0, 1};
  ssize_t r = send(fd, f, sizeof f, MSG_NOSIGNAL);
  (void)r;
}

/* Complete a handshake with a server that has no secret. */
static inline void t_raw_handshake(int fd) {
  uint8_t b[512];
  size_t n;
  t_raw_hello(fd, 1, 1);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x02);
  uint8_t proof[32] = {0};
  t_raw_send(fd, 0x03, proof, sizeof proof);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x04);
}

/* A server for the bad-peer tests: tokens "t0".."t7" served at a fresh
 * socket path, started, and one well-behaved client connected.  o: the
 * server's options (the caller's defaults).  t_srv_still_served() checks
 * that the well-behaved client is still served (a proxy of t<i>, a
 * confirmed trigger) after whatever a bad peer did; each token serves one
 * such check. */
#define T_SRV_TOKENS 8
struct t_srv {
  char dir[64], path[96];
  ct_net_server *s;
  ct_token *t[T_SRV_TOKENS];
  ct_net_client *good;
};

static inline void t_srv_start(struct t_srv *v, const ct_net_server_options *o) {
  memset(v, 0, sizeof *v);
  t_sock_path(v->dir, v->path);
  ASSERT_OK(ct_net_server_new(&v->s, v->path, o));
  for (int i = 0; i < T_SRV_TOKENS; i++) {
    char name[8];
    snprintf(name, sizeof name, "t%d", i);
    ASSERT_OK(ct_token_new(&v->t[i], name));
    ASSERT_OK(ct_net_server_add(v->s, name, v->t[i]));
  }
  ASSERT_OK(ct_net_server_start(v->s));
  ASSERT_OK(ct_net_client_connect(&v->good, v->path, NULL, NULL, 0,
                                  LONG_DEADLINE()));
}

static inline void t_srv_still_served(struct t_srv *v, int i) {
  assert_true(i >= 0 && i < T_SRV_TOKENS);
  char name[8];
  snprintf(name, sizeof name, "t%d", i);
  ct_token *p;
  ASSERT_OK(ct_net_client_get(v->good, &p, name, LONG_DEADLINE()));
  ASSERT_ERR(ct_net_client_trigger(v->good, p, CT_REASON_TRIGGER, 0,
                                   LONG_DEADLINE()), 1);
  assert_true(ct_token_triggered(v->t[i]));
  ct_token_unref(p);
}

static inline void t_srv_stop(struct t_srv *v) {
  ct_net_client_free(v->good);
  ct_net_server_free(v->s);
  for (int i = 0; i < T_SRV_TOKENS; i++)
    ct_token_unref(v->t[i]);
  t_rmdir(v->dir, v->path);
}

#endif
