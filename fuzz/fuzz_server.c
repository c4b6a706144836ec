/* SPDX-License-Identifier: MIT
 *
 * fuzz_server.c -- the server's per-connection state machine, fed an
 * arbitrary byte stream.  Each input is one connection to a fresh server
 * (no secret) serving a plain token, an already triggered one, a chained
 * child and one with a name of the maximum length.  The first input byte
 * chooses how the stream is cut into writes (1..255 bytes each, 0: all at
 * once), so frames arrive whole, split, or glued together; the server is
 * pumped after every write.  Checked: no crash, leak or undefined
 * behaviour (ASan, LSan, UBSan), every frame the server sends is well
 * formed, and once the peer has gone the server holds no connection and
 * no subscription.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  ct_net_server_options o = {.log = fuzz_quiet_log,
                             .max_proxies_per_client = 3};
  ct_net_server *s;
  FUZZ_CHECK(ct_net_server_new(&s, fuzz_sock_path(), &o) == 0);
  static char longname[CT_NET_NAME_MAX + 1];
  if (!longname[0])
    memset(longname, 'n', CT_NET_NAME_MAX);
  ct_token *a, *b, *c, *l;
  FUZZ_CHECK(ct_token_new(&a, "a") == 0);
  FUZZ_CHECK(ct_token_new(&b, "b") == 0);
  FUZZ_CHECK(ct_token_new_child(&c, "c", a) == 0);
  FUZZ_CHECK(ct_token_new(&l, longname) == 0);
  ct_token_trigger(b);
  FUZZ_CHECK(ct_net_server_add(s, "a", a) == 0);
  FUZZ_CHECK(ct_net_server_add(s, "b", b) == 0);
  FUZZ_CHECK(ct_net_server_add(s, "c", c) == 0);
  FUZZ_CHECK(ct_net_server_add(s, longname, l) == 0);

  int sv[2];
  FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  net_server_adopt(s, sv[0]);
  static struct fuzz_acc acc;
  acc.len = 0;
  size_t chunk = data[0] ? data[0] : size;
  for (size_t pos = 1; pos < size;) {
    size_t n = size - pos < chunk ? size - pos : chunk;
    ssize_t w = send(sv[1], data + pos, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    fuzz_pump(s);
    fuzz_drain(sv[1], &acc);
    if (w <= 0)
      break; /* the server has closed, or will not read more */
    pos += (size_t)w;
  }
  fuzz_frames(&acc, NULL, NULL);
  close(sv[1]);
  fuzz_pump(s);
  ct_net_server_stats st;
  ct_net_server_get_stats(s, &st);
  FUZZ_CHECK(st.active == 0 && st.ready == 0 && st.proxies == 0);
  ct_net_server_free(s);
  ct_token_unref(a);
  ct_token_unref(b);
  ct_token_unref(c);
  ct_token_unref(l);
  return 0;
}
