/* SPDX-License-Identifier: MIT
 *
 * server.c -- the token server: owns real tokens, registered under names,
 * and serves them to clients over a Unix domain socket or TCP with the
 * protocol of docs/PROTOCOL.md.  One thread (its own, or the caller's in
 * ct_net_server_serve_forever()) runs an epoll loop that holds every
 * connection.
 *
 * Design notes:
 *
 *  Threads.  Everything about connections -- sockets, buffers,
 *  subscriptions -- belongs to the loop thread and is touched by no other.
 *  Other threads reach the server in three ways only:
 *    - ct_net_server_add() inserts an entry under `mu`;
 *    - a served token's trigger, in whatever thread it happens, runs the
 *      server's hook (entry_fired) which queues the entry on `fired` under
 *      `mu` and writes the wake eventfd;
 *    - ct_net_server_stop() sets `stop_req` and writes the wake eventfd.
 *  The loop reads the fired queue when the eventfd wakes it, and sends each
 *  fired entry's notice to its subscribers.  A notice is thus pushed by the
 *  server, never polled for by a client.
 *
 *  LOCK ORDER.  `mu` is the only lock of the server, and it is a leaf: no
 *  token function that may run callbacks (trigger, callback registration)
 *  is ever called with `mu` held, because the hook itself takes `mu`.
 *  ct_token_name()/ct_token_triggered_token()/ct_token_reason() run no
 *  callbacks and may be called under it.
 *
 *  Exactly-once notices.  A token fires once.  Its hook is registered
 *  before the entry is published (so that a failed registration leaves
 *  nothing behind), and may run before publication: it then only sets
 *  `fired_early`, and publication queues the entry.  `queued` makes the
 *  queueing idempotent; `notified` (loop only) makes
 *  the sending so.  A GET answers "triggered" from the token's own state
 *  and subscribes only while it is not: a trigger after that point always
 *  reaches the subscriber through the queue, and one before it is in the
 *  answer, so no client misses a trigger and none needs two.
 *
 *  Order on a connection.  A client's TRIGGER is carried out on the loop
 *  thread: the trigger runs the hook, the loop then drains the fired queue
 *  (sending the NOTICE to every subscriber, the requester included) and
 *  only then queues the ACK.  So the requester's proxy is triggered before
 *  its request completes.
 *
 *  Lifetime of connections.  A connection closed while a batch of epoll
 *  events is being handled (its fd is closed at once) is only marked dead
 *  and freed after the batch, since later events of the batch, and the
 *  subscriber arrays being walked, may still point to it.
 *
 *  Hostile peers.  Sockets are non-blocking; a peer is read into a shared
 *  scratch buffer and only the unfinished tail of a frame is kept per
 *  connection (so idle connections cost no buffer).  Frames are length
 *  checked before they are buffered (256 bytes before authentication, 16
 *  KiB after).  Replies count against max_output: a peer that sends
 *  requests but does not read the answers is dropped when they pile up.
 *  Notices never count (a reading client never loses one); a peer that
 *  reads nothing for stall_timeout is dropped.  Handshakes, and each frame,
 *  must be finished in time, and a frame delivered a few bytes at a time
 *  gets its peer dropped.  When accept() runs out of descriptors the
 *  reserve descriptor is closed to accept and refuse the connection (the
 *  classic busy-loop: a pending connection keeps the listener readable).
 */
#include "net_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define SWEEP_MS 200
#define FRAME_READS_MIN 8    /* a frame may take this many reads ... */
#define FRAME_READ_BYTES 8   /* ... after that each must average this */
#define CLOSE_LINGER_NS (INT64_C(1000000000))
#define SEC (INT64_C(1000000000))

enum ev_kind { EV_LISTEN = 1, EV_WAKE = 2, EV_CONN = 3 };
enum conn_state { CS_HELLO, CS_AUTH, CS_READY, CS_CLOSING };

struct entry;
struct conn;

/* One subscription: connection c holds a proxy of entry e.  It sits in
 * both c->subs and e->subs[eidx]; loop thread only. */
struct sub {
  struct conn *c;
  struct entry *e;
  size_t eidx;
};

struct conn {
  int kind; /* EV_CONN; MUST be first (epoll data points here) */
  int fd;
  int state;
  bool dead;     /* closed; freed after the current batch */
  bool want_out; /* EPOLLOUT is armed */
  bool shut_wr;  /* CS_CLOSING: shutdown(SHUT_WR) done */
  bool is_ready; /* counted in stats.ready */
  uint32_t frame_reads;  /* reads spent on the unfinished frame */
  uint8_t cnonce[NET_NONCE], snonce[NET_NONCE];
  struct net_buf in, out;
  struct sub **subs;
  size_t nsubs, capsubs;
  int64_t hs_deadline;   /* handshake must end by then */
  int64_t partial_since; /* an unfinished frame started then (0: none) */
  int64_t out_since;     /* output pending and no progress since (0) */
  int64_t close_deadline;
  struct conn *prev, *next; /* s->conns, or s->dead once dead */
  char peer[96];
};

struct entry {
  struct ct_net_server *s;
  ct_token *tok;        /* the server's reference */
  char *name;
  size_t name_len;
  uint32_t id;          /* the handle: index in s->entries */
  ct_callback cb;       /* entry_fired */
  bool queued;          /* on s->fired (or was); guarded by s->mu */
  bool published;       /* in entries[] and the hash; guarded by s->mu */
  bool fired_early;     /* hook ran before publication; guarded by s->mu */
  struct entry *fired_next; /* guarded by s->mu */
  struct entry *hnext;  /* hash chain; guarded by s->mu */
  bool notified;        /* notice sent; loop thread only */
  struct sub **subs;    /* loop thread only */
  size_t nsubs, capsubs;
};

struct ct_net_server {
  /* mu guards: entries, nentries, capentries, hash, hashcap, fired,
   * closed (see LOCK ORDER above). */
  pthread_mutex_t mu;
  struct entry **entries;
  size_t nentries, capentries;
  struct entry **hash;
  size_t hashcap;
  struct entry *fired;
  bool closed;

