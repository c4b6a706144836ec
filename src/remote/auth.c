/* SPDX-License-Identifier: MIT
 *
 * auth.c -- the handshake's cryptography (docs/PROTOCOL.md, "Secret"):
 * the HMAC proofs both sides compute, their constant-time comparison, and
 * the nonces.
 *
 * Design notes:
 *  - All cryptography is libcrypto's: HMAC-SHA256 through HMAC(), nonces
 *    from RAND_bytes(), proofs compared with CRYPTO_memcmp() so the time
 *    taken does not tell how many leading bytes of a guess were right.
 *  - The two labels differ, so a server's proof is never a client's
 *    (reflection), and they have the same length, so one buffer fits both.
 */
#include "net_internal.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

int net_proof(const void *secret, size_t secret_len, bool server,
              const uint8_t cnonce[NET_NONCE],
              const uint8_t snonce[NET_NONCE], uint8_t out[NET_PROOF]) {
  static const char client_label[] = "cancel-token v1 client";
  static const char server_label[] = "cancel-token v1 server";
  _Static_assert(sizeof client_label == sizeof server_label,
                 "labels of one length");
  const char *label = server ? server_label : client_label;
  size_t llen = sizeof client_label - 1;
  uint8_t msg[sizeof client_label - 1 + 2 * NET_NONCE];
  memcpy(msg, label, llen);
  memcpy(msg + llen, cnonce, NET_NONCE);
  memcpy(msg + llen + NET_NONCE, snonce, NET_NONCE);
  unsigned int outlen = 0;
  if (secret_len > INT32_MAX)
    return -EINVAL;
  if (!HMAC(EVP_sha256(), secret, (int)secret_len, msg, sizeof msg, out,
            &outlen) ||
      outlen != NET_PROOF)
    return -ENOMEM;
  return 0;
}

bool net_proof_equal(const uint8_t a[NET_PROOF], const uint8_t b[NET_PROOF]) {
  return CRYPTO_memcmp(a, b, NET_PROOF) == 0;
}

int net_random(uint8_t *p, size_t n) {
  return RAND_bytes(p, (int)n) == 1 ? 0 : -EIO;
}

void net_wipe(void *p, size_t n) { OPENSSL_cleanse(p, n); }

static uint64_t map_seed;
static pthread_once_t map_seed_once = PTHREAD_ONCE_INIT;

static void map_seed_init(void) {
  if (net_random((uint8_t *)&map_seed, sizeof map_seed) == 0)
    return;
  /* No randomness (RAND_bytes failed): the clock and two addresses (ASLR)
   * are still nothing a remote peer can read. */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  map_seed = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
             (uint64_t)(uintptr_t)&map_seed ^
             ((uint64_t)(uintptr_t)&ts << 17);
}

uint64_t net_map_seed(void) {
  /* pthread_once orders the write of map_seed before every return here,
   * in every thread. */
  pthread_once(&map_seed_once, map_seed_init);
  return map_seed;
}
