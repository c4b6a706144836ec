/* SPDX-License-Identifier: MIT
 *
 * client.c -- the token client: connects to a token server, hands out
 * proxy tokens, and keeps them in step with the owner's tokens (notices
 * pushed by the server trigger them; local triggers are forwarded).
 *
 * Design notes:
 *
 *  Threads.  The handshake runs on the caller's thread in
 *  ct_net_client_connect().  Afterwards every client of the process is
 *  served by one shared thread (the "I/O thread"), an epoll loop started
 *  with the first client and stopped (joined) when the last one is freed.
 *  It reads each client's socket, completes requests and triggers
 *  proxies.  One thread per client made a notice to 1,000 clients wake
 *  1,000 threads; one loop wakes once and handles every ready socket in a
 *  batch (bench/net_bench.c, fan-out).  Clients stay independent: each has
 *  its own `mu`, proxies, requests and loss; only the thread is shared.
 *  Any thread may send: frames are appended to `out` under `mu` and
 *  written at once with a non-blocking send(); what does not fit is left
 *  for the loop: flush_locked() arms EPOLLOUT for the socket (`want_out`,
 *  under `mu`; epoll_ctl() is thread-safe) and the loop writes the rest
 *  when it is writable.  So a request costs no thread hop on the way out.
 *
 *  The loop (struct loop, guarded by the global `g_mu`).  A client is
 *  registered in `slots` and its socket in the epoll set with the key
 *  slot | generation << 32, never a pointer: an event already returned by
 *  epoll_wait() may be handled after its client was freed and another
 *  allocated at the same address; the loop looks the key up under g_mu
 *  and skips it if the slot is empty or holds a later client.  While it
 *  services a client (reads, triggers proxies, runs callbacks: no lock
 *  held) it names it in `current`.  ct_net_client_free() takes g_mu,
 *  removes the client from the slot and the epoll set, and waits on `g_cv`
 *  until `current` is not that client: after that the loop cannot reach
 *  it again, so no callback of the client runs after free returns.  (A
 *  callback may free another client: only the client being serviced
 *  cannot be freed from its own callbacks, as before.)  The last free
 *  stops the loop and joins its thread outside g_mu; if that free runs on
 *  the loop thread itself (a callback of a client being freed elsewhere
 *  frees the last other one), the thread is detached and frees the loop
 *  as it exits.  A connect racing with that creates a fresh loop.
 *  Heartbeats: the loop thread alone reads and writes last_rx/last_ping,
 *  and sweeps the clients that have a heartbeat after each batch.
 *
 *  fork().  The child gets no I/O thread.  An atfork handler holds g_mu
 *  across fork() (so the child's copy is consistent) and forgets the
 *  parent's loop in the child: a client connected in the child starts a
 *  new loop.  Clients inherited from the parent are not served in the
 *  child and may only be freed there: free sees that their loop belongs to
 *  another process (`pid`) and touches neither it nor its epoll set, which
 *  the parent shares.
 *
 *  LOCK ORDER.  `mu` (a client's) and `g_mu` (the loop's) are never held
 *  together: both are leaves.  No token is ever triggered and no callback
 *  registered on an already-triggered token while either is held, because
 *  a proxy's callback (proxy_fired) takes `mu` to forward the trigger,
 *  and any callback may free a client (g_mu).  Creating a token and
 *  registering a callback on a fresh (untriggered) one run no callbacks,
 *  and are done under `mu`.
 *
 *  Requests.  A blocking request lives on its caller's stack, linked on
 *  `reqs` under `mu`, with a completion token the caller waits on.  The
 *  I/O thread fills in the result and unlinks it under `mu`, takes its own
 *  reference on the completion token, and triggers it after unlocking: it
 *  never touches the request after `mu` is released.  A caller that times
 *  out unlinks its request under `mu`; if it is no longer linked, the
 *  result is already there and is returned.  An asynchronous request is
 *  heap-allocated and, once unlinked, belongs to whoever unlinked it,
 *  which calls its done function exactly once.
 *
 *  Which triggers are forwarded.  Each proxy carries `remote`, set (release)
 *  before the I/O thread triggers it for a notice or a loss.  The proxy's
 *  callback forwards the trigger to the server unless `remote` is set
 *  (acquire) or the reason is CT_REASON_OWNER_LOST.  If a local trigger
 *  and a notice race, either the local one wins the claim and is forwarded
 *  (the server then answers "already triggered", harmlessly), or the
 *  notice's wins, and the owner's token is triggered already.  Either way
 *  the owner's token is triggered exactly when the proxy is, modulo the
 *  time on the wire.
 *
 *  Lifetime.  Proxy records (struct proxy) are freed only by
 *  ct_net_client_free(), after the loop has let go of the client and each
 *  proxy's callback unregistered (the stop_callback guarantee: it is not
 *  running and never will).  The proxy tokens themselves are reference
 *  counted and outlive the client if the application holds them.
 */
#include "net_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/crypto.h>

struct proxy {
  struct ct_net_client *c;
  ct_token *tok; /* the client's reference */
  uint32_t handle;
  ct_callback cb; /* proxy_fired */
  /* The server has told us (notice or loss): do not forward.  Written
   * with release before the I/O thread triggers, read with acquire in the
   * callback. */
  _Atomic bool remote;
};

struct req {
  struct req *next; /* on c->reqs, under mu */
  uint32_t id;
  int result;
  const char *name;     /* GET: the caller's name (valid while linked) */
  ct_token *done;       /* blocking: the waiter's completion token */
  ct_net_done_fn fn;    /* asynchronous: heap request */
  void *arg;
  ct_token *proxy;      /* GET result: a new reference for the caller */
  uint8_t *payload;     /* LIST_REPLY body (malloc'd) */
  uint8_t want;         /* the reply type it expects (TOKEN, ACK, ...) */
  size_t plen;
};

struct loop;