  int ep, lfd, wake_fd, reserve_fd;
  int lkind, wkind; /* epoll data of the listener and the eventfd */
  bool listen_paused;
  int64_t listen_resume;
  struct net_addr addr;
  char addrstr[320];
  bool own_path; /* we created the socket file: unlink it at the end */
  dev_t path_dev;
  ino_t path_ino;

  ct_net_server_options o;
  uint8_t *secret;

  /* stop_req: set by ct_net_server_stop() (any thread, signal handlers),
   * read by the loop.  seq_cst store/load: it is paired with the eventfd
   * write/read, which already orders it; no other data rides on it. */
  _Atomic int stop_req;
  /* 0 never ran, 1 running, 2 finished: CAS from 0 makes "runs once". */
  _Atomic int run_state;
  bool thread_started;
  pthread_t thread;

  struct conn *conns, *dead; /* loop thread only */
  size_t nconns;
  uint8_t *scratch;
  int64_t next_sweep, last_emfile_log;

  /* Statistics: relaxed atomics, written by the loop, read by anybody. */
  _Atomic uint64_t st_accepted, st_active, st_ready, st_dropped, st_refused,
      st_proxies;
};

static void stat_add(_Atomic uint64_t *v, int64_t d) {
  /* relaxed: a counter; no other memory is published through it. */
  atomic_fetch_add_explicit(v, (uint64_t)d, memory_order_relaxed);
}

#define LOG(s, ...) net_log((s)->o.log, (s)->o.log_arg, __VA_ARGS__)

/* ---- the entries' hash (names -> entries), under mu ---- */

static size_t name_hash(const char *p, size_t n) {
  uint64_t h = 1469598103934665603u; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint8_t)p[i]) * 1099511628211u;
  return (size_t)h;
}

static struct entry *lookup_locked(ct_net_server *s, const char *name,
                                   size_t n) {
  if (!s->hashcap)
    return NULL;
  for (struct entry *e = s->hash[name_hash(name, n) & (s->hashcap - 1)]; e;
       e = e->hnext)
    if (e->name_len == n && memcmp(e->name, name, n) == 0)
      return e;
  return NULL;
}

/* Make room for one more entry (load factor <= 1). */
static int hash_grow_locked(ct_net_server *s) {
  if (s->nentries + 1 <= s->hashcap)
    return 0;
  size_t cap = s->hashcap ? s->hashcap * 2 : 16;
  struct entry **h = net_calloc(cap, sizeof *h);
  if (!h)
    return -ENOMEM;
  for (size_t i = 0; i < s->nentries; i++) {
    struct entry *e = s->entries[i];
    size_t b = name_hash(e->name, e->name_len) & (cap - 1);
    e->hnext = h[b];
    h[b] = e;
  }
  net_free(s->hash);
  s->hash = h;
  s->hashcap = cap;
  return 0;
}

/* ---- wake-ups ---- */

static void wake(ct_net_server *s) {
  int saved = errno; /* async-signal-safe: keep the interrupted errno */
  uint64_t one = 1;
  ssize_t w = write(s->wake_fd, &one, sizeof one);
  (void)w; /* EAGAIN: the counter is already non-zero, which is enough */
  errno = saved;
}

/* The hook registered on every served token: runs in the thread that
 * triggers it (possibly inline in ct_net_server_add()). */
static void entry_fired(ct_token *t, void *arg) {
  (void)t;
  struct entry *e = arg;
  ct_net_server *s = e->s;
  pthread_mutex_lock(&s->mu);
  if (!e->published) {
    /* ct_net_server_add() has not published it yet (or will fail and
     * free it): it queues the entry itself when it publishes it. */
    e->fired_early = true;
  } else if (!e->queued) {
    e->queued = true;
    e->fired_next = s->fired;
    s->fired = e;
  }
  pthread_mutex_unlock(&s->mu);
  wake(s);
}

/* ---- connections ---- */

static void epoll_set(ct_net_server *s, struct conn *c, bool out) {
  if (c->want_out == out)
    return;
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0),
                           .data.ptr = c};
  epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
  c->want_out = out;
}

static void conn_close(ct_net_server *s, struct conn *c) {
  if (c->dead)
    return;
  c->dead = true;
  close(c->fd); /* also removes it from the epoll set */
  c->fd = -1;
  if (c->is_ready)
    stat_add(&s->st_ready, -1);
  stat_add(&s->st_active, -1);
  /* from s->conns to s->dead */
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->nconns--;
  c->prev = NULL;
  c->next = s->dead;
  s->dead = c;
}

static void conn_free(ct_net_server *s, struct conn *c) {
  stat_add(&s->st_proxies, -(int64_t)c->nsubs);
  for (size_t i = 0; i < c->nsubs; i++) {
    struct sub *u = c->subs[i];
    struct entry *e = u->e;
    struct sub *last = e->subs[--e->nsubs]; /* swap-remove */
    e->subs[u->eidx] = last;
    last->eidx = u->eidx;
    net_free(u);
  }
  net_free(c->subs);
  net_buf_free(&c->in);
  net_buf_free(&c->out);
  net_free(c);
}

static void free_dead(ct_net_server *s) {
  while (s->dead) {
    struct conn *c = s->dead;
    s->dead = c->next;
    conn_free(s, c);
  }
}

static void conn_drop(ct_net_server *s, struct conn *c, const char *why) {
  if (c->dead)
    return;
  LOG(s, "dropping client %s: %s", c->peer, why);
  stat_add(&s->st_dropped, 1);
  conn_close(s, c);
}

/* Write what is queued; close on error. */
static void conn_flush(ct_net_server *s, struct conn *c) {
  while (net_buf_pending(&c->out)) {
    ssize_t w = send(c->fd, c->out.data + c->out.off, net_buf_pending(&c->out),
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      net_buf_consume(&c->out, (size_t)w);
      c->out_since = ct_now(); /* progress */
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c->out_since)
        c->out_since = ct_now();
      epoll_set(s, c, true);
      return;
    }
    conn_close(s, c); /* EPIPE, ECONNRESET: the peer has gone */
    return;
  }
  c->out_since = 0;
  epoll_set(s, c, false);
  if (c->out.cap > 65536) /* do not keep a big buffer per idle client */
    net_buf_free(&c->out);
  if (c->state == CS_CLOSING && !c->shut_wr) {
    shutdown(c->fd, SHUT_WR);
    c->shut_wr = true;
  }
}

