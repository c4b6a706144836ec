/* SPDX-License-Identifier: MIT
 *
 * client.c -- the token client: connects to a token server, hands out
 * proxy tokens, and keeps them in step with the owner's tokens (notices
 * pushed by the server trigger them; local triggers are forwarded).
 *
 * Design notes:
 *
 *  Threads.  The handshake runs on the caller's thread in
 *  ct_net_client_connect().  Afterwards one thread per client (the "I/O
 *  thread") reads the socket, completes requests and triggers proxies.
 *  Any thread may send: frames are appended to `out` under `mu` and
 *  written at once with a non-blocking send(); what does not fit is left
 *  for the I/O thread, woken through `wake_fd`, which then polls for
 *  POLLOUT.  So a request costs no thread hop on the way out.
 *
 *  LOCK ORDER.  `mu` is a leaf: no token is ever triggered and no callback
 *  registered on an already-triggered token while it is held, because a
 *  proxy's callback (proxy_fired) takes `mu` to forward the trigger.
 *  Creating a token and registering a callback on a fresh (untriggered)
 *  one run no callbacks, and are done under `mu`.
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
 *  ct_net_client_free(), after the I/O thread has been joined and each
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

struct ct_net_client {
  int fd, wake_fd;
  pthread_t thread;
  bool thread_started;
  /* mu guards out, reqs, proxies/nproxies/capproxies, next_id, dead. */
  pthread_mutex_t mu;
  struct net_buf out;
  struct req *reqs;
  struct proxy **proxies;
  size_t nproxies, capproxies;
  uint32_t next_id;
  bool dead;
  /* error: 0, or why the connection was lost.  Written once (release) by
   * lose() before it triggers anything, read (acquire) by anybody. */
  _Atomic int error;
  /* stop: set by ct_net_client_free() to end the I/O thread.  The eventfd
   * write that follows wakes it; seq_cst, no data rides on it. */
  _Atomic int stop;
  ct_token *lost;
  bool keep;
  int64_t heartbeat;
  ct_net_log_fn log;
  void *log_arg;
  struct net_buf in; /* I/O thread only */
  int64_t last_rx, last_ping;
};

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
    /* EAGAIN: the I/O thread polls for POLLOUT; other errors: it will see
     * them when it reads.  Wake it either way. */
    uint64_t one = 1;
    ssize_t r = write(c->wake_fd, &one, sizeof one);
    (void)r;
    return;
  }
}

static uint32_t next_id_locked(ct_net_client *c) {
  if (++c->next_id == 0) /* 0 means "no reply wanted" */
    c->next_id = 1;
  return c->next_id;
}

static bool on_io_thread(const ct_net_client *c) {
  return c->thread_started && pthread_equal(pthread_self(), c->thread);
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

static void *io_thread(void *arg) {
  ct_net_client *c = arg;
  c->last_rx = c->last_ping = ct_now();
  int err = 0;
  while (!atomic_load(&c->stop)) {
    pthread_mutex_lock(&c->mu);
    bool want_out = net_buf_pending(&c->out) > 0;
    pthread_mutex_unlock(&c->mu);
    struct pollfd fds[2] = {
        {c->fd, (short)(POLLIN | (want_out ? POLLOUT : 0)), 0},
        {c->wake_fd, POLLIN, 0}};
    int timeout = -1;
    if (c->heartbeat > 0) {
      int64_t now = ct_now(), next = c->last_rx + c->heartbeat;
      if (next < c->last_ping + c->heartbeat)
        next = c->last_ping + c->heartbeat;
      timeout = next <= now ? 0 : (int)((next - now) / 1000000 + 1);
    }
    int n = poll(fds, 2, timeout);
    if (n < 0 && errno != EINTR) {
      err = -errno;
      break;
    }
    if (atomic_load(&c->stop))
      break;
    if (n > 0 && (fds[1].revents & POLLIN)) {
      uint64_t v;
      ssize_t r = read(c->wake_fd, &v, sizeof v);
      (void)r;
    }
    if (n > 0 && (fds[0].revents & POLLOUT)) {
      pthread_mutex_lock(&c->mu);
      flush_locked(c);
      pthread_mutex_unlock(&c->mu);
    }
    if (n > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      if ((err = io_read(c)) < 0)
        break;
    }
    if (c->heartbeat > 0) {
      int64_t now = ct_now();
      if (now - c->last_rx >= 3 * c->heartbeat) {
        LOG(c, "no answer from the server for %lld ms",
            (long long)((now - c->last_rx) / 1000000));
        err = -ETIMEDOUT;
        break;
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
    }
  }
  if (err < 0)
    lose(c, err);
  return NULL;
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
  size_t n = strlen(name);
  if (n == 0 || !net_utf8_valid((const uint8_t *)name, n))
    return -EINVAL;
  if (n > CT_NET_NAME_MAX)
    return -ENAMETOOLONG;
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
  c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  pthread_mutex_init(&c->mu, NULL);
  c->keep = o.keep_proxies_on_loss;
  c->heartbeat = o.heartbeat_ns;
  c->log = o.log;
  c->log_arg = o.log_arg;
  if (c->wake_fd < 0) {
    r = -errno;
    goto fail;
  }
  if ((r = ct_token_new(&c->lost, "owner-lost")) < 0)
    goto fail;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  int e = pthread_create(&c->thread, &attr, io_thread, c);
  pthread_attr_destroy(&attr);
  if (e) {
    r = -EAGAIN;
    goto fail;
  }
  c->thread_started = true;
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
  atomic_store(&c->stop, 1);
  if (c->thread_started) {
    uint64_t one = 1;
    ssize_t w = write(c->wake_fd, &one, sizeof one);
    (void)w;
    pthread_join(c->thread, NULL);
    c->thread_started = false;
  }
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
  if (c->wake_fd >= 0)
    close(c->wake_fd);
  ct_token_unref(c->lost);
  net_buf_free(&c->in);
  net_buf_free(&c->out);
  pthread_mutex_destroy(&c->mu);
  net_free(c);
}
