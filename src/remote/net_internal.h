/* SPDX-License-Identifier: MIT
 *
 * net_internal.h -- the internal header of src/remote's socket backend:
 * what the server's files (server*.c) and the client's (client*.c) share.
 * It gathers the transport-neutral pieces (alloc.h: the allocator hook;
 * codec.h: the wire format; address.h: address syntax) and declares the
 * rest: resolved socket addresses, the handshake's proofs, logging, and
 * the server's testing hooks.  The server's and the client's own
 * structures are in server.h and client.h, which only their files
 * include.  Nothing here touches a token's internals: the network layer
 * is written against the public API only.
 */
#ifndef CT_NET_INTERNAL_H
#define CT_NET_INTERNAL_H

#include "canceltoken_net.h"

#include "address.h"
#include "alloc.h"
#include "codec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* ---- addresses (resolve.c) ---- */
struct net_addr {
  int family; /* AF_UNIX, AF_INET or AF_INET6 */
  struct sockaddr_storage ss;
  socklen_t len;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  char host[CT_ADDR_HOST_MAX + 1]; /* TCP: as written, "" for loopback */
  uint16_t port;
};
/* Parse ADDRESS with ct_addr_parse() (the syntax of canceltoken_net.h),
 * then resolve it.  For TCP it returns the host's first address (or the
 * index-th, for a client trying them in turn); -ENOENT past the last one.
 * A zk:// address is -EINVAL: it is not a socket. */
NET_HIDDEN int net_resolve_address(const char *address, struct net_addr *a,
                                   int index, char *err, size_t errlen);
NET_HIDDEN bool net_addr_is_loopback(const struct net_addr *a);
/* "127.0.0.1:5001", "[::1]:5001" or the path. */
NET_HIDDEN int net_addr_format(const struct sockaddr *sa, socklen_t len,
                               char *buf, size_t buflen);

/* ---- the handshake's proofs (auth.c) ---- */
/* HMAC-SHA256(secret, label || cnonce || snonce), label "cancel-token v1
 * client" or "... server".  Returns 0 or -ENOMEM/-EINVAL. */
NET_HIDDEN int net_proof(const void *secret, size_t secret_len, bool server,
                         const uint8_t cnonce[NET_NONCE],
                         const uint8_t snonce[NET_NONCE],
                         uint8_t out[NET_PROOF]);
NET_HIDDEN bool net_proof_equal(const uint8_t a[NET_PROOF],
                                const uint8_t b[NET_PROOF]);
NET_HIDDEN int net_random(uint8_t *p, size_t n);
/* A secret of this process, drawn once (net_random; if that ever fails,
 * from the clock and addresses, which a remote peer cannot see either):
 * the key of every net_map's hash below.  Thread-safe (pthread_once). */
NET_HIDDEN uint64_t net_map_seed(void);
/* Overwrite secret material so that the compiler cannot skip it. */
NET_HIDDEN void net_wipe(void *p, size_t n);

/* ---- testing hooks (server.c; for fuzz/ and tests/ only) ----
 * Drive a server without its thread, deterministically: adopt a connected
 * stream socket as if accept() had returned it (the server then owns and
 * closes fd), and run one pass of the event loop, waiting at most
 * timeout_ms for events.  run_once returns the number of events handled,
 * or a negative errno of epoll_wait().  Only on a server that was never
 * started, from one thread. */
NET_HIDDEN void net_server_adopt(ct_net_server *s, int fd);
NET_HIDDEN int net_server_run_once(ct_net_server *s, int timeout_ms);
/* How a notice's n sends are cut into `parts` contiguous shares, one per
 * sending thread (server_fanout.c): share k is [cut[k], cut[k + 1]), cut
 * has parts + 1 entries; each cut after the first is n * k / parts moved
 * on to where the group changes, if that is less than half a share away
 * (same(arg, i): element i is in the group of element i - 1). */
NET_HIDDEN void net_fanout_cut(size_t n, size_t parts,
                               bool (*same)(const void *arg, size_t i),
                               const void *arg, size_t *cut);
/* Sort n keys by their high 32 bits (a notice's subscribers: group << 32 |
 * index, server_proto.c), stably, so that keys with the same high half
 * keep their order; in O(n) (a radix sort), using tmp (room for n keys) as
 * scratch.  The result is in key. */
NET_HIDDEN void net_group_sort(uint64_t *key, uint64_t *tmp, size_t n);

/* ---- a hash index (client*.c, server*.c) ----
 * Open addressing with linear probing, keys 64-bit, values non-NULL
 * pointers (NULL marks an empty slot), at most half full, deletion by
 * backward shift (no tombstones: a lookup never walks more than the run
 * its key hashes into).  It finds a record by what a frame names -- a
 * proxy by its handle, a request by its id, a subscription by its token's
 * handle -- in O(1) expected where a scan of every record cost O(records)
 * per frame.  The keys are handles and ids the server or the client
 * numbers itself (and, on the client, token pointers), but a peer chooses
 * WHICH of them it names (a client picks the tokens it GETs, whose ids
 * are 0..N-1; a server picks the handles it sends): with a fixed mixer it
 * could pick keys that all land in one run and make every lookup walk it
 * (an outside review measured 12.6 us a lookup at 15,705 chosen keys).
 * So each key is XORed with a secret of this process (net_map_seed(),
 * stored in the index when it first allocates) before a 64-bit
 * finaliser: not a cryptographic PRF, but the peer cannot see the secret
 * and so cannot tell which keys collide.  An index is
 * owned by the structure it sits in and guarded as that is; zeroed, it is
 * empty and needs no allocation.  No function blocks. */
