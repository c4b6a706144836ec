/* SPDX-License-Identifier: MIT
 *
 * fuzz_common.h -- what the libFuzzer harnesses share: a server driven
 * without its thread (net_server_adopt/net_server_run_once, from
 * src/remote/net_internal.h), a private directory for socket files, and a
 * reader of the frames the server sends back (split by the codec's
 * net_frame_next(), as the server's own reader does).  Any broken expectation
 * aborts, which libFuzzer reports as a crash.
 */
#ifndef CT_FUZZ_COMMON_H
#define CT_FUZZ_COMMON_H

#include "fuzz_check.h"
#include "net_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void fuzz_quiet_log(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

/* A fresh private directory, once per process; the socket path in it. */
static const char *fuzz_sock_path(void) {
  static char path[128];
  if (!path[0]) {
    char dir[64] = "/tmp/ct-fuzz-XXXXXX";
    FUZZ_CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/s", dir);
  }
  return path;
}

/* Pump the server until it has nothing left to do. */
static void fuzz_pump(ct_net_server *s) {
  for (int i = 0; i < 10000; i++)
    if (net_server_run_once(s, 0) <= 0)
      return;
}

/* Drain what the server sent to `fd` into `acc` (capped). */
struct fuzz_acc {
  uint8_t buf[1 << 16];
  size_t len;
};
static void fuzz_drain(int fd, struct fuzz_acc *a) {
  for (;;) {
    uint8_t tmp[4096];
    ssize_t r = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
    if (r <= 0)
      return;
    size_t n = (size_t)r;
    if (n > sizeof a->buf - a->len)
      n = sizeof a->buf - a->len;
    memcpy(a->buf + a->len, tmp, n);
    a->len += n;
  }
}

/* Walk the frames in acc; every frame the server sends is well formed.
 * Calls fn(type, body, n, arg) for each complete one. */
static void fuzz_frames(const struct fuzz_acc *a,
                        void (*fn)(uint8_t, const uint8_t *, size_t, void *),
                        void *arg) {
  size_t pos = 0;
  for (;;) { /* split by the codec the server itself uses */
    struct net_frame f;
    int k = net_frame_next(a->buf + pos, a->len - pos, NET_MAX_FRAME, &f,
                           NULL);
    FUZZ_CHECK(k >= 0); /* length 1..NET_MAX_FRAME */
    if (k == 0)
      break;
    if (fn)
      fn(f.type, f.body, f.len, arg);
    pos += f.size;
  }
}

#endif