struct ct_net_client {
  int fd;
  struct loop *loop; /* set once registered, before the loop can see us */
  uint64_t key;      /* epoll key: slot | generation << 32 (see loop) */
  /* mu guards out, want_out, reqs, proxies/nproxies/capproxies, next_id,
   * dead. */
  pthread_mutex_t mu;
  struct net_buf out;
  bool want_out; /* EPOLLOUT armed */
  struct req *reqs;
  struct proxy **proxies;
  size_t nproxies, capproxies;
  uint32_t next_id;
  bool dead;
  /* error: 0, or why the connection was lost.  Written once (release) by
   * lose() before it triggers anything, read (acquire) by anybody. */
  _Atomic int error;
  ct_token *lost;
  bool keep;
  int64_t heartbeat;
  ct_net_log_fn log;
  void *log_arg;
  struct net_buf in; /* I/O thread only */
  int64_t last_rx, last_ping; /* I/O thread only (set before registering) */
  bool gone; /* I/O thread only: lost, and out of the epoll set */
};

/* The process's I/O loop; see "The loop" above.  Everything but `ep`,
 * `wake_fd`, `thread` and `pid` (fixed before the loop is published) is
 * guarded by g_mu. */
struct loop {
  int ep, wake_fd;
  pthread_t thread;
  pid_t pid;
  bool stop;   /* the last client is gone: the thread exits */
  bool detach; /* ... and frees the loop itself (stopped on its thread) */
  ct_net_client **slots; /* NULL: a free slot */
  size_t nslots, nclients, nheartbeat;
  size_t waiters; /* frees waiting for `current` to change */
  uint32_t gen;
  ct_net_client *current; /* being serviced by the thread */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static struct loop *g_loop; /* the loop new clients join; under g_mu */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

#define WAKE_KEY UINT64_MAX

#define LOG(c, ...) net_log((c)->log, (c)->log_arg, __VA_ARGS__)

/* ---- sending (any thread, under mu) ---- */

static void flush_locked(ct_net_client *c) {
  while (net_buf_pending(&c->out)) {
    ssize_t w = send(c->fd, c->out.data + c->out.off, net_buf_pending(&c->out),
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      net_buf_consume(&c->out, (size_t)w);
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    /* EAGAIN: the loop writes the rest when the socket is writable;
     * other errors: it will see them (EPOLLERR/EPOLLHUP) and read. */
    if (!c->want_out && c->loop) {
      struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
                               .data.u64 = c->key};
      if (epoll_ctl(c->loop->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->want_out = true;
    }
    return;
  }
  if (c->want_out) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = c->key};
    epoll_ctl(c->loop->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = false;
  }
}

static uint32_t next_id_locked(ct_net_client *c) {
  if (++c->next_id == 0) /* 0 means "no reply wanted" */
    c->next_id = 1;
  return c->next_id;
}

/* On the I/O thread, a blocking request would wait for a reply that only
 * this thread can read -- for any client, since they share it. */
static bool on_io_thread(const ct_net_client *c) {
  return c->loop && pthread_equal(pthread_self(), c->loop->thread);
}

static struct proxy *find_by_token_locked(ct_net_client *c, const ct_token *t) {
  for (size_t i = 0; i < c->nproxies; i++)
    if (c->proxies[i]->tok == t)
      return c->proxies[i];
  return NULL;
}

static struct proxy *find_by_handle_locked(ct_net_client *c, uint32_t h) {
  for (size_t i = 0; i < c->nproxies; i++)
    if (c->proxies[i]->handle == h)
      return c->proxies[i];
  return NULL;
}

/* Is the pending request `id` waiting for another type of reply than
 * `type`?  Such a reply (an ACK to a LIST, a LIST_REPLY to a GET, ...) is
 * a protocol error: taken as the answer, it would leave the caller with
 * no payload or no proxy.  Found by fuzz/fuzz_decoder.c. */
static bool reply_mismatch_locked(ct_net_client *c, uint32_t id,
                                  uint8_t type) {
  for (struct req *q = c->reqs; q; q = q->next)
    if (q->id == id)
      return q->want != type;
  return false;
}

static struct req *take_req_locked(ct_net_client *c, uint32_t id) {
  for (struct req **pp = &c->reqs; *pp; pp = &(*pp)->next)
    if ((*pp)->id == id) {
      struct req *q = *pp;
      *pp = q->next;
      return q;
    }
  return NULL;
}

/* Deliver a request's result; called without mu, on a request already
 * unlinked whose fields were filled under mu.  `done` is the caller's own
 * reference on the completion token, taken under mu. */
static void deliver(struct req *q, ct_token *done, int result) {
  if (done) {
    ct_token_trigger(done);
    ct_token_unref(done);
  } else if (q && q->fn) {
    q->fn(q->arg, result);
    net_free(q->payload);
    net_free(q);
  }
}

/* Unlink request id with `result`; returns what deliver() needs. */
static struct req *complete_locked(ct_net_client *c, uint32_t id, int result,
                                   ct_token **done) {
  struct req *q = take_req_locked(c, id);
  *done = NULL;
  if (!q)
    return NULL;
  q->result = result;
  if (q->done)
    *done = ct_token_ref(q->done);
  return q;
}

/* ---- proxies ---- */

static void proxy_fired(ct_token *t, void *arg) {
  struct proxy *p = arg;
  /* acquire: pairs with the release store made before a remote trigger */
  if (atomic_load_explicit(&p->remote, memory_order_acquire))
    return;
  int detail = 0;
  ct_reason r = ct_token_reason(t, &detail);
  if (r == CT_REASON_OWNER_LOST)
    return;
  ct_net_client *c = p->c;
  pthread_mutex_lock(&c->mu);
  if (!c->dead) {
    uint8_t *b = net_buf_frame(&c->out, MSG_TRIGGER, 10);
    if (b) {
      put_u32(b, 0); /* no ACK wanted */
      put_u32(b + 4, p->handle);
      b[8] = (uint8_t)r;
      b[9] = (uint8_t)detail;
      flush_locked(c);
    } else {
      LOG(c, "out of memory: trigger of '%s' not forwarded",
          ct_token_name(t));
    }
  }
  pthread_mutex_unlock(&c->mu);
}

/* Trigger proxy p for the server (I/O thread; no lock held).  cause[cn]
 * is the name of the server-side token that fired. */
static void fire_proxy(struct proxy *p, unsigned reason, unsigned detail,
                       const uint8_t *cause, size_t cn) {
  atomic_store_explicit(&p->remote, true, memory_order_release);
  ct_reason r = reason ? (ct_reason)reason : CT_REASON_TRIGGER;
  const char *pname = ct_token_name(p->tok);
  char buf[CT_NET_NAME_MAX + 1];
  if (cn == 0 || cn > CT_NET_NAME_MAX || !pname ||
      (strlen(pname) == cn && memcmp(pname, cause, cn) == 0)) {
    ct_token_trigger_reason(p->tok, r, (int)detail);
    return;
  }
  memcpy(buf, cause, cn);
  buf[cn] = '\0';
  ct_token *stand_in;
  if (ct_token_new(&stand_in, buf) < 0) { /* bad UTF-8, or no memory */
    ct_token_trigger_reason(p->tok, r, (int)detail);
    return;
  }
  /* The stand-in is a local token named as the one that fired, triggered
   * like it, so that ct_token_triggered_token(proxy) names it. */
  ct_token_trigger_reason(stand_in, r, (int)detail);
  ct_token_trigger_with_cause(p->tok, stand_in, r, (int)detail);
  ct_token_unref(stand_in);
}

/* New proxy record for handle h, named name (I/O thread, under mu). */
static struct proxy *new_proxy_locked(ct_net_client *c, uint32_t h,
                                      const char *name) {
  if (c->nproxies == c->capproxies) {
    size_t cap = c->capproxies ? c->capproxies * 2 : 8;
    struct proxy **a = net_realloc(c->proxies, cap * sizeof *a);
    if (!a)
      return NULL;
    c->proxies = a;
    c->capproxies = cap;
  }
  struct proxy *p = net_calloc(1, sizeof *p);
  if (!p)
    return NULL;
  if (ct_token_new(&p->tok, name) < 0) {
    net_free(p);
    return NULL;
  }
  ct_token_mark_proxy(p->tok);
  p->c = c;
  p->handle = h;
  atomic_init(&p->remote, false);
  /* A fresh token is not triggered: this runs no callback under mu.  It
   * may fail (-ENOMEM: the token's first registration allocates), and a
   * proxy without its hook would never forward a local trigger: give up. */
  if (ct_callback_register(&p->cb, p->tok, proxy_fired, p) < 0) {
    ct_token_unref(p->tok);
    net_free(p);
    return NULL;
  }
  c->proxies[c->nproxies++] = p;
  return p;
}

/* ---- losing the connection ---- */

static void lose(ct_net_client *c, int err) {
  pthread_mutex_lock(&c->mu);
  if (c->dead) {
    pthread_mutex_unlock(&c->mu);
    return;
  }
  c->dead = true;
  /* release: whoever reads the error also sees the state before it */
  atomic_store_explicit(&c->error, err, memory_order_release);
  /* Blocking requests are woken here, under mu: their completion tokens
   * are private (no callbacks, only the waiter), so triggering one cannot
   * re-enter mu; we hold a reference while we do.  Asynchronous ones are
   * ours once unlinked, and complete after unlocking. */
  struct req *async = NULL;
  for (struct req *q = c->reqs, *next; q; q = next) {
    next = q->next;
    q->result = err;
    if (q->done) {
      ct_token *done = ct_token_ref(q->done);
      ct_token_trigger(done);
      ct_token_unref(done);
    } else {
      q->next = async;
      async = q;
    }
  }
  c->reqs = NULL;
  pthread_mutex_unlock(&c->mu);
  while (async) {
    struct req *q = async;
    async = q->next;
    deliver(q, NULL, err);
  }
  /* The lost token first: whoever sees a proxy triggered for the loss
   * also finds the client's error and lost token set. */
  ct_token_trigger_reason(c->lost, CT_REASON_OWNER_LOST, 0);
  /* Proxies are not added once dead; the array is stable. */
  for (size_t k = 0; k < c->nproxies; k++) {
    struct proxy *p = c->proxies[k];
    atomic_store_explicit(&p->remote, true, memory_order_release);
    if (!c->keep)
      ct_token_trigger_reason(p->tok, CT_REASON_OWNER_LOST, 0);
  }
}

/* ---- the I/O thread ---- */

static int on_frame(ct_net_client *c, uint8_t type, const uint8_t *b,
                    size_t n) {
  ct_token *done = NULL;
  struct req *q;
  switch (type) {
  case MSG_NOTIFY: {
    if (n < 6)
      return -EPROTO;
    pthread_mutex_lock(&c->mu);
    struct proxy *p = find_by_handle_locked(c, get_u32(b));
    pthread_mutex_unlock(&c->mu);
    if (p) /* records live until ct_net_client_free() joins us */
      fire_proxy(p, b[4], b[5], b + 6, n - 6);
    return 0;
  }
  case MSG_TOKEN: {
    if (n < 13)
      return -EPROTO;
    size_t on = get_u16(b + 11);
    if (13 + on > n || on > CT_NET_NAME_MAX)
      return -EPROTO;
    /* The proxy is named after the owner's token, as the reference's
     * proxy.name is; an empty or non-UTF-8 owner name is the server's
     * error: fall back to the served name. */
    char owner[CT_NET_NAME_MAX + 1];
    memcpy(owner, b + 13, on);
    owner[on] = '\0';
    pthread_mutex_lock(&c->mu);
    if (reply_mismatch_locked(c, get_u32(b), MSG_TOKEN)) {
      pthread_mutex_unlock(&c->mu);
      return -EPROTO;
    }
    q = take_req_locked(c, get_u32(b));
    struct proxy *p = find_by_handle_locked(c, get_u32(b + 4));
    int result = 0;
    const char *pname = on > 0 && net_utf8_valid(b + 13, on) ? owner
                        : q ? q->name : NULL;
    if (!p && q && !(p = new_proxy_locked(c, get_u32(b + 4), pname)))
      result = -ENOMEM;
    if (q) {
      q->result = result;
      if (p)
        q->proxy = ct_token_ref(p->tok);
      if (q->done)
        done = ct_token_ref(q->done);
    }
    pthread_mutex_unlock(&c->mu);
    /* Trigger before completing: the caller gets a proxy that is
     * already triggered if the owner's token is. */
    if (p && b[8] && !ct_token_triggered(p->tok))
      fire_proxy(p, b[9], b[10], b + 13 + on, n - 13 - on);
    if (q)
      deliver(q, done, result);
    return 0;
  }
  case MSG_ACK:
    if (n != 5)
      return -EPROTO;
    pthread_mutex_lock(&c->mu);
    if (reply_mismatch_locked(c, get_u32(b), MSG_ACK)) {
      pthread_mutex_unlock(&c->mu);
      return -EPROTO;
    }
    q = complete_locked(c, get_u32(b), b[4] ? 1 : 0, &done);
    pthread_mutex_unlock(&c->mu);
    if (q)
      deliver(q, done, b[4] ? 1 : 0);
    return 0;
  case MSG_LIST_REPLY: {
    if (n < 12)
      return -EPROTO;
    uint8_t *copy = net_malloc(n);
    if (copy)
      memcpy(copy, b, n);
    pthread_mutex_lock(&c->mu);
    if (reply_mismatch_locked(c, get_u32(b), MSG_LIST_REPLY)) {
      pthread_mutex_unlock(&c->mu);
      net_free(copy);
      return -EPROTO;
    }
    q = complete_locked(c, get_u32(b), copy ? 0 : -ENOMEM, &done);
    if (q && copy) {
      q->payload = copy;
      q->plen = n;
      copy = NULL;
    }
    int result = q ? q->result : 0;
    pthread_mutex_unlock(&c->mu);
    net_free(copy);
    if (q)
      deliver(q, done, result);
    return 0;
  }
  case MSG_ERROR: {
    if (n < 6)
      return -EPROTO;
    uint32_t id = get_u32(b);
    int err = net_err_to_errno(get_u16(b + 4));
    if (id == 0) {
      LOG(c, "server closed the connection: %.*s", (int)(n - 6),
          (const char *)b + 6);
      return err == -EPROTO ? -EPROTO : -ECONNRESET;
    }
    pthread_mutex_lock(&c->mu);
    q = complete_locked(c, id, err, &done);
    pthread_mutex_unlock(&c->mu);
    if (q)
      deliver(q, done, err);
    return 0;
  }
  case MSG_PONG:
    return n == 4 ? 0 : -EPROTO;
  default:
    LOG(c, "unexpected message type 0x%02x from the server", type);
    return -EPROTO;
  }
}

/* Read what is there and handle whole frames.  Returns 0, or the error
 * that loses the connection. */
static int io_read(ct_net_client *c) {
  if (net_buf_reserve(&c->in, NET_HDR + NET_MAX_FRAME) < 0)
    return -ENOMEM;
  ssize_t r = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
  if (r < 0)
    return errno == EAGAIN || errno == EINTR ? 0 : -ECONNRESET;
  if (r == 0)
    return -ECONNRESET;
  c->last_rx = ct_now();
  c->in.len += (size_t)r;
  while (net_buf_pending(&c->in) >= NET_HDR) {
    const uint8_t *p = c->in.data + c->in.off;
    uint32_t len = get_u32(p);
    if (len == 0 || len > NET_MAX_FRAME) {
      LOG(c, "bad frame length %u from the server", len);
      return -EPROTO;
    }
    if (net_buf_pending(&c->in) - NET_HDR < len)
      break;
    int e = on_frame(c, p[NET_HDR], p + NET_HDR + 1, len - 1);
    if (e < 0)
      return e;
    net_buf_consume(&c->in, NET_HDR + len);
  }
  return 0;
}

/* Heartbeat of one client: ping when the server has been silent for a
 * period, give up after three.  Returns 0 or -ETIMEDOUT. */
static int heartbeat(ct_net_client *c) {
  int64_t now = ct_now();
  if (now - c->last_rx >= 3 * c->heartbeat) {
    LOG(c, "no answer from the server for %lld ms",
        (long long)((now - c->last_rx) / 1000000));
    return -ETIMEDOUT;
  }
  if (now - c->last_rx >= c->heartbeat &&
      now - c->last_ping >= c->heartbeat) {
    pthread_mutex_lock(&c->mu);
    uint8_t *b = net_buf_frame(&c->out, MSG_PING, 4);
    if (b) {
      put_u32(b, 0);
      flush_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
    c->last_ping = now;
  }
  return 0;
}

/* When heartbeat() next has work for c. */
static int64_t heartbeat_due(const ct_net_client *c) {
  int64_t next = c->last_rx + c->heartbeat;
  if (next < c->last_ping + c->heartbeat)
    next = c->last_ping + c->heartbeat;
  return next;
}

/* Handle epoll events (0: heartbeat only) for client c, which the loop
 * names in `current` (I/O thread, no lock held). */
static void service(struct loop *l, ct_net_client *c, uint32_t events) {
  if (c->gone)
    return;
  int err = 0;
  if (events & EPOLLOUT) {
    pthread_mutex_lock(&c->mu);
    flush_locked(c);
    pthread_mutex_unlock(&c->mu);
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
    err = io_read(c);
  if (err == 0 && c->heartbeat > 0)
    err = heartbeat(c);
  if (err < 0) {
    /* Out of the epoll set at once: a closed socket stays readable. */
    c->gone = true;
    epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
    lose(c, err);
  }
}

/* The client registered under key, named `current`; NULL if it was freed
 * (or the slot reused).  Under g_mu. */
static ct_net_client *claim_locked(struct loop *l, uint64_t key) {
  size_t slot = (size_t)(key & 0xffffffffu);
  ct_net_client *c = slot < l->nslots ? l->slots[slot] : NULL;
  if (!c || c->key != key)
    return NULL;
  l->current = c;
  return c;
}

static void release_locked(struct loop *l) {
  l->current = NULL;
  pthread_cond_broadcast(&g_cv); /* a free may wait for it */
}

static void loop_destroy(struct loop *l) {
  close(l->ep);
  close(l->wake_fd);
  net_free(l->slots);
  net_free(l);
}

static void *loop_thread(void *arg) {
  struct loop *l = arg;
  struct epoll_event ev[64];
  pthread_mutex_lock(&g_mu);
  for (;;) {
    if (l->stop)
      break;
    int timeout = -1;
    if (l->nheartbeat > 0) {
      int64_t now = ct_now(), next = INT64_MAX;
      for (size_t i = 0; i < l->nslots; i++) {
        ct_net_client *c = l->slots[i];
        if (c && c->heartbeat > 0 && !c->gone && heartbeat_due(c) < next)
          next = heartbeat_due(c);
      }
      if (next != INT64_MAX)
        timeout = next <= now ? 0 : (int)((next - now) / 1000000 + 1);
    }
    pthread_mutex_unlock(&g_mu);
    int n = epoll_wait(l->ep, ev, 64, timeout);
    if (n < 0)
      n = 0; /* EINTR; nothing else can happen to a valid epoll fd */
    for (int i = 0; i < n; i++) {
      if (ev[i].data.u64 == WAKE_KEY) {
        uint64_t v;
        ssize_t r = read(l->wake_fd, &v, sizeof v);
        (void)r;
        continue;
      }
      pthread_mutex_lock(&g_mu);
      ct_net_client *c = claim_locked(l, ev[i].data.u64);
      pthread_mutex_unlock(&g_mu);
      if (!c)
        continue;
      service(l, c, ev[i].events);
      pthread_mutex_lock(&g_mu);
      release_locked(l);
      pthread_mutex_unlock(&g_mu);
    }
    pthread_mutex_lock(&g_mu);
    if (l->nheartbeat > 0) {
      /* By index, re-read under g_mu: slots may move or empty while a
       * client is serviced. */
      int64_t now = ct_now();
      for (size_t i = 0; i < l->nslots; i++) {
        ct_net_client *c = l->slots[i];
        if (!c || c->heartbeat <= 0 || c->gone || heartbeat_due(c) > now)
          continue;
        claim_locked(l, c->key);
        pthread_mutex_unlock(&g_mu);
        service(l, c, 0);
        pthread_mutex_lock(&g_mu);
        release_locked(l);
      }
    }
  }
  bool detach = l->detach;
  /* A free that waited for us to leave its client has yet to wake and
   * look at `current`: it must find the loop still there. */
  while (detach && l->waiters > 0)
    pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
  if (detach) { /* stopped on this thread: nobody joins it */
    pthread_detach(pthread_self());
    loop_destroy(l);
  }
  return NULL;
}

static void atfork_prepare(void) { pthread_mutex_lock(&g_mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&g_mu); }
static void atfork_child(void) {
  /* The parent's loop has no thread here, and its epoll set is shared
   * with the parent: forget it (its memory is the parent's business). */
  g_loop = NULL;
  pthread_cond_init(&g_cv, NULL); /* no waiter survives fork() */
  pthread_mutex_unlock(&g_mu);
}
static void install_atfork(void) {
  pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* A new loop and its thread (under g_mu). */
static int loop_new_locked(struct loop **out) {
  struct loop *l = net_calloc(1, sizeof *l);
  if (!l)
    return -ENOMEM;
  l->pid = getpid();
  l->ep = epoll_create1(EPOLL_CLOEXEC);
  l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  int r = 0;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_KEY};
  if (l->ep < 0 || l->wake_fd < 0 ||
      epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wake_fd, &ev) < 0) {
    r = -errno;
  } else {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    if (pthread_create(&l->thread, &attr, loop_thread, l) != 0)
      r = -EAGAIN;
    pthread_attr_destroy(&attr);
  }
  if (r < 0) {
    if (l->ep >= 0)
      close(l->ep);
    if (l->wake_fd >= 0)
      close(l->wake_fd);
    net_free(l);
    return r;
  }
  *out = l;
  return 0;
}

static void loop_wake(struct loop *l) {
  uint64_t one = 1;
  ssize_t w = write(l->wake_fd, &one, sizeof one);
  (void)w; /* EAGAIN: the counter is non-zero already, which is enough */
}

/* Register c with the process's loop, starting it if need be. */
static int loop_attach(ct_net_client *c) {
  pthread_once(&g_once, install_atfork);
  pthread_mutex_lock(&g_mu);
  int r = 0;
  struct loop *l = g_loop;
  bool fresh = false;
  if (!l) {
    if ((r = loop_new_locked(&l)) < 0)
      goto out;
    fresh = true;
  }
  size_t slot = 0;
  while (slot < l->nslots && l->slots[slot])
    slot++;
  if (slot == l->nslots) {
    size_t cap = l->nslots ? l->nslots * 2 : 8;
    ct_net_client **a = net_realloc(l->slots, cap * sizeof *a);
    if (!a) {
      r = -ENOMEM;
      goto out;
    }
    memset(a + l->nslots, 0, (cap - l->nslots) * sizeof *a);
    l->slots = a;
    l->nslots = cap;
  }
  if (++l->gen == 0)
    l->gen = 1;
  c->key = (uint64_t)l->gen << 32 | slot;
  c->loop = l;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = c->key};
  if (epoll_ctl(l->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
    r = -errno;
    c->loop = NULL;
    goto out;
  }
  l->slots[slot] = c;
  l->nclients++;
  if (c->heartbeat > 0) {
    l->nheartbeat++;
    loop_wake(l); /* it may sleep with no timeout */
  }
  g_loop = l;
out:
  if (r < 0 && fresh) { /* a loop without a client: stop it again */
    l->stop = true;
    loop_wake(l);
  }
  pthread_mutex_unlock(&g_mu);
  if (r < 0 && fresh) {
    pthread_join(l->thread, NULL);
    loop_destroy(l);
  }
  return r;
}

/* Take c out of its loop; on return the loop will not touch c again.
 * Stops the loop with its last client. */
static void loop_detach(ct_net_client *c) {
  struct loop *l = c->loop;
  pthread_mutex_lock(&g_mu);
  if (l->pid != getpid()) { /* inherited across fork(): not served here */
    pthread_mutex_unlock(&g_mu);
    c->loop = NULL;
    return;
  }
  bool self = pthread_equal(pthread_self(), l->thread);
  epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL); /* ENOENT if gone */
  l->slots[c->key & 0xffffffffu] = NULL;
  /* Whoever takes the count to zero stops the loop, even if it has yet
   * to wait below: another free may then run on the loop thread. */
  bool last = --l->nclients == 0;
  if (c->heartbeat > 0)
    l->nheartbeat--;
  /* On the loop thread, current is c only when c frees itself from its
   * own callback, which would wait forever: not allowed (see the header). */
  if (!self && l->current == c) {
    l->waiters++;
    while (l->current == c)
      pthread_cond_wait(&g_cv, &g_mu);
    if (--l->waiters == 0)
      pthread_cond_broadcast(&g_cv); /* a detached loop may wait for us */
  }
  bool join = false;
  if (last) {
    l->stop = true;
    if (g_loop == l)
      g_loop = NULL;
    if (self)
      l->detach = true;
    else
      join = true;
    loop_wake(l);
  }
  pthread_mutex_unlock(&g_mu);
  if (join) {
    pthread_join(l->thread, NULL);
    loop_destroy(l);
  }
  /* want_out is moot now; flush_locked() must not touch the epoll set. */
  pthread_mutex_lock(&c->mu);
  c->loop = NULL;
  c->want_out = false;
  pthread_mutex_unlock(&c->mu);
}

/* ---- blocking requests ---- */

/* Send a request whose body (n bytes, the first 4 reserved for the id) is
 * `body`, and wait for its answer. */
static int request(ct_net_client *c, struct req *q, uint8_t type,
                   uint8_t *body, size_t n, int64_t deadline) {
  if (!net_valid_deadline(deadline))
    return -EINVAL;
  if (on_io_thread(c))
    return -EDEADLK;
  int r = ct_token_new(&q->done, "ct-net-request");
  if (r < 0)
    return r;
  pthread_mutex_lock(&c->mu);
  if (c->dead) {
    pthread_mutex_unlock(&c->mu);
    ct_token_unref(q->done);
    return atomic_load_explicit(&c->error, memory_order_acquire);
  }
  q->id = next_id_locked(c);
  q->want = type == MSG_GET       ? MSG_TOKEN
            : type == MSG_TRIGGER ? MSG_ACK
                                  : MSG_LIST_REPLY;
  put_u32(body, q->id);
  uint8_t *f = net_buf_frame(&c->out, type, n);
  if (!f) {
    pthread_mutex_unlock(&c->mu);
    ct_token_unref(q->done);
    return -ENOMEM;
  }
  memcpy(f, body, n);
  q->next = c->reqs;
  c->reqs = q;
  flush_locked(c);
  pthread_mutex_unlock(&c->mu);

  r = ct_token_wait(q->done, deadline);
  if (r == -ETIMEDOUT) {
    pthread_mutex_lock(&c->mu);
    bool mine = take_req_locked(c, q->id) == q;
    pthread_mutex_unlock(&c->mu);
    if (mine) {
      ct_token_unref(q->done);
      return -ETIMEDOUT;
    }
    /* completed meanwhile: the result is filled in */
  }
  ct_token_unref(q->done);
  return q->result;
}

int ct_net_client_get(ct_net_client *c, ct_token **out, const char *name,
                      int64_t deadline) {
  if (!c || !out || !name)
    return -EINVAL;
  *out = NULL;
  size_t n;
  int rn = net_check_name(name, &n);
  if (rn < 0)
    return rn;
  uint8_t body[4 + CT_NET_NAME_MAX];
  memcpy(body + 4, name, n);
  struct req q = {.name = name};
  int r = request(c, &q, MSG_GET, body, 4 + n, deadline);
  if (r < 0) {
    ct_token_unref(q.proxy);
    return r;
  }
  *out = q.proxy;
  return 0;
}

static int check_trigger_args(ct_reason reason, int detail) {
  return reason == CT_REASON_NONE || (unsigned)reason > 255 || detail < 0 ||
                 detail > 255
             ? -EINVAL
             : 0;
}

static int proxy_handle(ct_net_client *c, ct_token *proxy, uint32_t *h) {
  pthread_mutex_lock(&c->mu);
  struct proxy *p = find_by_token_locked(c, proxy);
  if (p)
    *h = p->handle;
  pthread_mutex_unlock(&c->mu);
  return p ? 0 : -EINVAL;
}

int ct_net_client_trigger(ct_net_client *c, ct_token *proxy, ct_reason reason,
                          int detail, int64_t deadline) {
  uint32_t h;
  if (!c || !proxy || check_trigger_args(reason, detail) < 0 ||
      proxy_handle(c, proxy, &h) < 0)
    return -EINVAL;
  uint8_t body[10];
  put_u32(body + 4, h);
  body[8] = (uint8_t)reason;
  body[9] = (uint8_t)detail;
  struct req q = {0};
  return request(c, &q, MSG_TRIGGER, body, sizeof body, deadline);
}

int ct_net_client_trigger_async(ct_net_client *c, ct_token *proxy,
                                ct_reason reason, int detail,
                                ct_net_done_fn done, void *arg) {
  uint32_t h;
  if (!c || !proxy || !done || check_trigger_args(reason, detail) < 0 ||
      proxy_handle(c, proxy, &h) < 0)
    return -EINVAL;
  struct req *q = net_calloc(1, sizeof *q);
  if (!q)
    return -ENOMEM;
  q->fn = done;
  q->want = MSG_ACK;
  q->arg = arg;
  pthread_mutex_lock(&c->mu);
  int r = 0;
  if (c->dead) {
    r = atomic_load_explicit(&c->error, memory_order_acquire);
  } else {
    uint8_t *b = net_buf_frame(&c->out, MSG_TRIGGER, 10);
    if (!b) {
      r = -ENOMEM;
    } else {
      q->id = next_id_locked(c);
      put_u32(b, q->id);
      put_u32(b + 4, h);
      b[8] = (uint8_t)reason;
      b[9] = (uint8_t)detail;
      q->next = c->reqs;
      c->reqs = q;
      flush_locked(c);
    }
  }
  pthread_mutex_unlock(&c->mu);
  if (r < 0)
    net_free(q);
  return r;
}

int ct_net_client_list(ct_net_client *c, ct_net_list_fn fn, void *arg,
                       int64_t deadline) {
  if (!c || !fn)
    return -EINVAL;
  uint32_t start = 0;
  int total = 0;
  char *name = net_malloc(2 * (CT_NET_NAME_MAX + 1));
  if (!name)
    return -ENOMEM;
  char *cause = name + CT_NET_NAME_MAX + 1;
  int r = 0;
  do {
    uint8_t body[8];
    put_u32(body + 4, start);
    struct req q = {0};
    r = request(c, &q, MSG_LIST, body, sizeof body, deadline);
    if (r < 0) {
      net_free(q.payload);
      break;
    }
    const uint8_t *p = q.payload + 12, *end = q.payload + q.plen;
    uint32_t next = get_u32(q.payload + 4), count = get_u32(q.payload + 8);
    for (uint32_t i = 0; i < count && r == 0; i++) {
      size_t nl, cl;
      if (end - p < 5 || (nl = get_u16(p + 3)) > CT_NET_NAME_MAX ||
          (size_t)(end - p) < 7 + nl ||
          (cl = get_u16(p + 5 + nl)) > CT_NET_NAME_MAX ||
          (size_t)(end - p) < 7 + nl + cl) {
        r = -EPROTO;
        break;
      }
      memcpy(name, p + 5, nl);
      name[nl] = '\0';
      memcpy(cause, p + 7 + nl, cl);
      cause[cl] = '\0';
      ct_net_token_info info = {.name = name,
                                .triggered = p[0] != 0,
                                .reason = (ct_reason)p[1],
                                .detail = p[2],
                                .cause = cause};
      fn(arg, &info);
      total++;
      p += 7 + nl + cl;
    }
    net_free(q.payload);
    if (next != 0 && next <= start)
      r = -EPROTO; /* the server must make progress */
    start = next;
  } while (r == 0 && start != 0);
  net_free(name);
  return r < 0 ? r : total;
}

/* ---- connecting ---- */

static int wait_fd(int fd, short ev, int64_t deadline) {
  for (;;) {
    struct pollfd p = {fd, ev, 0};
    int n = poll(&p, 1, net_poll_ms(deadline));
    if (n > 0)
      return 0;
    if (n == 0)
      return -ETIMEDOUT;
    if (errno != EINTR)
      return -errno;
  }
}

static int write_all(int fd, const uint8_t *p, size_t n, int64_t deadline) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      int r = wait_fd(fd, POLLOUT, deadline);
      if (r < 0)
        return r;
    } else {
      return -errno;
    }
  }
  return 0;
}

