/* SPDX-License-Identifier: MIT
 *
 * fuzz_codec.c -- the wire codec (src/remote/codec.c) driven directly, no
 * sockets: the first input byte chooses a decoder, the rest is a frame
 * body.  Checked, beyond no crash, leak or undefined behaviour:
 *  - every decoder returns 0 or a negative errno, and on success every
 *    pointer it returns lies inside the body;
 *  - round trip: the decoded message, encoded again, gives the same body
 *    byte for byte (a HELLO or WELCOME keeps only the fields version 1
 *    knows, an ERROR message is cut at NET_MAX_MSG: those compare on
 *    what is kept), in a frame whose header is right;
 *  - LIST_REPLY entries are walked to the end or to a clean -EBADMSG;
 *  - the frame splitter, on the whole input as a stream, never claims more
 *    than it was given and respects both frame limits;
 *  - the UTF-8 rules: a cut of a valid name is valid, and not longer.
 */
#include "codec.h"

#include "alloc.h"

#include "fuzz_check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK FUZZ_CHECK

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t *lo, *hi; /* the body under test */
static void inside(const void *p, size_t n) {
  const uint8_t *q = p;
  CHECK(q >= lo && q + n <= hi);
}

/* o holds one frame of `type`; its body equals b[0..n). */
static void same_frame(struct net_buf *o, uint8_t type, const uint8_t *b,
                       size_t n) {
  CHECK(net_buf_pending(o) == NET_HDR + 1 + n);
  struct net_frame f;
  CHECK(net_frame_next(o->data + o->off, net_buf_pending(o), UINT32_MAX, &f,
                       NULL) == 1);
  CHECK(f.type == type && f.len == n && f.size == NET_HDR + 1 + n);
  CHECK(n == 0 || memcmp(f.body, b, n) == 0);
}

static void splitter(const uint8_t *p, size_t n) {
  for (int lim = 0; lim < 2; lim++) {
    uint32_t max = lim ? NET_MAX_FRAME : NET_MAX_FRAME_HS;
    size_t pos = 0;
    for (;;) {
      struct net_frame f;
      uint32_t len = 0;
      int k = net_frame_next(p + pos, n - pos, max, &f, &len);
      if (k <= 0) {
        CHECK(k == 0 || (k == -EBADMSG && len == 0) ||
              (k == -EMSGSIZE && len > max));
        break;
      }
      CHECK(f.size <= n - pos && f.size == NET_HDR + 1 + f.len);
      CHECK(f.len + 1 <= max && f.body == p + pos + NET_HDR + 1);
      pos += f.size;
    }
  }
}