/* Queue a frame; replies count against max_output, notices do not. */
static uint8_t *conn_frame(ct_net_server *s, struct conn *c, uint8_t type,
                           size_t body, bool notice) {
  if (c->dead)
    return NULL;
  if (!notice &&
      net_buf_pending(&c->out) + NET_HDR + 1 + body > s->o.max_output) {
    conn_drop(s, c, "output buffer full (the peer does not read)");
    return NULL;
  }
  uint8_t *p = net_buf_frame(&c->out, type, body);
  if (!p)
    conn_drop(s, c, "out of memory for its output");
  return p;
}

/* Send an ERROR.  req 0 is a connection-level error: the connection then
 * lingers (CS_CLOSING) until the peer closes or a second passes, so that
 * the peer reads the message instead of a reset. */
static void conn_error(ct_net_server *s, struct conn *c, uint32_t req,
                       unsigned code, const char *msg) {
  size_t n = strlen(msg);
  if (n > NET_MAX_MSG)
    n = NET_MAX_MSG;
  uint8_t *p = conn_frame(s, c, MSG_ERROR, 6 + n, req == 0);
  if (!p)
    return;
  put_u32(p, req);
  put_u16(p + 4, (uint16_t)code);
  memcpy(p + 6, msg, n);
  if (req == 0) {
    c->state = CS_CLOSING;
    c->close_deadline = ct_now() + CLOSE_LINGER_NS;
    net_buf_free(&c->in);
    c->partial_since = 0;
  }
  conn_flush(s, c);
}

/* A protocol violation: tell the peer, log, and drop it. */
static void conn_fail(ct_net_server *s, struct conn *c, unsigned code,
                      const char *why) {
  LOG(s, "dropping client %s: %s", c->peer, why);
  stat_add(&s->st_dropped, 1);
  conn_error(s, c, 0, code, why);
}

static void conn_refuse(ct_net_server *s, struct conn *c, unsigned code,
                        const char *why) {
  LOG(s, "refusing client %s: %s", c->peer, why);
  stat_add(&s->st_refused, 1);
  conn_error(s, c, 0, code, why);
}

/* ---- notices ---- */

/* Cause name of a fired entry: the name of the token that fired, cut to
 * CT_NET_NAME_MAX bytes with "..." if need be.  Writes into buf. */
/* Copy a token's name into buf (CT_NET_NAME_MAX bytes), cut with "..." if
 * longer; the served name stands in if composing a chain name ran out of
 * memory. */