struct net_map_slot {
  uint64_t key;
  void *val;
};
struct net_map {
  struct net_map_slot *slot; /* cap slots, cap a power of two (or 0) */
  size_t cap, n;
  uint64_t seed; /* net_map_seed(), set with the first allocation */
};

static inline size_t net_map_hash(const struct net_map *m, uint64_t k,
                                  size_t cap) {
  k ^= m->seed;
  k ^= k >> 33; /* MurmurHash3's fmix64 constants (a well-known mixer) */
  k *= UINT64_C(0xff51afd7ed558ccd);
  k ^= k >> 33;
  k *= UINT64_C(0xc4ceb9fe1a85ec53);
  k ^= k >> 33;
  return (size_t)k & (cap - 1);
}

/* The value stored under key, or NULL. */
static inline void *net_map_get(const struct net_map *m, uint64_t key) {
  if (m->n == 0)
    return NULL;
  for (size_t i = net_map_hash(m, key, m->cap);;
       i = (i + 1) & (m->cap - 1)) {
    if (!m->slot[i].val)
      return NULL;
    if (m->slot[i].key == key)
      return m->slot[i].val;
  }
}

/* Store val (non-NULL) under key, replacing what was there.  0, or
 * -ENOMEM (the index is unchanged) if it had to grow and could not. */
static inline int net_map_put(struct net_map *m, uint64_t key, void *val) {
  if (m->n) { /* replacing a key: no growth, so no -ENOMEM */
    for (size_t i = net_map_hash(m, key, m->cap); m->slot[i].val;
         i = (i + 1) & (m->cap - 1))
      if (m->slot[i].key == key) {
        m->slot[i].val = val;
        return 0;
      }
  }
  if (2 * (m->n + 1) > m->cap) {
    /* From 8 slots (128 bytes, 4 keys): a server may hold 65,536
     * connections with an index each, most of them with few keys. */
    size_t cap = m->cap ? 2 * m->cap : 8;
    if (cap < m->cap || cap > SIZE_MAX / sizeof *m->slot)
      return -ENOMEM;
    struct net_map_slot *t = net_calloc(cap, sizeof *t);
    if (!t)
      return -ENOMEM;
    if (!m->cap)
      m->seed = net_map_seed();
    for (size_t j = 0; j < m->cap; j++)
      if (m->slot[j].val) {
        size_t i = net_map_hash(m, m->slot[j].key, cap);
        while (t[i].val)
          i = (i + 1) & (cap - 1);
        t[i] = m->slot[j];
      }
    net_free(m->slot);
    m->slot = t;
    m->cap = cap;
  }
  size_t i = net_map_hash(m, key, m->cap);
  while (m->slot[i].val && m->slot[i].key != key)
    i = (i + 1) & (m->cap - 1);
  if (!m->slot[i].val)
    m->n++;
  m->slot[i] = (struct net_map_slot){key, val};
  return 0;
}

/* Remove key; returns its value, or NULL if it was not there. */
static inline void *net_map_del(struct net_map *m, uint64_t key) {
  if (m->n == 0)
    return NULL;
  size_t mask = m->cap - 1, i = net_map_hash(m, key, m->cap);
  while (m->slot[i].key != key || !m->slot[i].val) {
    if (!m->slot[i].val)
      return NULL;
    i = (i + 1) & mask;
  }
  void *val = m->slot[i].val;
  m->n--;
  /* Backward shift: move later members of the run into the hole when
   * their home slot is not cyclically in (hole, their slot]. */
  for (size_t j = (i + 1) & mask; m->slot[j].val; j = (j + 1) & mask) {
    size_t home = net_map_hash(m, m->slot[j].key, m->cap);
    if (((j - home) & mask) >= ((j - i) & mask)) {
      m->slot[i] = m->slot[j];
      i = j;
    }
  }
  m->slot[i].val = NULL;
  return val;
}

static inline void net_map_free(struct net_map *m) {
  net_free(m->slot);
  *m = (struct net_map){0};
}

/* ---- options structs with a leading size (util.c) ---- */
/* Copy the caller's options struct src (NULL: all defaults) into dst
 * (full bytes, this library's layout) after checking its leading size
 * field: 0 means sizes[0] (the first sized layout); otherwise it must be
 * one of sizes[0..n).  Bytes past the caller's size are zero (defaults);
 * dst's size is set to full.  Returns 0 or -EINVAL.  Reads only the
 * caller's size bytes of src. */
NET_HIDDEN int net_options_copy(void *dst, size_t full, const void *src,
                                const size_t *sizes, size_t n);

/* ---- misc (util.c) ---- */
NET_HIDDEN void net_log(ct_net_log_fn fn, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
NET_HIDDEN void net_seterr(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
NET_HIDDEN int net_set_nonblock(int fd);
/* Discard up to NET_DRAIN_MAX bytes of what fd has received, without
 * blocking: a bounded amount of work whatever the peer keeps sending. */
#define NET_DRAIN_MAX 4096
NET_HIDDEN void net_drain_some(int fd);
static inline bool net_valid_deadline(int64_t d) { return d >= -1; }
/* Milliseconds to wait until `deadline` for poll(2): -1 forever. */
NET_HIDDEN int net_poll_ms(int64_t deadline);

#endif /* CT_NET_INTERNAL_H */