static void utf8(const uint8_t *p, size_t n) {
  if (!net_utf8_valid(p, n))
    return;
  for (size_t max = 0; max <= n && max < 64; max++) {
    size_t k = net_utf8_cut((const char *)p, n, max);
    CHECK(k <= max && net_utf8_valid(p, k));
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  const uint8_t *b = data + 1;
  size_t n = size - 1;
  lo = b;
  hi = b + n;
  splitter(data, size);
  utf8(b, n);
  struct net_buf o = {0};
  int rc;
  switch (data[0] % 13) {
  case 0: {
    struct net_hello m;
    rc = net_dec_hello(b, n, &m);
    CHECK(rc == 0 || rc == -EBADMSG || rc == -EPROTO);
    if (rc == 0) {
      inside(m.nonce, NET_NONCE);
      CHECK(net_enc_hello(&o, m.vmin, m.vmax, m.nonce) == 0);
      same_frame(&o, MSG_HELLO, b, NET_HELLO_LEN); /* what v1 reads */
      if (n >= NET_HELLO_GROUP_LEN) { /* and the group after it */
        net_buf_free(&o);
        CHECK(net_enc_hello_group(&o, m.vmin, m.vmax, m.nonce, m.group) == 0);
        same_frame(&o, MSG_HELLO, b, NET_HELLO_GROUP_LEN);
      } else {
        CHECK(m.group == 0);
      }
    }
    break;
  }
  case 1: {
    struct net_welcome m;
    rc = net_dec_welcome(b, n, &m);
    if (rc == 0) {
      inside(m.nonce, NET_NONCE);
      inside(m.proof, NET_PROOF);
      CHECK(net_enc_welcome(&o, &m) == 0);
      same_frame(&o, MSG_WELCOME, b, 3 + NET_NONCE + NET_PROOF);
    }
    break;
  }
  case 2: {
    const uint8_t *proof;
    rc = net_dec_auth(b, n, &proof);
    if (rc == 0) {
      CHECK(net_enc_auth(&o, proof) == 0);
      same_frame(&o, MSG_AUTH, b, n);
    }
    break;
  }
  case 3: {
    uint32_t max;
    if ((rc = net_dec_ready(b, n, &max)) == 0) {
      CHECK(net_enc_ready(&o, max) == 0);
      same_frame(&o, MSG_READY, b, n);
    }
    break;
  }
  case 4: {
    struct net_error m;
    if ((rc = net_dec_error(b, n, &m)) == 0) {
      inside(m.msg, m.msg_len);
      CHECK(net_enc_error(&o, m.req, m.code, m.msg, m.msg_len) == 0);
      size_t kept = net_buf_pending(&o) - NET_HDR - 1;
      CHECK(kept <= 6 + NET_MAX_MSG && kept <= n);
      same_frame(&o, MSG_ERROR, b, kept);
      CHECK(m.msg_len > NET_MAX_MSG || kept == n);
    }
    break;
  }
  case 5: {
    struct net_get m;
    if ((rc = net_dec_get(b, n, &m)) == 0) {
      inside(m.name, m.name_len);
      CHECK(m.name_len >= 1 && m.name_len <= CT_NET_NAME_MAX);
      CHECK(net_enc_get(&o, m.req, m.name, m.name_len) == 0);
      same_frame(&o, MSG_GET, b, n);
    }
    break;
  }
  case 6: {
    struct net_token m;
    if ((rc = net_dec_token(b, n, &m)) == 0) {
      inside(m.owner, m.owner_len);
      inside(m.cause, m.cause_len);
      CHECK(m.owner_len <= CT_NET_NAME_MAX);
      /* the triggered byte is kept as 0/1: compare with it normalised */
      uint8_t *copy = malloc(n);
      memcpy(copy, b, n);
      copy[8] = copy[8] != 0;
      CHECK(net_enc_token(&o, &m) == 0);
      same_frame(&o, MSG_TOKEN, copy, n);
      free(copy);
    }
    break;
  }
  case 7: {
    struct net_trigger m;
    if ((rc = net_dec_trigger(b, n, &m)) == 0) {
      CHECK(net_enc_trigger(&o, &m) == 0);
      same_frame(&o, MSG_TRIGGER, b, n);
    }
    break;
  }
  case 8: {
    uint32_t req;
    uint8_t res;
    if ((rc = net_dec_ack(b, n, &req, &res)) == 0) {
      CHECK(net_enc_ack(&o, req, res) == 0);
      same_frame(&o, MSG_ACK, b, n);
    }
    break;
  }
  case 9: {
    struct net_notify m;
    if ((rc = net_dec_notify(b, n, &m)) == 0) {
      inside(m.cause, m.cause_len);
      CHECK(net_enc_notify(&o, &m) == 0);
      same_frame(&o, MSG_NOTIFY, b, n);
    }
    break;
  }
  case 10: {
    uint32_t req, start;
    if ((rc = net_dec_list(b, n, &req, &start)) == 0) {
      CHECK(net_enc_list(&o, req, start) == 0);
      same_frame(&o, MSG_LIST, b, n);
    }
    break;
  }
  case 11: {
    struct net_list_reply m;
    if ((rc = net_dec_list_reply(b, n, &m)) == 0) {
      inside(m.entries, m.len);
      CHECK(net_enc_list_reply(&o, &m) == 0);
      same_frame(&o, MSG_LIST_REPLY, b, n);
      /* walk the entries; re-lay the well-formed prefix and compare */
      size_t pos = 0, laid = 0;
      uint8_t *page = malloc(m.len ? m.len : 1);
      struct net_list_entry e;
      int k;
      while ((k = net_dec_list_entry(&m, &pos, &e)) == 1) {
        inside(e.name, e.name_len);
        inside(e.cause, e.cause_len);
        size_t es = net_list_entry_size(&e);
        CHECK(laid + es <= m.len);
        net_put_list_entry(page + laid, &e);
        laid += es;
        CHECK(laid == pos);
      }
      CHECK(k == 0 || k == -EBADMSG);
      CHECK(k != 0 || pos == m.len);
      /* the triggered flag is normalised to 0/1 by the encoder */
      for (size_t i = 0, at = 0; at < laid; i++) {
        CHECK(page[at] == (m.entries[at] != 0));
        size_t nl = (size_t)page[at + 3] << 8 | page[at + 4];
        size_t cl = (size_t)page[at + 5 + nl] << 8 | page[at + 6 + nl];
        CHECK(memcmp(page + at + 1, m.entries + at + 1, 6 + nl + cl) == 0);
        at += 7 + nl + cl;
        (void)i;
      }
      free(page);
    }
    break;
  }
  default: {
    uint32_t req;
    if ((rc = net_dec_req(b, n, &req)) == 0) {
      CHECK(net_enc_req(&o, MSG_PING, req) == 0);
      same_frame(&o, MSG_PING, b, n);
    }
  }
  }
  CHECK(rc <= 0 && rc >= -4095);
  net_buf_free(&o);
  /* names: the wire name of any NUL-free prefix is valid and bounded */
  static char name[CT_NET_NAME_MAX * 2 + 1], wire[CT_NET_NAME_MAX];
  size_t nn = n < sizeof name - 1 ? n : sizeof name - 1;
  memcpy(name, b, nn);
  name[nn] = '\0';
  size_t wl = net_wire_name(name, wire);
  CHECK(wl <= CT_NET_NAME_MAX);
  if (net_utf8_valid((const uint8_t *)name, strlen(name)))
    CHECK(net_utf8_valid((const uint8_t *)wire, wl));
  return 0;
}