static int read_all(int fd, uint8_t *p, size_t n, int64_t deadline) {
  while (n) {
    ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
    if (r > 0) {
      p += r;
      n -= (size_t)r;
    } else if (r == 0) {
      return -ECONNRESET;
    } else if (errno == EAGAIN || errno == EINTR) {
      int e = wait_fd(fd, POLLIN, deadline);
      if (e < 0)
        return e;
    } else {
      return -errno;
    }
  }
  return 0;
}

/* Read one handshake frame into buf (cap bytes). */
static int read_hs_frame(int fd, uint8_t *buf, size_t cap, uint8_t *type,
                         size_t *n, int64_t deadline) {
  uint8_t hdr[NET_HDR];
  int r = read_all(fd, hdr, NET_HDR, deadline);
  if (r < 0)
    return r;
  uint32_t len = get_u32(hdr);
  if (len == 0 || len > cap + 1)
    return -EPROTO;
  uint8_t t;
  if ((r = read_all(fd, &t, 1, deadline)) < 0 ||
      (r = read_all(fd, buf, len - 1, deadline)) < 0)
    return r;
  *type = t;
  *n = len - 1;
  return 0;
}

static int send_hs_frame(int fd, uint8_t type, const uint8_t *body, size_t n,
                         int64_t deadline) {
  uint8_t f[NET_HDR + 1 + NET_MAX_FRAME_HS];
  put_u32(f, (uint32_t)(1 + n));
  f[NET_HDR] = type;
  memcpy(f + NET_HDR + 1, body, n);
  return write_all(fd, f, NET_HDR + 1 + n, deadline);
}

