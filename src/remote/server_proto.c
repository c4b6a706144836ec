/* SPDX-License-Identifier: MIT
 *
 * server_proto.c -- the token server's protocol handlers (docs/PROTOCOL.md):
 * the handshake (HELLO, AUTH), the requests (GET, TRIGGER, LIST, PING),
 * and the notices sent to subscribers when a served token fires.  Frames
 * are decoded and replies encoded by the codec (codec.c); what is checked
 * here is what depends on the connection's state.  Loop thread only.
 *
 * Design notes:
 *
 *  State.  Before READY only HELLO then AUTH are accepted, in that order:
 *  a peer that has not authenticated can neither trigger a token nor learn
 *  any name or state.  After READY, HELLO and AUTH are UNEXPECTED ("after
 *  the handshake"), as are the types only a server sends.
 *
 *  Handles are per connection.  A TRIGGER names a handle this connection
 *  got from GET (a subscription, or a grant for a token that was
 *  triggered already; both in the connection's index `held`, found in
 *  O(1) expected), else BAD_HANDLE: a peer cannot fire a token whose
 *  name it never gave.  The reason must be one a peer may send
 *  (ct_proxy_reason_sendable(): not owner lost, unreachable or shutdown),
 *  else MALFORMED.
 *
 *  Exactly-once notices.  A GET answers "triggered" from the token's own
 *  state and subscribes only while it is not: a trigger after that point
 *  always reaches the subscriber through the fired queue, and one before
 *  it is in the answer, so no client misses a trigger and none gets two.
 *  `notified` (loop only) makes the sending idempotent.
 *
 *  Order on a connection.  A client's TRIGGER is carried out here, on the
 *  loop thread: the trigger runs the server's hook, which queues the
 *  entry; the fired queue is then drained (the NOTICE goes to every
 *  subscriber, the requester included) and only then is the ACK queued.
 *  So the requester's proxy is triggered before its request completes.
 *
 *  A notice's sends are grouped by the peer's I/O group.  The clients of
 *  one process share one I/O thread (client_io.c); sending to them one
 *  after the other wakes that thread once, and it finds the rest of the
 *  process's notices ready when it gets to them, where sends interleaved
 *  across processes (the order in which the connections subscribed) woke
 *  every process's thread for nearly every one of its connections: a
 *  wake-up is the most expensive part of a send on loopback, for the
 *  sender and the receiver (bench/net_bench.c, fan-out, --stats: 1,000
 *  Unix connections in 10 processes went from 0.3..0.8 to about 0.05
 *  client context switches per notice, and the CPU time per notice of
 *  both sides fell by a third or more).  The group is what the client
 *  named in its HELLO (our client library sends one random value per
 *  process, PROTOCOL.md); a client that named none is grouped by its pid
 *  on a Unix socket (SO_PEERCRED), and over TCP all such clients are one
 *  group, in subscription order.  The groups' order is the server's: each
 *  key is mixed with a random salt of the server's (server.h,
 *  group_set_key()), so a client cannot name a group that is sent to
 *  first; naming another process's group only merges it with that one.  Peers in separate
 *  processes, as across a fleet, gain nothing and lose nothing but the
 *  sort.  PROTOCOL.md promises no order of a notice across connections;
 *  each connection still gets its own frames in order.
 */
#include "server.h"

#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- notices ---- */

/* Copy a token's name for the wire (cut with "..." if longer than
 * CT_NET_NAME_MAX); the served name stands in if composing a chain name
 * ran out of memory. */
static size_t token_name(struct entry *e, ct_token *t, char *buf) {
  const char *name = t ? ct_token_name(t) : NULL;
  return net_wire_name(name ? name : e->name, buf);
}

/* The name of the token that fired e (see NOTIFY in PROTOCOL.md). */
static size_t cause_name(struct entry *e, char *buf) {
  return token_name(e, ct_token_triggered_token(e->tok), buf);
}

/* LSD radix sort of the high half, a byte a pass: each pass is stable,
 * so after the four the keys are in order of the high half and, within
 * it, in the order they came in (the index in the low half: each group's
 * connections keep their subscription order).  A pass whose byte is the
 * same in every key moves nothing and is skipped. */
