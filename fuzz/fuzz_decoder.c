/* SPDX-License-Identifier: MIT
 *
 * fuzz_decoder.c -- the client's protocol decoder, fed an arbitrary byte
 * stream by a fake server.  The harness's thread plays the server on a
 * Unix socket; a second thread plays the application: connect, GET "a",
 * and with the proxy it gets, a local trigger (forwarded), a LIST, and
 * the free.  The first input byte chooses what the rest is:
 *   even: the server's whole stream, from the first byte of its WELCOME
 *         (the handshake decoder: WELCOME, READY, ERROR);
 *   odd:  what follows a correct handshake and the client's GET (request
 *         id 1): TOKEN, NOTIFY, ACK, LIST_REPLY, ERROR, PONG frames.
 * The fake server then closes its side, so every client call ends (with a
 * result or the connection's error) without any timeout.  Checked: no
 * crash, leak, race or undefined behaviour; every call returns 0 or a
 * negative errno; a proxy obtained is a proxy.
 */
#include "fuzz_common.h"

#include <pthread.h>
#include <semaphore.h>
#include <sys/un.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int lfd = -1;
static sem_t go, done;

static void list_fn(void *arg, const ct_net_token_info *info) {
  (void)arg;
  FUZZ_CHECK(info->name != NULL && info->cause != NULL);
}

static void *app_main(void *arg) {
  (void)arg;
  for (;;) {
    sem_wait(&go);
    ct_net_client_options o = {.log = fuzz_quiet_log};
    ct_net_client *c = NULL;
    char err[256];
    int64_t dl = ct_deadline_after(INT64_C(30000000000)); /* never reached */
    int r = ct_net_client_connect(&c, fuzz_sock_path(), &o, err, sizeof err,
                                  dl);
    FUZZ_CHECK(r <= 0);
    if (r == 0) {
      ct_token *p = NULL;
      r = ct_net_client_get(c, &p, "a", dl);
      FUZZ_CHECK(r <= 0 && (r == 0) == (p != NULL));
      if (p) {
        FUZZ_CHECK(ct_token_is_proxy(p));
        ct_token_trigger(p); /* forwarded, if still connected */
        r = ct_net_client_list(c, list_fn, NULL, dl);
        FUZZ_CHECK(r >= 0 || r > -4096);
        ct_token_unref(p);
      }
      ct_net_client_free(c);
    }
    sem_post(&done);
  }
  return NULL;
}

static int LLVMFuzzerInit(void) {
  const char *path = fuzz_sock_path();
  lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
  unlink(path);
  FUZZ_CHECK(bind(lfd, (struct sockaddr *)&un, sizeof un) == 0);
  FUZZ_CHECK(listen(lfd, 4) == 0);
  sem_init(&go, 0, 0);
  sem_init(&done, 0, 0);
  pthread_t th;
  FUZZ_CHECK(pthread_create(&th, NULL, app_main, NULL) == 0);
  pthread_detach(th);
  return 0;
}

/* Read exactly n bytes (blocking), false at EOF. */
static bool read_n(int fd, uint8_t *b, size_t n) {
  while (n) {
    ssize_t r = recv(fd, b, n, 0);
    if (r <= 0)
      return false;
    b += r;
    n -= (size_t)r;
  }
  return true;
}

static bool read_frame(int fd, uint8_t *type, uint8_t *body, size_t cap) {
  uint8_t h[NET_HDR + 1];
  if (!read_n(fd, h, sizeof h))
    return false;
  uint32_t len = get_u32(h);
  FUZZ_CHECK(len >= 1 && len - 1 <= cap);
  *type = h[NET_HDR];
  return read_n(fd, body, len - 1);
}

static void write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0)
      return; /* the client gave up: fine */
    p += w;
    n -= (size_t)w;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool init;
  if (!init)
    init = LLVMFuzzerInit() == 0;
  if (size < 1)
    return 0;
  sem_post(&go);
  int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  FUZZ_CHECK(fd >= 0);
  uint8_t type, body[NET_MAX_FRAME];
  bool ok = read_frame(fd, &type, body, sizeof body) && type == MSG_HELLO;
  if (ok && (data[0] & 1)) {
    uint8_t f[NET_HDR + 1 + 3 + NET_NONCE + NET_PROOF] = {0};
    put_u32(f, 1 + 3 + NET_NONCE + NET_PROOF);
    f[NET_HDR] = MSG_WELCOME;
    put_u16(f + NET_HDR + 1, 1);
    write_all(fd, f, sizeof f);
    ok = read_frame(fd, &type, body, sizeof body) && type == MSG_AUTH;
    uint8_t ready[NET_HDR + 1 + 4];
    put_u32(ready, 5);
    ready[NET_HDR] = MSG_READY;
    put_u32(ready + NET_HDR + 1, NET_MAX_FRAME);
    if (ok)
      write_all(fd, ready, sizeof ready);
    ok = ok && read_frame(fd, &type, body, sizeof body) && type == MSG_GET;
  }
  if (ok)
    write_all(fd, data + 1, size - 1);
  shutdown(fd, SHUT_WR);
  uint8_t sink[4096];
  while (recv(fd, sink, sizeof sink, 0) > 0)
    ; /* until the client closes */
  close(fd);
  sem_wait(&done);
  return 0;
}