/* Read the answer to a handshake frame whose send returned `sent`.  A
 * server that refuses a connection at once (too many clients, no
 * descriptor left) may close it before our frame arrives: the send then
 * fails with EPIPE or ECONNRESET, but the ERROR frame it sent first is
 * still there to read, and it says why -- a clearer error than "broken
 * pipe".  Returns 0 with a frame, or the error of the send (else the
 * read). */
static int read_reply(int fd, int sent, uint8_t *buf, size_t cap,
                      uint8_t *type, size_t *n, int64_t deadline) {
  if (sent < 0 && sent != -EPIPE && sent != -ECONNRESET)
    return sent;
  int r = read_hs_frame(fd, buf, cap, type, n, deadline);
  if (sent < 0 && (r < 0 || *type != MSG_ERROR))
    return sent;
  return r;
}

/* An ERROR frame in the handshake: its errno, with its message. */
static int hs_error(const uint8_t *b, size_t n, char *err, size_t errlen) {
  if (n < 6) {
    net_seterr(err, errlen, "malformed error frame from the server");
    return -EPROTO;
  }
  net_seterr(err, errlen, "server refused the connection: %.*s",
             (int)(n - 6), (const char *)b + 6);
  return net_err_to_errno(get_u16(b + 4));
}

static int handshake(int fd, const ct_net_client_options *o, char *err,
                     size_t errlen, int64_t deadline) {
  uint8_t hello[40], cnonce[NET_NONCE];
  memcpy(hello, NET_MAGIC, 4);
  put_u16(hello + 4, NET_VERSION_MIN);
  put_u16(hello + 6, NET_VERSION_MAX);
  if (net_random(cnonce, NET_NONCE) < 0) {
    net_seterr(err, errlen, "no random bytes for a nonce");
    return -EIO;
  }
  memcpy(hello + 8, cnonce, NET_NONCE);
  int r = send_hs_frame(fd, MSG_HELLO, hello, sizeof hello, deadline);
  uint8_t b[NET_MAX_FRAME_HS];
  uint8_t type = 0;
  size_t n = 0;
  r = read_reply(fd, r, b, sizeof b, &type, &n, deadline);
  if (r < 0) {
    net_seterr(err, errlen, "handshake: %s%s", strerror(-r),
               r == -EPROTO ? " (not a cancel-token server?)" : "");
    return r;
  }
  if (type == MSG_ERROR)
    return hs_error(b, n, err, errlen);
  if (type != MSG_WELCOME || n < 3 + NET_NONCE + NET_PROOF) {
    net_seterr(err, errlen, "not a cancel-token server (bad WELCOME)");
    return -EPROTO;
  }
  unsigned v = get_u16(b);
  if (v < NET_VERSION_MIN || v > NET_VERSION_MAX) {
    net_seterr(err, errlen,
               "server chose protocol version %u; this client speaks %u..%u",
               v, NET_VERSION_MIN, NET_VERSION_MAX);
    return -EPROTONOSUPPORT;
  }
  bool server_secret = b[2] & NET_WELCOME_SECRET;
  const uint8_t *snonce = b + 3, *sproof = b + 3 + NET_NONCE;
  uint8_t proof[NET_PROOF] = {0};
  if (server_secret && !o->secret_len) {
    net_seterr(err, errlen, "the server requires a secret and none was given");
    return -EACCES;
  }
  if (o->secret_len) {
    if (!server_secret) {
      net_seterr(err, errlen, "the server does not check a secret, but one "
                              "was given: refusing an unauthenticated server");
      return -EACCES;
    }
    uint8_t want[NET_PROOF];
    if (net_proof(o->secret, o->secret_len, true, cnonce, snonce, want) < 0) {
      net_seterr(err, errlen, "cannot compute a proof");
      return -ENOMEM;
    }
    bool ok = net_proof_equal(want, sproof);
    OPENSSL_cleanse(want, sizeof want);
    if (!ok) {
      net_seterr(err, errlen, "the server failed to prove it knows the "
                              "secret (wrong secret?)");
      return -EACCES;
    }
    if (net_proof(o->secret, o->secret_len, false, cnonce, snonce, proof) <
        0) {
      net_seterr(err, errlen, "cannot compute a proof");
      return -ENOMEM;
    }
  }
  r = send_hs_frame(fd, MSG_AUTH, proof, sizeof proof, deadline);
  OPENSSL_cleanse(proof, sizeof proof);
  r = read_reply(fd, r, b, sizeof b, &type, &n, deadline);
  if (r < 0) {
    net_seterr(err, errlen, "handshake: %s", strerror(-r));
    return r;
  }
  if (type == MSG_ERROR)
    return hs_error(b, n, err, errlen);
  if (type != MSG_READY || n != 4) {
    net_seterr(err, errlen, "not a cancel-token server (bad READY)");
    return -EPROTO;
  }
  return 0;
}