void net_group_sort(uint64_t *key, uint64_t *tmp, size_t n) {
  uint64_t *src = key, *dst = tmp;
  for (unsigned shift = 32; shift < 64; shift += 8) {
    size_t at[256] = {0};
    for (size_t i = 0; i < n; i++)
      at[(src[i] >> shift) & 0xff]++;
    if (n == 0 || at[(src[0] >> shift) & 0xff] == n)
      continue;
    size_t sum = 0;
    for (size_t b = 0; b < 256; b++) {
      size_t k = at[b];
      at[b] = sum;
      sum += k;
    }
    for (size_t i = 0; i < n; i++)
      dst[at[(src[i] >> shift) & 0xff]++] = src[i];
    uint64_t *t = src;
    src = dst;
    dst = t;
  }
  if (src != key)
    memcpy(key, src, n * sizeof *key);
}

/* Group e's subscribers by I/O group (see the design notes).  The entry
 * has fired: its array is walked once more, for this notice, and then
 * only to unsubscribe, which finds each sub by its eidx.  The sort is of
 * (group, index) keys in an array of their own, read from the
 * subscription records (sub->gkey): sorting the pointers by what they
 * point to cost cache misses in every comparison, and 10,000 subscribers
 * took longer than without grouping.  It is a radix sort
 * (net_group_sort()): qsort() of those keys took about 1.1 ms at 10,000
 * subscribers and 0.1 ms at 1,000 on the shared 2-CPU machine, the radix
 * sort 0.13 and 0.014 ms, and all of it is spent before the first send.
 * Without memory for the keys, or if the array is in group order already,
 * the order stays as it is. */
static void group_by_peer(struct entry *e) {
  size_t n = e->nsubs;
  if (n < 2 || n > UINT32_MAX || n > SIZE_MAX / (2 * sizeof(uint64_t)))
    return; /* the index must fit the key's low half */
  bool sorted = true;
  for (size_t i = 1; i < n && sorted; i++)
    sorted = e->subs[i - 1]->gkey <= e->subs[i]->gkey;
  if (sorted)
    return;
  uint64_t *key = net_malloc(2 * n * sizeof *key); /* keys, then scratch */
  struct sub **out = key ? net_malloc(n * sizeof *out) : NULL;
  if (!out) {
    net_free(key);
    return;
  }
  for (size_t i = 0; i < n; i++)
    key[i] = (uint64_t)e->subs[i]->gkey << 32 | i;
  net_group_sort(key, key + n, n);
  for (size_t i = 0; i < n; i++) {
    out[i] = e->subs[key[i] & 0xffffffffu];
    out[i]->eidx = i;
  }
  memcpy(e->subs, out, n * sizeof *out);
  net_free(out);
  net_free(key);
}

static void notify_entry(ct_net_server *s, struct entry *e) {
  if (e->notified)
    return;
  e->notified = true;
  group_by_peer(e);
  char cause[CT_NET_NAME_MAX];
  int detail = 0;
  struct net_notify m = {.cause = cause, .cause_len = cause_name(e, cause),
                         .handle = e->id};
  m.reason = (uint8_t)ct_token_reason(e->tok, &detail);
  m.detail = (uint8_t)detail;
  if (fanout_notice(s, e->subs, e->nsubs, &m))
    return;
  for (size_t i = 0; i < e->nsubs; i++) {
    struct conn *c = e->subs[i]->c;
    if (conn_room(s, c, 0, true))
      conn_queued(s, c, net_enc_notify(&c->out, &m));
  }
}

void proto_process_fired(ct_net_server *s) {
  pthread_mutex_lock(&s->mu);
  struct entry *list = s->fired;
  s->fired = NULL;
  pthread_mutex_unlock(&s->mu);
  while (list) {
    struct entry *e = list;
    list = e->fired_next;
    notify_entry(s, e);
  }
}

/* ---- handshake ---- */

bool proto_uid_allowed(ct_net_server *s, uid_t uid) {
  if (s->o.allow_any_uid || uid == geteuid())
    return true;
  for (size_t i = 0; i < s->o.n_allowed_uids; i++)
    if (s->o.allowed_uids[i] == uid)
      return true;
  return false;
}

