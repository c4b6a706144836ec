/* SPDX-License-Identifier: MIT
 *
 * net_internal.h -- what the token server (server.c) and client (client.c)
 * share: the wire format of docs/PROTOCOL.md, byte buffers, addresses, the
 * HMAC proofs and logging.  Nothing here touches a token's internals: the
 * network layer is written against the public API only.
 */
#ifndef CT_NET_INTERNAL_H
#define CT_NET_INTERNAL_H

#include "canceltoken_net.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#define NET_HIDDEN __attribute__((visibility("hidden")))

/* ---- wire format (docs/PROTOCOL.md) ---- */
#define NET_MAGIC "CTNT"
#define NET_VERSION_MIN 1
#define NET_VERSION_MAX 1
#define NET_NONCE 32
#define NET_PROOF 32
#define NET_HDR 4              /* u32 big-endian length of type + body */
#define NET_MAX_FRAME 16384u   /* largest length once authenticated */
#define NET_MAX_FRAME_HS 256u  /* largest length during the handshake */
#define NET_MAX_MSG 1024       /* longest error message sent */

enum net_type {
  MSG_HELLO = 0x01,   /* C->S magic[4] u16 vmin u16 vmax nonce[32] */
  MSG_WELCOME = 0x02, /* S->C u16 version u8 flags nonce[32] proof[32] */
  MSG_AUTH = 0x03,    /* C->S proof[32] */
  MSG_READY = 0x04,   /* S->C u32 max_frame */
  MSG_ERROR = 0x05,   /* S->C u32 req u16 code message */
  MSG_GET = 0x10,     /* C->S u32 req name */
  MSG_TOKEN = 0x11,   /* S->C u32 req u32 handle u8 trig u8 reason u8 detail
                         cause */
  MSG_TRIGGER = 0x12, /* C->S u32 req u32 handle u8 reason u8 detail */
  MSG_ACK = 0x13,     /* S->C u32 req u8 result */
  MSG_NOTIFY = 0x14,  /* S->C u32 handle u8 reason u8 detail cause */
  MSG_LIST = 0x15,    /* C->S u32 req u32 start */
  MSG_LIST_REPLY = 0x16, /* S->C u32 req u32 next u32 count entries */
  MSG_PING = 0x17,    /* C->S u32 req */
  MSG_PONG = 0x18     /* S->C u32 req */
};
#define NET_WELCOME_SECRET 0x01 /* flags: the server checks a secret */

enum net_err {
  NERR_VERSION = 1,   /* no common protocol version */
  NERR_AUTH = 2,      /* wrong or missing proof of the secret */
  NERR_PEER = 3,      /* peer uid not allowed */
  NERR_MALFORMED = 4, /* frame does not parse */
  NERR_TOO_BIG = 5,   /* frame longer than allowed */
  NERR_UNEXPECTED = 6,/* message not valid now (or unknown type) */
  NERR_NOT_FOUND = 7, /* no token of that name */
  NERR_BAD_HANDLE = 8,/* no token of that handle */
  NERR_LIMIT = 9,     /* too many clients / proxies */
  NERR_NO_MEMORY = 10,/* the server ran out of memory */
  NERR_TIMEOUT = 11,  /* handshake or frame took too long */
  NERR_SHUTDOWN = 12  /* server stopping */
};

/* The errno a client returns for a server's error code. */
NET_HIDDEN int net_err_to_errno(unsigned code);