static int connect_one(const struct net_addr *a, char *err, size_t errlen,
                       int64_t deadline) {
  int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    net_seterr(err, errlen, "socket: %s", strerror(errno));
    return -errno;
  }
  int r = 0;
  if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
    if (errno == EINPROGRESS) {
      r = wait_fd(fd, POLLOUT, deadline);
      int e = 0;
      socklen_t el = sizeof e;
      if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e)
        r = -e;
    } else {
      r = -errno;
    }
  }
  if (r < 0) {
    close(fd);
    return r;
  }
  if (a->family != AF_UNIX) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

int ct_net_client_connect(ct_net_client **out, const char *address,
                          const ct_net_client_options *opts, char *errbuf,
                          size_t errlen, int64_t deadline) {
  if (errbuf && errlen)
    errbuf[0] = '\0';
  if (!out || !address || !net_valid_deadline(deadline) ||
      (opts && opts->secret_len && !opts->secret) ||
      (opts && opts->heartbeat_ns < 0)) {
    net_seterr(errbuf, errlen, "invalid argument");
    return -EINVAL;
  }
  *out = NULL;
  ct_net_client_options o = opts ? *opts : (ct_net_client_options){0};
  struct net_addr a;
  int fd = -ENOENT;
  for (int i = 0;; i++) {
    int r = net_parse_address(address, &a, i, errbuf, errlen);
    if (r < 0) {
      if (i == 0)
        return r;
      break; /* no more addresses: fd holds the last failure */
    }
    fd = connect_one(&a, errbuf, errlen, deadline);
    if (fd >= 0 || fd == -ETIMEDOUT)
      break;
  }
  if (fd < 0) {
    if (errbuf && errlen && !errbuf[0])
      net_seterr(errbuf, errlen, "cannot connect to %s: %s", address,
                 strerror(-fd));
    return fd;
  }
  int r = handshake(fd, &o, errbuf, errlen, deadline);
  if (r < 0) {
    close(fd);
    return r;
  }
  ct_net_client *c = net_calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    return -ENOMEM;
  }
  c->fd = fd;
  pthread_mutex_init(&c->mu, NULL);
  c->keep = o.keep_proxies_on_loss;
  c->heartbeat = o.heartbeat_ns;
  c->log = o.log;
  c->log_arg = o.log_arg;
  c->last_rx = c->last_ping = ct_now();
  if ((r = ct_token_new(&c->lost, "owner-lost")) < 0)
    goto fail;
  if ((r = loop_attach(c)) < 0)
    goto fail;
  *out = c;
  return 0;
fail:
  net_seterr(errbuf, errlen, "%s", strerror(-r));
  ct_net_client_free(c);
  return r;
}

ct_token *ct_net_client_lost_token(ct_net_client *c) {
  return c ? c->lost : NULL;
}

int ct_net_client_error(const ct_net_client *c) {
  if (!c)
    return -EINVAL;
  return atomic_load_explicit(&((ct_net_client *)c)->error,
                              memory_order_acquire);
}

void ct_net_client_free(ct_net_client *c) {
  if (!c)
    return;
  if (c->loop)
    loop_detach(c);
  if (c->lost)
    lose(c, -ESHUTDOWN);
  for (size_t i = 0; i < c->nproxies; i++) {
    struct proxy *p = c->proxies[i];
    ct_callback_unregister(&p->cb); /* not running, never will */
    ct_token_unref(p->tok);
    net_free(p);
  }
  net_free(c->proxies);
  if (c->fd >= 0)
    close(c->fd);
  ct_token_unref(c->lost);
  net_buf_free(&c->in);
  net_buf_free(&c->out);
  pthread_mutex_destroy(&c->mu);
  net_free(c);
}