static void on_hello(ct_net_server *s, struct conn *c, const uint8_t *b,
                     size_t n) {
  struct net_hello h;
  if (net_dec_hello(b, n, &h) < 0) {
    conn_fail(s, c, NERR_MALFORMED, "not a cancel-token client (bad HELLO)");
    return;
  }
  unsigned v = h.vmax < NET_VERSION_MAX ? h.vmax : NET_VERSION_MAX;
  if (h.vmin > h.vmax || v < h.vmin || v < NET_VERSION_MIN) {
    char msg[160];
    snprintf(msg, sizeof msg,
             "no common protocol version: client speaks %u..%u, server "
             "speaks %u..%u",
             (unsigned)h.vmin, (unsigned)h.vmax, NET_VERSION_MIN,
             NET_VERSION_MAX);
    conn_refuse(s, c, NERR_VERSION, msg);
    return;
  }
  memcpy(c->cnonce, h.nonce, NET_NONCE);
  c->group = h.group;
  group_set_key(s, c);
  if (net_random(c->snonce, NET_NONCE) < 0) {
    conn_fail(s, c, NERR_NO_MEMORY, "no random bytes for a nonce");
    return;
  }
  uint8_t proof[NET_PROOF] = {0};
  if (s->secret && net_proof(s->secret, s->o.secret_len, true, c->cnonce,
                             c->snonce, proof) < 0) {
    conn_fail(s, c, NERR_NO_MEMORY, "cannot compute a proof");
    return;
  }
  struct net_welcome w = {.version = (uint16_t)v,
                          .flags = s->secret ? NET_WELCOME_SECRET : 0,
                          .nonce = c->snonce,
                          .proof = proof};
  if (!conn_room(s, c, NET_HDR + 1 + 3 + NET_NONCE + NET_PROOF, false))
    return;
  int rc = net_enc_welcome(&c->out, &w);
  if (rc == 0)
    c->state = CS_AUTH;
  conn_queued(s, c, rc);
}

static void on_auth(ct_net_server *s, struct conn *c, const uint8_t *b,
                    size_t n) {
  const uint8_t *proof;
  if (net_dec_auth(b, n, &proof) < 0) {
    conn_fail(s, c, NERR_MALFORMED, "bad AUTH frame");
    return;
  }
  if (s->secret) {
    uint8_t want[NET_PROOF];
    if (net_proof(s->secret, s->o.secret_len, false, c->cnonce, c->snonce,
                  want) < 0) {
      conn_fail(s, c, NERR_NO_MEMORY, "cannot compute a proof");
      return;
    }
    bool ok = net_proof_equal(want, proof);
    net_wipe(want, sizeof want);
    if (!ok) {
      conn_refuse(s, c, NERR_AUTH, "authentication failed (wrong secret)");
      return;
    }
  }
  if (!conn_room(s, c, NET_HDR + 1 + 4, false))
    return;
  int rc = net_enc_ready(&c->out, NET_MAX_FRAME);
  if (rc == 0) {
    c->state = CS_READY;
    c->hs_deadline = 0;
    c->is_ready = true;
    stat_add(&s->st_ready, 1);
  }
  conn_queued(s, c, rc);
}

/* ---- requests ---- */

/* c->held's value for a handle granted without a subscription: the
 * address of this byte, which is no struct sub's. */
static char held_granted;
#define HELD_GRANTED ((void *)&held_granted)

static int subscribe(ct_net_server *s, struct conn *c, struct entry *e,
                     size_t limit) {
  void *h = net_map_get(&c->held, e->id);
  if (h && h != HELD_GRANTED)
    return 0; /* already */
  if (c->nsubs >= limit)
    return -ENOSPC;
  if (net_grow(&c->subs, &c->capsubs, c->nsubs, sizeof *c->subs, 4) < 0 ||
      net_grow(&e->subs, &e->capsubs, e->nsubs, sizeof *e->subs, 4) < 0)
    return -ENOMEM;
  struct sub *u = net_malloc(sizeof *u);
  if (!u)
    return -ENOMEM;
  if (net_map_put(&c->held, e->id, u) < 0) {
    net_free(u);
    return -ENOMEM;
  }
  *u = (struct sub){c, e, e->nsubs, group_key(c)};
  e->subs[e->nsubs++] = u;
  c->subs[c->nsubs++] = u;
  stat_add(&s->st_proxies, 1);
  return 0;
}

