/* SPDX-License-Identifier: MIT
 *
 * codec.c -- the wire codec (see codec.h for its rules): byte buffers,
 * frame splitting, the decoder and encoder of every message of
 * docs/PROTOCOL.md, and the UTF-8 rules for names.  Pure functions over
 * buffers; the only outside call is the allocator hook (alloc.h) under
 * net_buf.
 */
#include "codec.h"

#include "alloc.h"

#include <errno.h>
#include <string.h>

int net_err_to_errno(unsigned code) {
  switch (code) {
  case NERR_VERSION:
    return -EPROTONOSUPPORT;
  case NERR_AUTH:
    return -EACCES;
  case NERR_PEER:
    return -EPERM;
  case NERR_NOT_FOUND:
    return -ENOENT;
  case NERR_BAD_HANDLE:
    return -EINVAL;
  case NERR_LIMIT:
    return -ENOSPC;
  case NERR_NO_MEMORY:
    return -ENOMEM;
  case NERR_TIMEOUT:
    return -ETIMEDOUT;
  case NERR_SHUTDOWN:
    return -ESHUTDOWN;
  default:
    return -EPROTO;
  }
}

/* ---- buffers ---- */

int net_buf_reserve(struct net_buf *b, size_t extra) {
  if (b->off > 0 && b->off == b->len)
    b->off = b->len = 0;
  if (b->cap - b->len >= extra)
    return 0;
  if (b->off > 0) { /* compact before growing */
    memmove(b->data, b->data + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
    if (b->cap - b->len >= extra)
      return 0;
  }
  if (extra > SIZE_MAX - b->len)
    return -ENOMEM;
  size_t want = b->len + extra, cap = b->cap ? b->cap : 256;
  while (cap < want) {
    if (cap > SIZE_MAX / 2)
      return -ENOMEM;
    cap *= 2;
  }
  uint8_t *p = net_realloc(b->data, cap);
  if (!p)
    return -ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int net_buf_append(struct net_buf *b, const void *p, size_t n) {
  int r = net_buf_reserve(b, n);
  if (r < 0)
    return r;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

uint8_t *net_buf_frame(struct net_buf *b, uint8_t type, size_t body_len) {
  if (body_len > UINT32_MAX - 1 ||
      net_buf_reserve(b, NET_HDR + 1 + body_len) < 0)
    return NULL;
  uint8_t *p = b->data + b->len;
  put_u32(p, (uint32_t)(1 + body_len));
  p[4] = type;
  b->len += NET_HDR + 1 + body_len;
  return p + NET_HDR + 1;
}

void net_buf_consume(struct net_buf *b, size_t n) {
  b->off += n;
  if (b->off == b->len)
    b->off = b->len = 0;
}

void net_buf_free(struct net_buf *b) {
  net_free(b->data);
  *b = (struct net_buf){0};
}

/* ---- framing ---- */

int net_frame_next(const uint8_t *p, size_t n, uint32_t max,
                   struct net_frame *f, uint32_t *length) {
  if (n < NET_HDR)
    return 0;
  uint32_t len = get_u32(p);
  if (length)
    *length = len;
  if (len == 0)
    return -EBADMSG;
  if (len > max)
    return -EMSGSIZE;
  if (n - NET_HDR < len)
    return 0;
  f->type = p[NET_HDR];
  f->body = p + NET_HDR + 1;
  f->len = len - 1;
  f->size = NET_HDR + (size_t)len;
  return 1;
}

/* ---- decoders ---- */

int net_dec_hello(const uint8_t *b, size_t n, struct net_hello *m) {
  if (n < NET_HELLO_LEN)
    return -EBADMSG;
  if (memcmp(b, NET_MAGIC, 4) != 0)
    return -EPROTO;
  m->vmin = get_u16(b + 4);
  m->vmax = get_u16(b + 6);
  m->nonce = b + 8;
  m->group = 0;
  if (n >= NET_HELLO_GROUP_LEN)
    m->group = (uint64_t)get_u32(b + NET_HELLO_LEN) << 32 |
               get_u32(b + NET_HELLO_LEN + 4);
  return 0;
}

int net_dec_welcome(const uint8_t *b, size_t n, struct net_welcome *m) {
  if (n < 3 + NET_NONCE + NET_PROOF)
    return -EBADMSG;
  m->version = get_u16(b);
  m->flags = b[2];
  m->nonce = b + 3;
  m->proof = b + 3 + NET_NONCE;
  return 0;
}

int net_dec_auth(const uint8_t *b, size_t n, const uint8_t **proof) {
  if (n != NET_PROOF)
    return -EBADMSG;
  *proof = b;
  return 0;
}

int net_dec_ready(const uint8_t *b, size_t n, uint32_t *max_frame) {
  if (n != 4)
    return -EBADMSG;
  *max_frame = get_u32(b);
  return 0;
}

int net_dec_error(const uint8_t *b, size_t n, struct net_error *m) {
  if (n < 6)
    return -EBADMSG;
  m->req = get_u32(b);
  m->code = get_u16(b + 4);
  m->msg = (const char *)b + 6;
  m->msg_len = n - 6;
  return 0;
}

int net_dec_get(const uint8_t *b, size_t n, struct net_get *m) {
  if (n < 5 || n - 4 > CT_NET_NAME_MAX)
    return -EBADMSG;
  m->req = get_u32(b);
  m->name = (const char *)b + 4;
  m->name_len = n - 4;
  return 0;
}

int net_dec_token(const uint8_t *b, size_t n, struct net_token *m) {
  if (n < 13)
    return -EBADMSG;
  size_t on = get_u16(b + 11);
  if (on > CT_NET_NAME_MAX || 13 + on > n)
    return -EBADMSG;
  m->req = get_u32(b);
  m->handle = get_u32(b + 4);
  m->triggered = b[8] != 0;
  m->reason = b[9];
  m->detail = b[10];
  m->owner = (const char *)b + 13;
  m->owner_len = on;
  m->cause = (const char *)b + 13 + on;
  m->cause_len = n - 13 - on;
  return 0;
}

int net_dec_trigger(const uint8_t *b, size_t n, struct net_trigger *m) {
  if (n != 10)
    return -EBADMSG;
  m->req = get_u32(b);
  m->handle = get_u32(b + 4);
  m->reason = b[8];
  m->detail = b[9];
  return 0;
}

int net_dec_ack(const uint8_t *b, size_t n, uint32_t *req, uint8_t *result) {
  if (n != 5)
    return -EBADMSG;
  *req = get_u32(b);
  *result = b[4];
  return 0;
}

int net_dec_notify(const uint8_t *b, size_t n, struct net_notify *m) {
  if (n < 6)
    return -EBADMSG;
  m->handle = get_u32(b);
  m->reason = b[4];
  m->detail = b[5];
  m->cause = (const char *)b + 6;
  m->cause_len = n - 6;
  return 0;
}

int net_dec_list(const uint8_t *b, size_t n, uint32_t *req, uint32_t *start) {
  if (n != 8)
    return -EBADMSG;
  *req = get_u32(b);
  *start = get_u32(b + 4);
  return 0;
}

int net_dec_list_reply(const uint8_t *b, size_t n, struct net_list_reply *m) {
  if (n < 12)
    return -EBADMSG;
  m->req = get_u32(b);
  m->next = get_u32(b + 4);
  m->count = get_u32(b + 8);
  m->entries = b + 12;
  m->len = n - 12;
  return 0;
}

int net_dec_list_entry(const struct net_list_reply *r, size_t *pos,
                       struct net_list_entry *e) {
  if (*pos >= r->len)
    return 0;
  const uint8_t *p = r->entries + *pos;
  size_t left = r->len - *pos, nl, cl;
  if (left < 5 || (nl = get_u16(p + 3)) > CT_NET_NAME_MAX || left < 7 + nl ||
      (cl = get_u16(p + 5 + nl)) > CT_NET_NAME_MAX || left < 7 + nl + cl)
    return -EBADMSG;
  e->triggered = p[0] != 0;
  e->reason = p[1];
  e->detail = p[2];
  e->name = (const char *)p + 5;
  e->name_len = nl;
  e->cause = (const char *)p + 7 + nl;
  e->cause_len = cl;
  *pos += 7 + nl + cl;
  return 1;
}

int net_dec_req(const uint8_t *b, size_t n, uint32_t *req) {
  if (n != 4)
    return -EBADMSG;
  *req = get_u32(b);
  return 0;
}

/* ---- encoders ---- */

/* The HELLO of NET_HELLO_LEN bytes, or with the group after it. */
static int enc_hello(struct net_buf *o, uint16_t vmin, uint16_t vmax,
                     const uint8_t nonce[NET_NONCE], bool with_group,
                     uint64_t group) {
  uint8_t *p = net_buf_frame(
      o, MSG_HELLO, with_group ? NET_HELLO_GROUP_LEN : NET_HELLO_LEN);
  if (!p)
    return -ENOMEM;
  memcpy(p, NET_MAGIC, 4);
  put_u16(p + 4, vmin);
  put_u16(p + 6, vmax);
  memcpy(p + 8, nonce, NET_NONCE);
  if (with_group) {
    put_u32(p + NET_HELLO_LEN, (uint32_t)(group >> 32));
    put_u32(p + NET_HELLO_LEN + 4, (uint32_t)group);
  }
  return 0;
}

int net_enc_hello(struct net_buf *o, uint16_t vmin, uint16_t vmax,
                  const uint8_t nonce[NET_NONCE]) {
  return enc_hello(o, vmin, vmax, nonce, false, 0);
}

int net_enc_hello_group(struct net_buf *o, uint16_t vmin, uint16_t vmax,
                        const uint8_t nonce[NET_NONCE], uint64_t group) {
  return enc_hello(o, vmin, vmax, nonce, true, group);
}

int net_enc_welcome(struct net_buf *o, const struct net_welcome *m) {
  uint8_t *p = net_buf_frame(o, MSG_WELCOME, 3 + NET_NONCE + NET_PROOF);
  if (!p)
    return -ENOMEM;
  put_u16(p, m->version);
  p[2] = m->flags;
  memcpy(p + 3, m->nonce, NET_NONCE);
  memcpy(p + 3 + NET_NONCE, m->proof, NET_PROOF);
  return 0;
}

int net_enc_auth(struct net_buf *o, const uint8_t proof[NET_PROOF]) {
  uint8_t *p = net_buf_frame(o, MSG_AUTH, NET_PROOF);
  if (!p)
    return -ENOMEM;
  memcpy(p, proof, NET_PROOF);
  return 0;
}

int net_enc_ready(struct net_buf *o, uint32_t max_frame) {
  uint8_t *p = net_buf_frame(o, MSG_READY, 4);
  if (!p)
    return -ENOMEM;
  put_u32(p, max_frame);
  return 0;
}

int net_enc_error(struct net_buf *o, uint32_t req, unsigned code,
                  const char *msg, size_t n) {
  n = net_utf8_cut(msg, n, NET_MAX_MSG);
  uint8_t *p = net_buf_frame(o, MSG_ERROR, 6 + n);
  if (!p)
    return -ENOMEM;
  put_u32(p, req);
  put_u16(p + 4, (uint16_t)code);
  memcpy(p + 6, msg, n);
  return 0;
}

int net_enc_get(struct net_buf *o, uint32_t req, const char *name, size_t n) {
  uint8_t *p = net_buf_frame(o, MSG_GET, 4 + n);
  if (!p)
    return -ENOMEM;
  put_u32(p, req);
  memcpy(p + 4, name, n);
  return 0;
}

int net_enc_token(struct net_buf *o, const struct net_token *m) {
  uint8_t *p =
      net_buf_frame(o, MSG_TOKEN, 13 + m->owner_len + m->cause_len);
  if (!p)
    return -ENOMEM;
  put_u32(p, m->req);
  put_u32(p + 4, m->handle);
  p[8] = m->triggered;
  p[9] = m->reason;
  p[10] = m->detail;
  put_u16(p + 11, (uint16_t)m->owner_len);
  memcpy(p + 13, m->owner, m->owner_len);
  memcpy(p + 13 + m->owner_len, m->cause, m->cause_len);
  return 0;
}

int net_enc_trigger(struct net_buf *o, const struct net_trigger *m) {
  uint8_t *p = net_buf_frame(o, MSG_TRIGGER, 10);
  if (!p)
    return -ENOMEM;
  put_u32(p, m->req);
  put_u32(p + 4, m->handle);
  p[8] = m->reason;
  p[9] = m->detail;
  return 0;
}

int net_enc_ack(struct net_buf *o, uint32_t req, uint8_t result) {
  uint8_t *p = net_buf_frame(o, MSG_ACK, 5);
  if (!p)
    return -ENOMEM;
  put_u32(p, req);
  p[4] = result;
  return 0;
}

int net_enc_notify(struct net_buf *o, const struct net_notify *m) {
  uint8_t *p = net_buf_frame(o, MSG_NOTIFY, 6 + m->cause_len);
  if (!p)
    return -ENOMEM;
  put_u32(p, m->handle);
  p[4] = m->reason;
  p[5] = m->detail;
  memcpy(p + 6, m->cause, m->cause_len);
  return 0;
}

int net_enc_list(struct net_buf *o, uint32_t req, uint32_t start) {
  uint8_t *p = net_buf_frame(o, MSG_LIST, 8);
  if (!p)
    return -ENOMEM;
  put_u32(p, req);
  put_u32(p + 4, start);
  return 0;
}

size_t net_list_entry_size(const struct net_list_entry *e) {
  return 7 + e->name_len + e->cause_len;
}

void net_put_list_entry(uint8_t *q, const struct net_list_entry *e) {
  q[0] = e->triggered;
  q[1] = e->reason;
  q[2] = e->detail;
  put_u16(q + 3, (uint16_t)e->name_len);
  memcpy(q + 5, e->name, e->name_len);
  put_u16(q + 5 + e->name_len, (uint16_t)e->cause_len);
  memcpy(q + 7 + e->name_len, e->cause, e->cause_len);
}

int net_enc_list_reply(struct net_buf *o, const struct net_list_reply *m) {
  uint8_t *p = net_buf_frame(o, MSG_LIST_REPLY, 12 + m->len);
  if (!p)
    return -ENOMEM;
  put_u32(p, m->req);
  put_u32(p + 4, m->next);
  put_u32(p + 8, m->count);
  if (m->len)
    memcpy(p + 12, m->entries, m->len);
  return 0;
}

int net_enc_req(struct net_buf *o, uint8_t type, uint32_t req) {
  uint8_t *p = net_buf_frame(o, type, 4);
  if (!p)
    return -ENOMEM;
  put_u32(p, req);
  return 0;
}

/* ---- text ---- */

int net_check_name(const char *name, size_t *len) {
  size_t n = strlen(name);
  *len = n;
  if (n == 0 || !net_utf8_valid((const uint8_t *)name, n))
    return -EINVAL;
  return n > CT_NET_NAME_MAX ? -ENAMETOOLONG : 0;
}

size_t net_utf8_cut(const char *s, size_t n, size_t max) {
  if (n <= max)
    return n;
  size_t i = max;
  while (i > 0 && ((uint8_t)s[i] & 0xc0) == 0x80)
    i--; /* s[i] would be a continuation byte: back up to a lead byte */
  return i;
}

size_t net_wire_name(const char *name, char buf[CT_NET_NAME_MAX]) {
  size_t n = strlen(name);
  if (n > CT_NET_NAME_MAX) {
    n = net_utf8_cut(name, n, CT_NET_NAME_MAX - 3);
    memcpy(buf, name, n);
    memcpy(buf + n, "...", 3);
    return n + 3;
  }
  memcpy(buf, name, n);
  return n;
}