static size_t token_name(struct entry *e, ct_token *t, char *buf) {
  const char *name = t ? ct_token_name(t) : NULL;
  if (!name)
    name = e->name;
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

static size_t cause_name(struct entry *e, char *buf) {
  return token_name(e, ct_token_triggered_token(e->tok), buf);
}

static void notify_entry(ct_net_server *s, struct entry *e) {
  if (e->notified)
    return;
  e->notified = true;
  char cause[CT_NET_NAME_MAX];
  size_t cn = cause_name(e, cause);
  int detail = 0;
  ct_reason r = ct_token_reason(e->tok, &detail);
  for (size_t i = 0; i < e->nsubs; i++) {
    struct conn *c = e->subs[i]->c;
    uint8_t *p = conn_frame(s, c, MSG_NOTIFY, 6 + cn, true);
    if (!p)
      continue;
    put_u32(p, e->id);
    p[4] = (uint8_t)r;
    p[5] = (uint8_t)detail;
    memcpy(p + 6, cause, cn);
    conn_flush(s, c);
  }
}

static void process_fired(ct_net_server *s) {
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

/* ---- requests ---- */

static bool check_uid(ct_net_server *s, uid_t uid) {
  if (s->o.allow_any_uid || uid == geteuid())
    return true;
  for (size_t i = 0; i < s->o.n_allowed_uids; i++)
    if (s->o.allowed_uids[i] == uid)
      return true;
  return false;
}

static void on_hello(ct_net_server *s, struct conn *c, const uint8_t *b,
                     size_t n) {
  if (n < 40 || memcmp(b, NET_MAGIC, 4) != 0) {
    conn_fail(s, c, NERR_MALFORMED, "not a cancel-token client (bad HELLO)");
    return;
  }
  unsigned vmin = get_u16(b + 4), vmax = get_u16(b + 6);
  unsigned v = vmax < NET_VERSION_MAX ? vmax : NET_VERSION_MAX;
  if (vmin > vmax || v < vmin || v < NET_VERSION_MIN) {
    char msg[160];
    snprintf(msg, sizeof msg,
             "no common protocol version: client speaks %u..%u, server "
             "speaks %u..%u",
             vmin, vmax, NET_VERSION_MIN, NET_VERSION_MAX);
    conn_refuse(s, c, NERR_VERSION, msg);
    return;
  }
  memcpy(c->cnonce, b + 8, NET_NONCE);
  if (net_random(c->snonce, NET_NONCE) < 0) {
    conn_fail(s, c, NERR_NO_MEMORY, "no random bytes for a nonce");
    return;
  }
  uint8_t *p = conn_frame(s, c, MSG_WELCOME, 3 + NET_NONCE + NET_PROOF, false);
  if (!p)
    return;
  put_u16(p, (uint16_t)v);
  p[2] = s->secret ? NET_WELCOME_SECRET : 0;
  memcpy(p + 3, c->snonce, NET_NONCE);
  memset(p + 3 + NET_NONCE, 0, NET_PROOF);
  if (s->secret && net_proof(s->secret, s->o.secret_len, true, c->cnonce,
                             c->snonce, p + 3 + NET_NONCE) < 0) {
    conn_fail(s, c, NERR_NO_MEMORY, "cannot compute a proof");
    return;
  }
  c->state = CS_AUTH;
  conn_flush(s, c);
}

static void on_auth(ct_net_server *s, struct conn *c, const uint8_t *b,
                    size_t n) {
  if (n != NET_PROOF) {
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
    bool ok = net_proof_equal(want, b);
    OPENSSL_cleanse(want, sizeof want);
    if (!ok) {
      conn_refuse(s, c, NERR_AUTH, "authentication failed (wrong secret)");
      return;
    }
  }
  uint8_t *p = conn_frame(s, c, MSG_READY, 4, false);
  if (!p)
    return;
  put_u32(p, NET_MAX_FRAME);
  c->state = CS_READY;
  c->hs_deadline = 0;
  c->is_ready = true;
  stat_add(&s->st_ready, 1);
  conn_flush(s, c);
}

static int subscribe(ct_net_server *s, struct conn *c, struct entry *e,
                     size_t limit) {
  for (size_t i = 0; i < c->nsubs; i++)
    if (c->subs[i]->e == e)
      return 0; /* already */
  if (c->nsubs >= limit)
    return -ENOSPC;
  if (c->nsubs == c->capsubs) {
    size_t cap = c->capsubs ? c->capsubs * 2 : 4;
    struct sub **a = net_realloc(c->subs, cap * sizeof *a);
    if (!a)
      return -ENOMEM;
    c->subs = a;
    c->capsubs = cap;
  }
  if (e->nsubs == e->capsubs) {
    size_t cap = e->capsubs ? e->capsubs * 2 : 4;
    struct sub **a = net_realloc(e->subs, cap * sizeof *a);
    if (!a)
      return -ENOMEM;
    e->subs = a;
    e->capsubs = cap;
  }
  struct sub *u = net_malloc(sizeof *u);
  if (!u)
    return -ENOMEM;
  *u = (struct sub){c, e, e->nsubs};
  e->subs[e->nsubs++] = u;
  c->subs[c->nsubs++] = u;
  stat_add(&s->st_proxies, 1);
  return 0;
}

static void on_get(ct_net_server *s, struct conn *c, const uint8_t *b,
                   size_t n) {
  if (n < 5 || n - 4 > CT_NET_NAME_MAX) {
    conn_fail(s, c, NERR_MALFORMED, "bad GET frame");
    return;
  }
  uint32_t req = get_u32(b);
  pthread_mutex_lock(&s->mu);
  struct entry *e = lookup_locked(s, (const char *)b + 4, n - 4);
  pthread_mutex_unlock(&s->mu); /* entries are never freed while we run */
  if (!e) {
    conn_error(s, c, req, NERR_NOT_FOUND, "no token of that name");
    return;
  }
  bool trig = ct_token_triggered(e->tok);
  if (!trig) {
    int r = subscribe(s, c, e, s->o.max_proxies_per_client);
    if (r == -ENOSPC) {
      conn_error(s, c, req, NERR_LIMIT, "too many proxies on this connection");
      return;
    }
    if (r < 0) {
      conn_error(s, c, req, NERR_NO_MEMORY, "server out of memory");
      return;
    }
  }
  char cause[CT_NET_NAME_MAX], owner[CT_NET_NAME_MAX];
  size_t cn = trig ? cause_name(e, cause) : 0;
  size_t on = token_name(e, e->tok, owner); /* the proxy's name */
  int detail = 0;
  ct_reason reason = trig ? ct_token_reason(e->tok, &detail) : CT_REASON_NONE;
  uint8_t *p = conn_frame(s, c, MSG_TOKEN, 13 + on + cn, false);
  if (!p)
    return;
  put_u32(p, req);
  put_u32(p + 4, e->id);
  p[8] = trig;
  p[9] = (uint8_t)reason;
  p[10] = (uint8_t)detail;
  put_u16(p + 11, (uint16_t)on);
  memcpy(p + 13, owner, on);
  memcpy(p + 13 + on, cause, cn);
  conn_flush(s, c);
}

static struct entry *entry_by_id(ct_net_server *s, uint32_t id) {
  pthread_mutex_lock(&s->mu);
  struct entry *e = id < s->nentries ? s->entries[id] : NULL;
  pthread_mutex_unlock(&s->mu);
  return e;
}

static void on_trigger(ct_net_server *s, struct conn *c, const uint8_t *b,
                       size_t n) {
  if (n != 10) {
    conn_fail(s, c, NERR_MALFORMED, "bad TRIGGER frame");
    return;
  }
  uint32_t req = get_u32(b);
  struct entry *e = entry_by_id(s, get_u32(b + 4));
  if (!e) {
    if (req == 0)
      conn_fail(s, c, NERR_BAD_HANDLE, "TRIGGER of an unknown handle");
    else
      conn_error(s, c, req, NERR_BAD_HANDLE, "no token of that handle");
    return;
  }
  ct_reason reason = b[8] ? (ct_reason)b[8] : CT_REASON_TRIGGER;
  /* Runs the token's callbacks here, our hook among them, which queues
   * the entry: the notices go out before the ACK. */
  int r = ct_token_trigger_reason(e->tok, reason, b[9]);
  process_fired(s);
  if (req == 0 || c->dead)
    return;
  uint8_t *p = conn_frame(s, c, MSG_ACK, 5, false);
  if (!p)
    return;
  put_u32(p, req);
  p[4] = r == 1;
  conn_flush(s, c);
}

static void on_list(ct_net_server *s, struct conn *c, const uint8_t *b,
                    size_t n) {
  if (n != 8) {
    conn_fail(s, c, NERR_MALFORMED, "bad LIST frame");
    return;
  }
  uint32_t req = get_u32(b), start = get_u32(b + 4);
  static const size_t room = NET_MAX_FRAME - 1 - 12;
  uint8_t *page = net_malloc(room);
  if (!page) {
    conn_error(s, c, req, NERR_NO_MEMORY, "server out of memory");
    return;
  }
  size_t len = 0;
  uint32_t count = 0, next = 0;
  char cause[CT_NET_NAME_MAX];
  pthread_mutex_lock(&s->mu);
  for (size_t i = start; i < s->nentries; i++) {
    struct entry *e = s->entries[i];
    bool trig = ct_token_triggered(e->tok);
    size_t cn = trig ? cause_name(e, cause) : 0;
    size_t need = 7 + e->name_len + cn;
    if (len + need > room) {
      next = (uint32_t)i;
      break;
    }
    int detail = 0;
    ct_reason r = trig ? ct_token_reason(e->tok, &detail) : CT_REASON_NONE;
    uint8_t *q = page + len;
    q[0] = trig;
    q[1] = (uint8_t)r;
    q[2] = (uint8_t)detail;
    put_u16(q + 3, (uint16_t)e->name_len);
    memcpy(q + 5, e->name, e->name_len);
    put_u16(q + 5 + e->name_len, (uint16_t)cn);
    memcpy(q + 7 + e->name_len, cause, cn);
    len += need;
    count++;
  }
  pthread_mutex_unlock(&s->mu);
  uint8_t *p = conn_frame(s, c, MSG_LIST_REPLY, 12 + len, false);
  if (p) {
    put_u32(p, req);
    put_u32(p + 4, next);
    put_u32(p + 8, count);
    memcpy(p + 12, page, len);
    conn_flush(s, c);
  }
  net_free(page);
}

static void on_frame(ct_net_server *s, struct conn *c, uint8_t type,
                     const uint8_t *b, size_t n) {
  switch (c->state) {
  case CS_HELLO:
    if (type == MSG_HELLO)
      on_hello(s, c, b, n);
    else
      conn_fail(s, c, NERR_UNEXPECTED, "expected HELLO");
    return;
  case CS_AUTH:
    if (type == MSG_AUTH)
      on_auth(s, c, b, n);
    else
      conn_fail(s, c, NERR_UNEXPECTED, "expected AUTH");
    return;
  case CS_READY:
    break;
  default:
    return;
  }
  switch (type) {
  case MSG_GET:
    on_get(s, c, b, n);
    break;
  case MSG_TRIGGER:
    on_trigger(s, c, b, n);
    break;
  case MSG_LIST:
    on_list(s, c, b, n);
    break;
  case MSG_PING: {
    if (n != 4) {
      conn_fail(s, c, NERR_MALFORMED, "bad PING frame");
      break;
    }
    uint8_t *p = conn_frame(s, c, MSG_PONG, 4, false);
    if (p) {
      memcpy(p, b, 4);
      conn_flush(s, c);
    }
    break;
  }
  default: {
    char msg[64];
    snprintf(msg, sizeof msg, "unknown message type 0x%02x", type);
    conn_fail(s, c, NERR_UNEXPECTED, msg);
  }
  }
}

/* ---- reading ---- */

static void conn_read(ct_net_server *s, struct conn *c) {
  if (c->state == CS_CLOSING) { /* discard until the peer closes */
    ssize_t r = recv(c->fd, s->scratch, NET_HDR + NET_MAX_FRAME, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
      conn_close(s, c);
    return;
  }
  size_t lim = NET_HDR + (c->state == CS_READY ? NET_MAX_FRAME
                                               : NET_MAX_FRAME_HS);
  uint8_t *base;
  ssize_t r;
  size_t have;
  if (c->in.len == 0) {
    base = s->scratch;
    r = recv(c->fd, base, lim, 0);
    have = r > 0 ? (size_t)r : 0;
  } else {
    if (c->in.cap < NET_HDR + NET_MAX_FRAME &&
        net_buf_reserve(&c->in, NET_HDR + NET_MAX_FRAME - c->in.len) < 0) {
      conn_drop(s, c, "out of memory for its input");
      return;
    }
    base = c->in.data;
    size_t room = c->in.len < lim ? lim - c->in.len : 0;
    r = room ? recv(c->fd, base + c->in.len, room, 0) : 0;
    have = c->in.len + (r > 0 ? (size_t)r : 0);
  }
  if (r < 0) {
    if (errno == EAGAIN || errno == EINTR)
      return;
    conn_close(s, c); /* reset: the client died, nothing to report */
    return;
  }
  if (r == 0) {
    if (c->in.len || c->state != CS_READY)
      LOG(s, "client %s closed the connection %s", c->peer,
          c->in.len ? "in the middle of a frame" : "during the handshake");
    conn_close(s, c);
    return;
  }
  size_t pos = 0;
  while (have - pos >= NET_HDR) {
    uint32_t len = get_u32(base + pos);
    uint32_t max = c->state == CS_READY ? NET_MAX_FRAME : NET_MAX_FRAME_HS;
    if (len == 0 || len > max) {
      char msg[96];
      snprintf(msg, sizeof msg, "frame of %u bytes (limit %u)", len, max);
      conn_fail(s, c, len ? NERR_TOO_BIG : NERR_MALFORMED, msg);
      return;
    }
    if (have - pos - NET_HDR < len)
      break;
    on_frame(s, c, base[pos + NET_HDR], base + pos + NET_HDR + 1, len - 1);
    pos += NET_HDR + len;
    if (c->dead || c->state == CS_CLOSING)
      return;
  }
  size_t left = have - pos;
  if (left == 0) {
    net_buf_free(&c->in);
    c->partial_since = 0;
    c->frame_reads = 0;
    return;
  }
  if (base == s->scratch) {
    if (net_buf_append(&c->in, base + pos, left) < 0) {
      conn_drop(s, c, "out of memory for its input");
      return;
    }
  } else {
    memmove(c->in.data, base + pos, left);
    c->in.len = left;
  }
  if (pos > 0 || !c->partial_since) { /* a new unfinished frame */
    c->partial_since = ct_now();
    c->frame_reads = 0;
  }
  if (++c->frame_reads > FRAME_READS_MIN &&
      left < (size_t)c->frame_reads * FRAME_READ_BYTES)
    conn_fail(s, c, NERR_TIMEOUT, "sends its frames a few bytes at a time");
}

static void conn_event(ct_net_server *s, struct conn *c, uint32_t events) {
  if (c->dead)
    return;
  if (events & EPOLLOUT)
    conn_flush(s, c);
  if (!c->dead && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
    conn_read(s, c);
}

/* ---- accepting ---- */

static void pause_listener(ct_net_server *s, int64_t ns) {
  if (!s->listen_paused) {
    epoll_ctl(s->ep, EPOLL_CTL_DEL, s->lfd, NULL);
    s->listen_paused = true;
  }
  s->listen_resume = ct_now() + ns;
}

static void resume_listener(ct_net_server *s) {
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->lkind};
  if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &ev) == 0)
    s->listen_paused = false;
  else
    s->listen_resume = ct_now() + SEC / 10;
}

/* Refuse fd at once with an error frame, best effort. */
static void refuse_fd(int fd, unsigned code, const char *msg) {
  uint8_t f[NET_HDR + 1 + 6 + 64];
  size_t n = strlen(msg);
  if (n > 64)
    n = 64;
  put_u32(f, (uint32_t)(1 + 6 + n));
  f[4] = MSG_ERROR;
  put_u32(f + 5, 0);
  put_u16(f + 9, (uint16_t)code);
  memcpy(f + 11, msg, n);
  ssize_t w = send(fd, f, NET_HDR + 7 + n, MSG_NOSIGNAL | MSG_DONTWAIT);
  (void)w;
  /* Discard what the peer sent already, so close() sends a FIN after our
   * frame rather than a reset that could destroy it in flight. */
  shutdown(fd, SHUT_WR);
  uint8_t sink[512];
  while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
    ;
  close(fd);
}

static void accept_one(ct_net_server *s, int fd, struct sockaddr_storage *ss,
                       socklen_t slen) {
  stat_add(&s->st_accepted, 1);
  if (s->nconns >= s->o.max_clients) {
    stat_add(&s->st_refused, 1);
    LOG(s, "refusing a client: %zu connections already", s->nconns);
    refuse_fd(fd, NERR_LIMIT, "too many clients");
    return;
  }
  struct conn *c = net_calloc(1, sizeof *c);
  if (!c) {
    stat_add(&s->st_refused, 1);
    LOG(s, "refusing a client: out of memory");
    refuse_fd(fd, NERR_NO_MEMORY, "server out of memory");
    return;
  }
  c->kind = EV_CONN;
  c->fd = fd;
  c->state = CS_HELLO;
  c->hs_deadline = ct_now() + s->o.handshake_timeout_ns;
  uid_t uid = 0;
  bool uid_ok = true;
  if (s->addr.family == AF_UNIX) {
    struct ucred cred;
    socklen_t cl = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) {
      uid = cred.uid;
      uid_ok = check_uid(s, uid);
      snprintf(c->peer, sizeof c->peer, "uid %u pid %d", (unsigned)cred.uid,
               (int)cred.pid);
    } else {
      uid_ok = false;
      snprintf(c->peer, sizeof c->peer, "(unknown credentials)");
    }
  } else {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    net_addr_format((struct sockaddr *)ss, slen, c->peer, sizeof c->peer);
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
    stat_add(&s->st_refused, 1);
    LOG(s, "refusing client %s: epoll_ctl: %s", c->peer, strerror(errno));
    refuse_fd(fd, NERR_NO_MEMORY, "server out of resources");
    net_free(c);
    return;
  }
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  stat_add(&s->st_active, 1);
  if (!uid_ok) {
    char msg[96];
    snprintf(msg, sizeof msg, "uid %u is not allowed to connect",
             (unsigned)uid);
    conn_refuse(s, c, NERR_PEER, msg);
  }
}