/* Did this connection get handle id from GET (issue 13, 15: handles are
 * per connection, as PROTOCOL.md says)? */
static bool holds(const struct conn *c, uint32_t id) {
  return net_map_get(&c->held, id) != NULL;
}

/* Record that c got handle id without a subscription (a token already
 * triggered); 0 or -ENOMEM. */
static int grant(struct conn *c, uint32_t id) {
  if (net_map_get(&c->held, id))
    return 0; /* subscribed or granted already: keep what is there */
  return net_map_put(&c->held, id, HELD_GRANTED);
}

static void on_get(ct_net_server *s, struct conn *c, const uint8_t *b,
                   size_t n) {
  struct net_get g;
  if (net_dec_get(b, n, &g) < 0) {
    conn_fail(s, c, NERR_MALFORMED, "bad GET frame");
    return;
  }
  struct entry *e = srv_lookup(s, g.name, g.name_len);
  if (!e) {
    conn_error(s, c, g.req, NERR_NOT_FOUND, "no token of that name");
    return;
  }
  bool trig = ct_token_triggered(e->tok);
  if (trig && grant(c, e->id) < 0) {
    conn_error(s, c, g.req, NERR_NO_MEMORY, "server out of memory");
    return;
  }
  if (!trig) {
    int r = subscribe(s, c, e, s->o.max_proxies_per_client);
    if (r == -ENOSPC) {
      conn_error(s, c, g.req, NERR_LIMIT,
                 "too many proxies on this connection");
      return;
    }
    if (r < 0) {
      conn_error(s, c, g.req, NERR_NO_MEMORY, "server out of memory");
      return;
    }
  }
  char cause[CT_NET_NAME_MAX], owner[CT_NET_NAME_MAX];
  int detail = 0;
  struct net_token m = {.req = g.req, .handle = e->id, .triggered = trig,
                        .owner = owner, .cause = cause};
  m.cause_len = trig ? cause_name(e, cause) : 0;
  m.owner_len = token_name(e, e->tok, owner); /* the proxy's name */
  m.reason = (uint8_t)(trig ? ct_token_reason(e->tok, &detail)
                            : CT_REASON_NONE);
  m.detail = (uint8_t)detail;
  if (conn_room(s, c, NET_HDR + 1 + 13 + m.owner_len + m.cause_len, false))
    conn_queued(s, c, net_enc_token(&c->out, &m));
}

static void on_trigger(ct_net_server *s, struct conn *c, const uint8_t *b,
                       size_t n) {
  struct net_trigger t;
  if (net_dec_trigger(b, n, &t) < 0) {
    conn_fail(s, c, NERR_MALFORMED, "bad TRIGGER frame");
    return;
  }
  ct_reason reason = t.reason ? (ct_reason)t.reason : CT_REASON_TRIGGER;
  if (!ct_proxy_reason_sendable(reason)) {
    /* Owner lost, unreachable, shutdown: only a backend says those about
     * its own connection; a peer that sent "owner lost" would make every
     * proxy report a live owner as dead (issue 13, 20). */
    char msg[96];
    snprintf(msg, sizeof msg, "reason %u (%s) may not be sent by a client",
             (unsigned)t.reason, ct_reason_name(reason));
    if (t.req == 0)
      conn_fail(s, c, NERR_MALFORMED, msg);
    else
      conn_error(s, c, t.req, NERR_MALFORMED, msg);
    return;
  }
  struct entry *e = holds(c, t.handle) ? srv_entry_by_id(s, t.handle) : NULL;
  if (!e) {
    if (t.req == 0)
      conn_fail(s, c, NERR_BAD_HANDLE, "TRIGGER of an unknown handle");
    else
      conn_error(s, c, t.req, NERR_BAD_HANDLE,
                 "no token of that handle on this connection");
    return;
  }
  /* Runs the token's callbacks here, our hook among them, which queues
   * the entry: the notices go out before the ACK. */
  int r = ct_token_trigger_reason(e->tok, reason, t.detail);
  proto_process_fired(s);
  if (t.req == 0 || c->dead)
    return;
  if (conn_room(s, c, NET_HDR + 1 + 5, false))
    conn_queued(s, c, net_enc_ack(&c->out, t.req, r == 1));
}

