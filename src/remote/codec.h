/* SPDX-License-Identifier: MIT
 *
 * codec.h -- the wire codec of docs/PROTOCOL.md: frame splitting, one
 * decoder and one encoder per message, byte buffers, and the text rules
 * (UTF-8 names, cut cause names).  Pure functions over buffers: no
 * sockets, no clocks, no locks, so the fuzzers drive them directly
 * (fuzz/fuzz_codec.c) and the server and the client agree on every byte.
 *
 * Design notes:
 *
 *  Decoders take a frame's body (what follows the type byte) and its
 *  length, check every length before reading (a short body, a length
 *  field pointing past the end, a name over CT_NET_NAME_MAX are
 *  -EBADMSG), and fill a struct whose pointers point INTO the body: they
 *  copy nothing and allocate nothing, and the result is valid as long as
 *  the body is.  What a decoder accepts, the matching encoder can produce,
 *  and encoding a decoded message gives the same bytes back
 *  (fuzz_codec's oracle).  Semantic checks that depend on state (is this
 *  handle ours, is this reason sendable) belong to the callers.
 *
 *  Encoders append one whole frame to a net_buf and return 0 or -ENOMEM;
 *  on failure the buffer holds what it held before.  Their inputs are
 *  trusted (the caller built them), so they cut nothing but error
 *  messages (at NET_MAX_MSG bytes).
 */
#ifndef CT_REMOTE_CODEC_H
#define CT_REMOTE_CODEC_H

#include "text.h"
#include "canceltoken_net.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
#define NET_HELLO_LEN 40       /* magic, vmin, vmax, nonce */
#define NET_HELLO_GROUP_LEN 48 /* ... then the optional group (u64) */

