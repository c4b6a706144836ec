/* SPDX-License-Identifier: MIT
 *
 * fuzz_handshake.c -- the handshake and authentication of a server that
 * has a secret, driven by a fuzzed script.  Each input is a list of
 * actions on one connection:
 *   0 L bytes..   send L raw bytes
 *   1 a b c d     send HELLO, versions (a<<8|b)..(c<<8|d), zero nonce
 *   2             send AUTH with the right proof (computed here from the
 *                 server's nonce in its WELCOME, as a client with the
 *                 secret would)
 *   3 i           send AUTH with the right proof, bit i flipped
 *   4             send AUTH with a proof made with a wrong secret
 *   5 k           send a request: GET "a", TRIGGER handle 0, LIST, PING
 *   6 n           send the first n bytes of a HELLO only (truncated)
 * The oracle, "nobody let in": unless a right proof was sent, the server
 * sends nothing but WELCOME and ERROR frames -- no READY, TOKEN, ACK,
 * LIST_REPLY, PONG or NOTIFY -- and the served token is never triggered.
 * And, as for fuzz_server, every frame is well formed and nothing is left
 * once the peer has gone.
 */
#include "fuzz_common.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char SECRET[] = "fuzzing secret";

struct seen {
  bool welcome;
  uint8_t snonce[NET_NONCE];
  bool privileged; /* a frame only an authenticated peer may get */
};

static void on_frame(uint8_t type, const uint8_t *b, size_t n, void *arg) {
  struct seen *v = arg;
  if (type == MSG_WELCOME && n >= 3 + NET_NONCE && !v->welcome) {
    v->welcome = true;
    memcpy(v->snonce, b + 3, NET_NONCE);
    FUZZ_CHECK(b[2] & NET_WELCOME_SECRET);
  } else if (type != MSG_WELCOME && type != MSG_ERROR) {
    v->privileged = true;
  }
}

static void proof(const char *secret, const uint8_t sn[NET_NONCE],
                  uint8_t out[NET_PROOF]) {
  static const uint8_t zeros[NET_NONCE];
  uint8_t msg[22 + 2 * NET_NONCE];
  memcpy(msg, "cancel-token v1 client", 22);
  memcpy(msg + 22, zeros, NET_NONCE);
  memcpy(msg + 22 + NET_NONCE, sn, NET_NONCE);
  unsigned len = NET_PROOF;
  FUZZ_CHECK(HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, sizeof msg,
                  out, &len) != NULL);
}

static void send_frame(int fd, uint8_t type, const uint8_t *body, size_t n) {
  uint8_t f[NET_HDR + 1 + 64];
  put_u32(f, (uint32_t)(1 + n));
  f[NET_HDR] = type;
  memcpy(f + NET_HDR + 1, body, n);
  ssize_t w = send(fd, f, NET_HDR + 1 + n, MSG_DONTWAIT | MSG_NOSIGNAL);
  (void)w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ct_net_server_options o = {.log = fuzz_quiet_log,
                             .secret = SECRET,
                             .secret_len = strlen(SECRET)};
  ct_net_server *s;
  FUZZ_CHECK(ct_net_server_new(&s, fuzz_sock_path(), &o) == 0);
  ct_token *a;
  FUZZ_CHECK(ct_token_new(&a, "a") == 0);
  FUZZ_CHECK(ct_net_server_add(s, "a", a) == 0);
  int sv[2];
  FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  net_server_adopt(s, sv[0]);
  static struct fuzz_acc acc;
  acc.len = 0;
  struct seen v = {0};
  bool right_proof = false;
  size_t pos = 0;
  while (pos < size) {
    uint8_t op = data[pos++] % 7, p[64] = {0};
    switch (op) {
    case 0: {
      size_t n = pos < size ? data[pos++] : 0;
      if (n > size - pos)
        n = size - pos;
      ssize_t w = send(sv[1], data + pos, n, MSG_DONTWAIT | MSG_NOSIGNAL);
      (void)w;
      pos += n;
      break;
    }
    case 1:
    case 6: {
      memcpy(p, NET_MAGIC, 4);
      for (int i = 0; i < 4 && op == 1; i++)
        p[4 + i] = pos < size ? data[pos++] : 0;
      if (op == 1) {
        send_frame(sv[1], MSG_HELLO, p, 8 + NET_NONCE);
      } else { /* a truncated HELLO: the header promises more */
        uint8_t f[NET_HDR + 1 + 40];
        put_u32(f, 41);
        f[NET_HDR] = MSG_HELLO;
        memcpy(f + NET_HDR + 1, p, 40);
        size_t n = pos < size ? data[pos++] % sizeof f : 3;
        ssize_t w = send(sv[1], f, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)w;
      }
      break;
    }
    case 2:
    case 3:
    case 4:
      proof(op == 4 ? "wrong secret" : SECRET, v.snonce, p);
      if (op == 3) {
        unsigned bit = pos < size ? data[pos++] : 0;
        p[(bit / 8) % NET_PROOF] ^= (uint8_t)(1u << (bit % 8));
      }
      if (op == 2 && v.welcome)
        right_proof = true;
      send_frame(sv[1], MSG_AUTH, p, NET_PROOF);
      break;
    default: {
      unsigned k = pos < size ? data[pos++] % 4 : 0;
      put_u32(p, 7); /* req */
      if (k == 0) {
        p[4] = 'a';
        send_frame(sv[1], MSG_GET, p, 5);
      } else if (k == 1) {
        send_frame(sv[1], MSG_TRIGGER, p, 10); /* handle 0, reason 0 */
      } else if (k == 2) {
        send_frame(sv[1], MSG_LIST, p, 8);
      } else {
        send_frame(sv[1], MSG_PING, p, 4);
      }
    }
    }
    fuzz_pump(s);
    fuzz_drain(sv[1], &acc);
    fuzz_frames(&acc, NULL, NULL);
    v.welcome = false; /* re-read from the start: the first WELCOME */
    v.privileged = false;
    fuzz_frames(&acc, on_frame, &v);
    if (!right_proof) {
      FUZZ_CHECK(!v.privileged);
      FUZZ_CHECK(!ct_token_triggered(a));
    }
  }
  close(sv[1]);
  fuzz_pump(s);
  ct_net_server_stats st;
  ct_net_server_get_stats(s, &st);
  FUZZ_CHECK(st.active == 0 && st.ready == 0 && st.proxies == 0);
  ct_net_server_free(s);
  ct_token_unref(a);
  return 0;
}