static void do_accept(ct_net_server *s) {
  for (int i = 0; i < 64; i++) { /* then let the others have a turn */
    struct sockaddr_storage ss;
    socklen_t slen = sizeof ss;
    int fd = accept4(s->lfd, (struct sockaddr *)&ss, &slen,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      accept_one(s, fd, &ss, slen);
      continue;
    }
    int e = errno;
    if (e == EINTR || e == ECONNABORTED || e == EPROTO)
      continue;
    if (e == EAGAIN || e == EWOULDBLOCK)
      return;
    int64_t now = ct_now();
    bool say = now - s->last_emfile_log > SEC;
    if (say)
      s->last_emfile_log = now;
    if ((e == EMFILE || e == ENFILE) && s->reserve_fd >= 0) {
      /* Free one descriptor to take the connection off the queue, and
       * refuse it: else the listener stays readable and we spin. */
      close(s->reserve_fd);
      s->reserve_fd = -1;
      fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        stat_add(&s->st_accepted, 1);
        stat_add(&s->st_refused, 1);
        refuse_fd(fd, NERR_LIMIT, "server out of file descriptors");
      }
      s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (say)
        LOG(s, "accept: %s; refusing new clients", strerror(e));
      if (s->reserve_fd < 0)
        pause_listener(s, SEC / 10);
      return;
    }
    if (say)
      LOG(s, "accept: %s; pausing for 100 ms", strerror(e));
    pause_listener(s, SEC / 10); /* ENOMEM, ENOBUFS, EMFILE w/o reserve */
    return;
  }
}

