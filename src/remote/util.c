/* SPDX-License-Identifier: MIT
 *
 * util.c -- small helpers of the socket backend that are about neither
 * the server nor the client: logging, error strings, descriptors, and
 * deadlines turned into poll(2) timeouts, and the options structs' size
 * check (see canceltoken_net.h: a leading size field, as nng and curl do).
 */
#include "net_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>

void net_log(ct_net_log_fn fn, void *arg, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (fn)
    fn(arg, msg);
  else
    fprintf(stderr, "cancel-token: %s\n", msg);
}

void net_seterr(char *buf, size_t len, const char *fmt, ...) {
  if (!buf || len == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

int net_set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return -errno;
  return 0;
}

int net_poll_ms(int64_t deadline) {
  if (deadline == CT_FOREVER)
    return -1;
  int64_t left = deadline - ct_now();
  if (left <= 0)
    return 0;
  int64_t ms = (left + 999999) / 1000000;
  return ms > 3600000 ? 3600000 : (int)ms;
}

void net_drain_some(int fd) {
  uint8_t sink[512];
  for (size_t n = 0; n < NET_DRAIN_MAX; n += sizeof sink)
    if (recv(fd, sink, sizeof sink, MSG_DONTWAIT) <= 0)
      return;
}

int net_options_copy(void *dst, size_t full, const void *src,
                     const size_t *sizes, size_t n) {
  memset(dst, 0, full);
  if (!src) {
    memcpy(dst, &full, sizeof full);
    return 0;
  }
  size_t size;
  memcpy(&size, src, sizeof size); /* every options struct begins with it */
  if (size == 0)
    size = sizes[0];
  bool known = false;
  for (size_t i = 0; i < n; i++)
    known |= size == sizes[i];
  if (!known || size > full)
    return -EINVAL;
  memcpy(dst, src, size);
  memcpy(dst, &full, sizeof full);
  return 0;
}

void ct_net_server_options_init(ct_net_server_options *o) {
  if (!o)
    return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
}

void ct_net_client_options_init(ct_net_client_options *o) {
  if (!o)
    return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
}