static inline void put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline uint16_t get_u16(const uint8_t *p) {
  return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

/* ---- growable byte buffer: data[off..len) is pending ---- */
struct net_buf {
  uint8_t *data;
  size_t off, len, cap;
};
NET_HIDDEN int net_buf_reserve(struct net_buf *b, size_t extra);
NET_HIDDEN int net_buf_append(struct net_buf *b, const void *p, size_t n);
/* Start a frame of `type` whose body is `body_len` bytes; returns a pointer
 * to the body to fill in, or NULL (out of memory). */
NET_HIDDEN uint8_t *net_buf_frame(struct net_buf *b, uint8_t type,
                                  size_t body_len);
static inline size_t net_buf_pending(const struct net_buf *b) {
  return b->len - b->off;
}
NET_HIDDEN void net_buf_consume(struct net_buf *b, size_t n);
NET_HIDDEN void net_buf_free(struct net_buf *b);

/* ---- addresses ---- */
struct net_addr {
  int family; /* AF_UNIX, AF_INET or AF_INET6 */
  struct sockaddr_storage ss;
  socklen_t len;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  char host[256]; /* TCP: as written, "" for loopback */
  uint16_t port;
};
/* Parse ADDRESS (see canceltoken_net.h).  For TCP it resolves the host and
 * returns its first address (or the index-th, for a client trying them in
 * turn); -ENOENT past the last one. */
NET_HIDDEN int net_parse_address(const char *address, struct net_addr *a,
                                 int index, char *err, size_t errlen);
NET_HIDDEN bool net_addr_is_loopback(const struct net_addr *a);
/* "127.0.0.1:5001", "[::1]:5001" or the path. */
NET_HIDDEN int net_addr_format(const struct sockaddr *sa, socklen_t len,
                               char *buf, size_t buflen);

/* ---- the handshake's proofs ---- */
/* HMAC-SHA256(secret, label || cnonce || snonce), label "cancel-token v1
 * client" or "... server".  Returns 0 or -ENOMEM/-EINVAL. */
NET_HIDDEN int net_proof(const void *secret, size_t secret_len, bool server,
                         const uint8_t cnonce[NET_NONCE],
                         const uint8_t snonce[NET_NONCE],
                         uint8_t out[NET_PROOF]);
NET_HIDDEN bool net_proof_equal(const uint8_t a[NET_PROOF],
                                const uint8_t b[NET_PROOF]);
NET_HIDDEN int net_random(uint8_t *p, size_t n);

/* ---- allocation ----
 * Every allocation made by src/remote goes through these four, so that a test
 * can fail each allocation site in turn (tests/test_fault_oom.c), as
 * ct_set_allocator() lets tests/test_oom.c do for the core.  The hook has
 * lua_Alloc's shape without the old size: with nsize == 0 it frees ptr and
 * returns NULL; otherwise it behaves as realloc(ptr, nsize), NULL meaning
 * out of memory.  NULL restores malloc/realloc/free.  Testing only, NOT
 * thread-safe: install it while no server or client exists.  Memory that
 * libcrypto and getaddrinfo() allocate for themselves is not covered, nor
 * is the core's (tokens, callback lists: use ct_set_allocator()). */
typedef void *(*net_alloc_fn)(void *ud, void *ptr, size_t nsize);
NET_HIDDEN void net_set_allocator(net_alloc_fn fn, void *ud);
NET_HIDDEN void *net_malloc(size_t n);
NET_HIDDEN void *net_calloc(size_t n, size_t size);
NET_HIDDEN void *net_realloc(void *p, size_t n);
NET_HIDDEN void net_free(void *p);

/* ---- testing hooks (server.c; for fuzz/ and tests/ only) ----
 * Drive a server without its thread, deterministically: adopt a connected
 * stream socket as if accept() had returned it (the server then owns and
 * closes fd), and run one pass of the event loop, waiting at most
 * timeout_ms for events.  run_once returns the number of events handled,
 * or a negative errno of epoll_wait().  Only on a server that was never
 * started, from one thread. */
NET_HIDDEN void net_server_adopt(ct_net_server *s, int fd);
NET_HIDDEN int net_server_run_once(ct_net_server *s, int timeout_ms);

/* ---- misc ---- */
NET_HIDDEN bool net_utf8_valid(const uint8_t *s, size_t n);
/* A served name: 1..CT_NET_NAME_MAX bytes of UTF-8.  Stores its length;
 * returns 0, -EINVAL (empty, not UTF-8) or -ENAMETOOLONG. */
NET_HIDDEN int net_check_name(const char *name, size_t *len);
/* Length of the longest prefix of s[0..n) that fits max bytes, cut on a
 * UTF-8 boundary (the caller then adds "..."). */
NET_HIDDEN size_t net_utf8_cut(const char *s, size_t n, size_t max);
NET_HIDDEN void net_log(ct_net_log_fn fn, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
NET_HIDDEN void net_seterr(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
NET_HIDDEN int net_set_nonblock(int fd);
static inline bool net_valid_deadline(int64_t d) { return d >= -1; }
/* Milliseconds to wait until `deadline` for poll(2): -1 forever. */
NET_HIDDEN int net_poll_ms(int64_t deadline);

#endif /* CT_NET_INTERNAL_H */