/* ---- the loop ---- */

static void sweep(ct_net_server *s, int64_t now) {
  if (s->listen_paused && now >= s->listen_resume)
    resume_listener(s);
  for (struct conn *c = s->conns, *next; c; c = next) {
    next = c->next; /* c may move to the dead list */
    if (c->state == CS_CLOSING) {
      if (now >= c->close_deadline)
        conn_close(s, c);
    } else if (c->state != CS_READY && now >= c->hs_deadline) {
      conn_fail(s, c, NERR_TIMEOUT, "handshake not completed in time");
    } else if (c->partial_since &&
               now - c->partial_since >= s->o.frame_timeout_ns) {
      conn_fail(s, c, NERR_TIMEOUT, "frame not completed in time");
    } else if (c->out_since && now - c->out_since >= s->o.stall_timeout_ns) {
      conn_drop(s, c, "it stopped reading");
    }
  }
}

static void teardown(ct_net_server *s) {
  while (s->conns)
    conn_close(s, s->conns);
  free_dead(s);
  if (s->lfd >= 0) {
    close(s->lfd);
    s->lfd = -1;
  }
  if (s->own_path) {
    struct stat st;
    /* Unlink only the file we created, not a successor's. */
    if (stat(s->addr.path, &st) == 0 && st.st_dev == s->path_dev &&
        st.st_ino == s->path_ino)
      unlink(s->addr.path);
    s->own_path = false;
  }
  pthread_mutex_lock(&s->mu);
  s->closed = true;
  pthread_mutex_unlock(&s->mu);
}

/* One pass of the loop: wait up to `timeout` ms, handle the events, free
 * what died, sweep when due.  Returns the number of events, 0 on EINTR, or
 * the negative errno of epoll_wait(). */