static void on_list(ct_net_server *s, struct conn *c, const uint8_t *b,
                    size_t n) {
  uint32_t req, start;
  if (net_dec_list(b, n, &req, &start) < 0) {
    conn_fail(s, c, NERR_MALFORMED, "bad LIST frame");
    return;
  }
  static const size_t room = NET_MAX_FRAME - 1 - 12;
  uint8_t *page = net_malloc(room);
  if (!page) {
    conn_error(s, c, req, NERR_NO_MEMORY, "server out of memory");
    return;
  }
  struct net_list_reply m = {.req = req, .entries = page};
  char cause[CT_NET_NAME_MAX];
  pthread_mutex_lock(&s->mu);
  for (size_t i = start; i < s->nentries; i++) {
    struct entry *e = s->entries[i];
    bool trig = ct_token_triggered(e->tok);
    int detail = 0;
    struct net_list_entry le = {.triggered = trig, .name = e->name,
                                .name_len = e->name_len, .cause = cause};
    le.cause_len = trig ? cause_name(e, cause) : 0;
    size_t need = net_list_entry_size(&le);
    if (m.len + need > room) {
      m.next = (uint32_t)i;
      break;
    }
    le.reason = (uint8_t)(trig ? ct_token_reason(e->tok, &detail)
                               : CT_REASON_NONE);
    le.detail = (uint8_t)detail;
    net_put_list_entry(page + m.len, &le);
    m.len += need;
    m.count++;
  }
  pthread_mutex_unlock(&s->mu);
  if (conn_room(s, c, NET_HDR + 1 + 12 + m.len, false))
    conn_queued(s, c, net_enc_list_reply(&c->out, &m));
  net_free(page);
}

static void on_ping(ct_net_server *s, struct conn *c, const uint8_t *b,
                    size_t n) {
  uint32_t req;
  if (net_dec_req(b, n, &req) < 0) {
    conn_fail(s, c, NERR_MALFORMED, "bad PING frame");
    return;
  }
  if (conn_room(s, c, NET_HDR + 1 + 4, false))
    conn_queued(s, c, net_enc_req(&c->out, MSG_PONG, req));
}

void proto_frame(ct_net_server *s, struct conn *c, const struct net_frame *f) {
  const uint8_t *b = f->body;
  size_t n = f->len;
  switch (c->state) {
  case CS_HELLO:
    if (f->type == MSG_HELLO)
      on_hello(s, c, b, n);
    else
      conn_fail(s, c, NERR_UNEXPECTED, "expected HELLO");
    return;
  case CS_AUTH:
    if (f->type == MSG_AUTH)
      on_auth(s, c, b, n);
    else
      conn_fail(s, c, NERR_UNEXPECTED, "expected AUTH");
    return;
  case CS_READY:
    break;
  default:
    return;
  }
  switch (f->type) {
  case MSG_GET:
    on_get(s, c, b, n);
    break;
  case MSG_TRIGGER:
    on_trigger(s, c, b, n);
    break;
  case MSG_LIST:
    on_list(s, c, b, n);
    break;
  case MSG_PING:
    on_ping(s, c, b, n);
    break;
  case MSG_HELLO:
  case MSG_AUTH:
    /* Known, but not now (issue 13, 19: was "unknown message type"). */
    conn_fail(s, c, NERR_UNEXPECTED, f->type == MSG_HELLO
                                         ? "HELLO after the handshake"
                                         : "AUTH after the handshake");
    break;
  case MSG_WELCOME:
  case MSG_READY:
  case MSG_ERROR:
  case MSG_TOKEN:
  case MSG_ACK:
  case MSG_NOTIFY:
  case MSG_LIST_REPLY:
  case MSG_PONG: {
    char msg[80];
    snprintf(msg, sizeof msg,
             "message type 0x%02x is sent by servers, not clients", f->type);
    conn_fail(s, c, NERR_UNEXPECTED, msg);
    break;
  }
  default: {
    char msg[64];
    snprintf(msg, sizeof msg, "unknown message type 0x%02x", f->type);
    conn_fail(s, c, NERR_UNEXPECTED, msg);
  }
  }
}