enum net_type {
  MSG_HELLO = 0x01,   /* C->S magic[4] u16 vmin u16 vmax nonce[32] */
  MSG_WELCOME = 0x02, /* S->C u16 version u8 flags nonce[32] proof[32] */
  MSG_AUTH = 0x03,    /* C->S proof[32] */
  MSG_READY = 0x04,   /* S->C u32 max_frame */
  MSG_ERROR = 0x05,   /* S->C u32 req u16 code message */
  MSG_GET = 0x10,     /* C->S u32 req name */
  MSG_TOKEN = 0x11,   /* S->C u32 req u32 handle u8 trig u8 reason u8 detail
                         u16 owner_len owner cause */
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

/* ---- framing ---- */
struct net_frame {
  uint8_t type;
  const uint8_t *body; /* points into the input */
  size_t len;          /* of the body */
  size_t size;         /* of the whole frame, header included */
};
/* Does p[0..n) begin with a whole frame whose length field is at most
 * max?  1: yes, *f describes it; 0: not yet (need more bytes; *f is left
 * alone); -EBADMSG: a length of 0; -EMSGSIZE: a length above max (its
 * value is in *length if length is not NULL, in both error cases). */
NET_HIDDEN int net_frame_next(const uint8_t *p, size_t n, uint32_t max,
                              struct net_frame *f, uint32_t *length);

/* ---- messages ---- */
struct net_hello {
  uint16_t vmin, vmax;
  const uint8_t *nonce; /* NET_NONCE bytes */
  uint64_t group;       /* the client's I/O group; 0: none sent */
};
struct net_welcome {
  uint16_t version;
  uint8_t flags;
  const uint8_t *nonce, *proof;
};
struct net_error {
  uint32_t req;
  uint16_t code;
  const char *msg; /* not NUL-terminated */
  size_t msg_len;
};
struct net_get {
  uint32_t req;
  const char *name; /* 1..CT_NET_NAME_MAX bytes, not NUL-terminated */
  size_t name_len;
};
struct net_token {
  uint32_t req, handle;
  bool triggered;
  uint8_t reason, detail;
  const char *owner, *cause;
  size_t owner_len, cause_len;
};
struct net_trigger {
  uint32_t req, handle;
  uint8_t reason, detail;
};
struct net_notify {
  uint32_t handle;
  uint8_t reason, detail;
  const char *cause;
  size_t cause_len;
};
struct net_list_reply {
  uint32_t req, next, count;
  const uint8_t *entries; /* count entries, see net_dec_list_entry() */
  size_t len;
};
struct net_list_entry {
  bool triggered;
  uint8_t reason, detail;
  const char *name, *cause;
  size_t name_len, cause_len;
};

/* Each returns 0 or -EBADMSG.  A HELLO whose magic is not "CTNT" is
 * -EPROTO (not our protocol at all); bytes after the nonce are allowed
 * (PROTOCOL.md: a later HELLO may grow): the first 8 of them, if there
 * are 8, are the group (PROTOCOL.md, HELLO), else the group is 0. */
NET_HIDDEN int net_dec_hello(const uint8_t *b, size_t n, struct net_hello *m);
NET_HIDDEN int net_dec_welcome(const uint8_t *b, size_t n,
                               struct net_welcome *m);
NET_HIDDEN int net_dec_auth(const uint8_t *b, size_t n, const uint8_t **proof);
NET_HIDDEN int net_dec_ready(const uint8_t *b, size_t n, uint32_t *max_frame);
NET_HIDDEN int net_dec_error(const uint8_t *b, size_t n, struct net_error *m);
NET_HIDDEN int net_dec_get(const uint8_t *b, size_t n, struct net_get *m);
NET_HIDDEN int net_dec_token(const uint8_t *b, size_t n, struct net_token *m);
NET_HIDDEN int net_dec_trigger(const uint8_t *b, size_t n,
                               struct net_trigger *m);
NET_HIDDEN int net_dec_ack(const uint8_t *b, size_t n, uint32_t *req,
                           uint8_t *result);
NET_HIDDEN int net_dec_notify(const uint8_t *b, size_t n,
                              struct net_notify *m);
NET_HIDDEN int net_dec_list(const uint8_t *b, size_t n, uint32_t *req,
                            uint32_t *start);
NET_HIDDEN int net_dec_list_reply(const uint8_t *b, size_t n,
                                  struct net_list_reply *m);
/* The entry at *pos in r's entries: 1 and *pos advanced, 0 at the end,
 * -EBADMSG if it runs past the end or a name is over CT_NET_NAME_MAX. */
NET_HIDDEN int net_dec_list_entry(const struct net_list_reply *r, size_t *pos,
                                  struct net_list_entry *e);
/* PING and PONG: a request id only. */
NET_HIDDEN int net_dec_req(const uint8_t *b, size_t n, uint32_t *req);

/* Encoders: append one frame; 0 or -ENOMEM. */
NET_HIDDEN int net_enc_hello(struct net_buf *o, uint16_t vmin, uint16_t vmax,
                             const uint8_t nonce[NET_NONCE]);
/* The same HELLO followed by the group (NET_HELLO_GROUP_LEN bytes): what
 * the client sends; net_enc_hello() is the 40-byte form of version 1. */
NET_HIDDEN int net_enc_hello_group(struct net_buf *o, uint16_t vmin,
                                   uint16_t vmax,
                                   const uint8_t nonce[NET_NONCE],
                                   uint64_t group);
NET_HIDDEN int net_enc_welcome(struct net_buf *o, const struct net_welcome *m);
NET_HIDDEN int net_enc_auth(struct net_buf *o, const uint8_t proof[NET_PROOF]);
NET_HIDDEN int net_enc_ready(struct net_buf *o, uint32_t max_frame);
/* msg[0..n) is cut at NET_MAX_MSG bytes (on a UTF-8 boundary). */
NET_HIDDEN int net_enc_error(struct net_buf *o, uint32_t req, unsigned code,
                             const char *msg, size_t n);
NET_HIDDEN int net_enc_get(struct net_buf *o, uint32_t req, const char *name,
                           size_t n);
NET_HIDDEN int net_enc_token(struct net_buf *o, const struct net_token *m);
NET_HIDDEN int net_enc_trigger(struct net_buf *o, const struct net_trigger *m);
NET_HIDDEN int net_enc_ack(struct net_buf *o, uint32_t req, uint8_t result);
NET_HIDDEN int net_enc_notify(struct net_buf *o, const struct net_notify *m);
NET_HIDDEN int net_enc_list(struct net_buf *o, uint32_t req, uint32_t start);
/* A LIST_REPLY's entries are laid out by the caller in a page of its own
 * (net_put_list_entry(), net_list_entry_size() bytes each), then framed. */
NET_HIDDEN size_t net_list_entry_size(const struct net_list_entry *e);
NET_HIDDEN void net_put_list_entry(uint8_t *dst,
                                   const struct net_list_entry *e);
NET_HIDDEN int net_enc_list_reply(struct net_buf *o,
                                  const struct net_list_reply *m);
/* PING and PONG (type), or any frame that is a request id only. */
NET_HIDDEN int net_enc_req(struct net_buf *o, uint8_t type, uint32_t req);

/* ---- text ---- */
static inline bool net_utf8_valid(const uint8_t *s, size_t n) {
  return ct_text_utf8_valid(s, n); /* text.c, shared with src/zk */
}
/* A served name: 1..CT_NET_NAME_MAX bytes of UTF-8.  Stores its length;
 * returns 0, -EINVAL (empty, not UTF-8) or -ENAMETOOLONG. */
NET_HIDDEN int net_check_name(const char *name, size_t *len);
/* Length of the longest prefix of s[0..n) that fits max bytes, cut on a
 * UTF-8 boundary (the caller then adds "..."). */
NET_HIDDEN size_t net_utf8_cut(const char *s, size_t n, size_t max);
/* Copy name into buf (CT_NET_NAME_MAX bytes), cut with "..." if longer;
 * returns the length written. */
NET_HIDDEN size_t net_wire_name(const char *name, char buf[CT_NET_NAME_MAX]);

#endif /* CT_REMOTE_CODEC_H */