static int loop_pass(ct_net_server *s, int timeout) {
  struct epoll_event evs[128];
  int n = epoll_wait(s->ep, evs, 128, timeout);
  if (n < 0)
    return errno == EINTR ? 0 : -errno;
  for (int i = 0; i < n; i++) {
    int kind = *(int *)evs[i].data.ptr;
    if (kind == EV_LISTEN) {
      do_accept(s);
    } else if (kind == EV_WAKE) {
      uint64_t v;
      ssize_t r = read(s->wake_fd, &v, sizeof v);
      (void)r;
      process_fired(s);
    } else {
      conn_event(s, evs[i].data.ptr, evs[i].events);
    }
  }
  free_dead(s);
  int64_t now = ct_now();
  if (now >= s->next_sweep) {
    sweep(s, now);
    free_dead(s);
    s->next_sweep = now + SWEEP_MS * INT64_C(1000000);
  }
  return n;
}

static int run_loop(ct_net_server *s) {
  int err = 0;
  process_fired(s); /* entries added (and fired) before we ran */
  while (!atomic_load(&s->stop_req)) {
    int n = loop_pass(s, s->conns || s->listen_paused ? SWEEP_MS : -1);
    if (n < 0) {
      err = n;
      LOG(s, "epoll_wait: %s; stopping", strerror(-n));
      break;
    }
  }
  teardown(s);
  atomic_store(&s->run_state, 2);
  return err;
}

static void *server_thread(void *arg) {
  run_loop(arg);
  return NULL;
}

/* ---- testing hooks (net_internal.h) ---- */

void net_server_adopt(ct_net_server *s, int fd) {
  struct sockaddr_storage ss;
  socklen_t slen = sizeof ss;
  if (getpeername(fd, (struct sockaddr *)&ss, &slen) < 0) {
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_UNIX;
    slen = sizeof(sa_family_t);
  }
  accept_one(s, fd, &ss, slen);
}

int net_server_run_once(ct_net_server *s, int timeout_ms) {
  process_fired(s);
  return loop_pass(s, timeout_ms);
}

/* ---- creation ---- */

static int listen_unix(ct_net_server *s) {
  const char *path = s->addr.path;
  for (int attempt = 0;; attempt++) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
      return -errno;
    if (bind(fd, (struct sockaddr *)&s->addr.ss, s->addr.len) == 0) {
      /* Before listen(), nobody can connect: tighten the mode now. */
      struct stat st;
      if (chmod(path, 0600) < 0 || stat(path, &st) < 0) {
        int e = -errno;
        close(fd);
        unlink(path);
        return e;
      }
      s->own_path = true;
      s->path_dev = st.st_dev;
      s->path_ino = st.st_ino;
      if (listen(fd, SOMAXCONN) < 0) {
        int e = -errno;
        close(fd);
        unlink(path);
        s->own_path = false;
        return e;
      }
      s->lfd = fd;
      return 0;
    }
    int e = errno;
    close(fd);
    if (e != EADDRINUSE || attempt > 0)
      return -e;
    /* A socket file nobody listens on is a dead server's: replace it. */
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
      return -EADDRINUSE;
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
      return -errno;
    int cr = connect(probe, (struct sockaddr *)&s->addr.ss, s->addr.len);
    int ce = errno;
    close(probe);
    if (cr == 0 || ce != ECONNREFUSED)
      return -EADDRINUSE;
    unlink(path);
  }
}

static int listen_tcp(ct_net_server *s) {
  int fd = socket(s->addr.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                  0);
  if (fd < 0)
    return -errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (s->addr.family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&s->addr.ss, s->addr.len) < 0 ||
      listen(fd, SOMAXCONN) < 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  s->lfd = fd;
  return 0;
}

int ct_net_server_new(ct_net_server **out, const char *address,
                      const ct_net_server_options *opts) {
  if (!out || !address)
    return -EINVAL;
  *out = NULL;
  ct_net_server_options o = opts ? *opts : (ct_net_server_options){0};
  if ((o.secret_len && !o.secret) || (o.n_allowed_uids && !o.allowed_uids) ||
      o.handshake_timeout_ns < 0 || o.frame_timeout_ns < 0 ||
      o.stall_timeout_ns < 0)
    return -EINVAL;
  if (!o.max_clients)
    o.max_clients = 65536;
  if (!o.max_output)
    o.max_output = 1 << 20;
  if (!o.max_proxies_per_client)
    o.max_proxies_per_client = 4096;
  if (!o.handshake_timeout_ns)
    o.handshake_timeout_ns = 10 * SEC;
  if (!o.frame_timeout_ns)
    o.frame_timeout_ns = 10 * SEC;
  if (!o.stall_timeout_ns)
    o.stall_timeout_ns = 30 * SEC;

  ct_net_server *s = net_calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  s->ep = s->lfd = s->wake_fd = s->reserve_fd = -1;
  s->lkind = EV_LISTEN;
  s->wkind = EV_WAKE;
  pthread_mutex_init(&s->mu, NULL);
  int r;
  char err[200] = "";
  if ((r = net_parse_address(address, &s->addr, 0, err, sizeof err)) < 0) {
    if (*err)
      net_log(o.log, o.log_arg, "%s", err);
    goto fail;
  }
  if (o.allowed_uids) {
    uid_t *u = net_malloc(o.n_allowed_uids * sizeof *u);
    if (!u) {
      r = -ENOMEM;
      goto fail;
    }
    memcpy(u, o.allowed_uids, o.n_allowed_uids * sizeof *u);
    o.allowed_uids = u;
  }
  s->o = o;
  if (o.secret_len) {
    if (!(s->secret = net_malloc(o.secret_len))) {
      r = -ENOMEM;
      goto fail;
    }
    memcpy(s->secret, o.secret, o.secret_len);
  }
  s->o.secret = NULL; /* use s->secret */
  if (s->addr.family != AF_UNIX && !net_addr_is_loopback(&s->addr) &&
      !s->secret) {
    net_log(o.log, o.log_arg,
            "refusing to listen on %s, which is not a loopback address, "
            "without a secret", address);
    r = -EPERM;
    goto fail;
  }
  if (!(s->scratch = net_malloc(NET_HDR + NET_MAX_FRAME))) {
    r = -ENOMEM;
    goto fail;
  }
  s->ep = epoll_create1(EPOLL_CLOEXEC);
  s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->ep < 0 || s->wake_fd < 0) {
    r = -errno;
    goto fail;
  }
  s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  r = s->addr.family == AF_UNIX ? listen_unix(s) : listen_tcp(s);
  if (r < 0)
    goto fail;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (s->addr.family == AF_UNIX)
    snprintf(s->addrstr, sizeof s->addrstr, "%s", s->addr.path);
  else if (getsockname(s->lfd, (struct sockaddr *)&ss, &sl) == 0)
    net_addr_format((struct sockaddr *)&ss, sl, s->addrstr,
                    sizeof s->addrstr);
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &s->lkind};
  struct epoll_event wev = {.events = EPOLLIN, .data.ptr = &s->wkind};
  if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &lev) < 0 ||
      epoll_ctl(s->ep, EPOLL_CTL_ADD, s->wake_fd, &wev) < 0) {
    r = -errno;
    goto fail;
  }
  *out = s;
  return 0;
fail:
  ct_net_server_free(s);
  return r;
}

int ct_net_server_address(const ct_net_server *s, char *buf, size_t len) {
  if (!s || (!buf && len))
    return -EINVAL;
  return snprintf(buf, len, "%s", s->addrstr);
}

int ct_net_server_add(ct_net_server *s, const char *name, ct_token *t) {
  if (!s || !name || !t)
    return -EINVAL;
  size_t n;
  int rn = net_check_name(name, &n);
  if (rn < 0)
    return rn;
  struct entry *e = net_calloc(1, sizeof *e);
  char *copy = net_malloc(n + 1);
  if (!e || !copy) {
    net_free(e);
    net_free(copy);
    return -ENOMEM;
  }
  memcpy(copy, name, n + 1);
  e->s = s;
  e->name = copy;
  e->name_len = n;
  /* Register the hook first, while nobody else can see the entry: the
   * registration may fail (-ENOMEM), and then nothing has been published
   * that a connection could already have subscribed to.  Until the entry
   * is published below, a trigger only sets fired_early (entry_fired), and
   * the publication queues it.  If t is already triggered, the hook runs
   * here, at once, and takes mu itself: mu is not held. */
  int r = ct_callback_register(&e->cb, t, entry_fired, e);
  if (r < 0) {
    net_free(copy);
    net_free(e);
    return r;
  }
  r = 0;
  bool queued = false;
  pthread_mutex_lock(&s->mu);
  if (s->closed)
    r = -ESHUTDOWN;
  else if (lookup_locked(s, name, n))
    r = -EEXIST;
  else if (s->nentries >= UINT32_MAX - 1)
    r = -ENOSPC;
  else if (s->nentries == s->capentries) {
    size_t cap = s->capentries ? s->capentries * 2 : 8;
    struct entry **a = net_realloc(s->entries, cap * sizeof *a);
    if (a) {
      s->entries = a;
      s->capentries = cap;
    } else {
      r = -ENOMEM;
    }
  }
  if (r == 0)
    r = hash_grow_locked(s);
  if (r == 0) {
    e->tok = ct_token_ref(t);
    e->id = (uint32_t)s->nentries;
    s->entries[s->nentries++] = e;
    size_t b = name_hash(name, n) & (s->hashcap - 1);
    e->hnext = s->hash[b];
    s->hash[b] = e;
    e->published = true;
    if (e->fired_early) {
      e->queued = queued = true;
      e->fired_next = s->fired;
      s->fired = e;
    }
  }
  pthread_mutex_unlock(&s->mu);
  if (r < 0) {
    /* Not published: after this returns the hook is not running and never
     * will, so nothing refers to e any more. */
    ct_callback_unregister(&e->cb);
    net_free(copy);
    net_free(e);
    return r;
  }
  if (queued)
    wake(s);
  return 0;
}

int ct_net_server_start(ct_net_server *s) {
  if (!s)
    return -EINVAL;
  int expect = 0;
  if (!atomic_compare_exchange_strong(&s->run_state, &expect, 1))
    return -EBUSY;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  int e = pthread_create(&s->thread, &attr, server_thread, s);
  pthread_attr_destroy(&attr);
  if (e) {
    atomic_store(&s->run_state, 0);
    return -EAGAIN;
  }
  s->thread_started = true;
  return 0;
}

int ct_net_server_serve_forever(ct_net_server *s) {
  if (!s)
    return -EINVAL;
  int expect = 0;
  if (!atomic_compare_exchange_strong(&s->run_state, &expect, 1))
    return -EBUSY;
  return run_loop(s);
}

void ct_net_server_stop(ct_net_server *s) {
  if (!s)
    return;
  atomic_store(&s->stop_req, 1);
  if (s->wake_fd >= 0)
    wake(s);
}

void ct_net_server_get_stats(const ct_net_server *s, ct_net_server_stats *st) {
  if (!s || !st)
    return;
  ct_net_server *m = (ct_net_server *)s;
#define RD(f) atomic_load_explicit(&m->f, memory_order_relaxed)
  st->accepted = RD(st_accepted);
  st->active = RD(st_active);
  st->ready = RD(st_ready);
  st->dropped = RD(st_dropped);
  st->refused = RD(st_refused);
  st->proxies = RD(st_proxies);
#undef RD
}

void ct_net_server_free(ct_net_server *s) {
  if (!s)
    return;
  ct_net_server_stop(s);
  if (s->thread_started)
    pthread_join(s->thread, NULL);
  int expect = 0;
  if (atomic_compare_exchange_strong(&s->run_state, &expect, 2))
    teardown(s); /* never ran */
  /* Unregister outside mu (the hook takes it); afterwards no hook runs. */
  for (size_t i = 0; i < s->nentries; i++)
    ct_callback_unregister(&s->entries[i]->cb);
  for (size_t i = 0; i < s->nentries; i++) {
    struct entry *e = s->entries[i];
    ct_token_unref(e->tok);
    net_free(e->subs);
    net_free(e->name);
    net_free(e);
  }
  net_free(s->entries);
  net_free(s->hash);
  if (s->ep >= 0)
    close(s->ep);
  if (s->wake_fd >= 0)
    close(s->wake_fd);
  if (s->reserve_fd >= 0)
    close(s->reserve_fd);
  if (s->secret) {
    OPENSSL_cleanse(s->secret, s->o.secret_len);
    net_free(s->secret);
  }
  net_free((void *)s->o.allowed_uids);
  net_free(s->scratch);
  pthread_mutex_destroy(&s->mu);
  net_free(s);
}
