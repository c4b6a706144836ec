/* SPDX-License-Identifier: MIT
 *
 * client_req.c -- the token client's requests and the server's replies
 * (GET, TRIGGER, LIST; TOKEN, ACK, LIST_REPLY, NOTIFY, ERROR), its proxy
 * tokens (records over the shared proxy layer, proxy.h), and the loss of
 * the connection.  Frames are decoded and requests encoded by codec.c.
 *
 * Design notes:
 *
 *  Requests.  A blocking request lives on its caller's stack, linked in
 *  `reqs` (an index by id) under `mu`, with a completion token the caller
 *  waits on.  The I/O thread fills in the result and unlinks it under
 *  `mu`, takes its own reference on the completion token, and triggers it
 *  after unlocking: it never touches the request after `mu` is released.
 *  A caller that times out unlinks its request under `mu`; if it is no
 *  longer linked, the result is already there and is returned.  An
 *  asynchronous request is heap-allocated and, once unlinked, belongs to
 *  whoever unlinked it, which calls its done function exactly once.
 *
 *  Lookups.  A frame names its request by id and its proxy by handle;
 *  both are found through hash indexes (net_internal.h's net_map, kept in
 *  step with the request set and the proxy array under `mu`), in O(1)
 *  expected whatever the number of pending requests or proxies, where a
 *  scan made a burst of notices to one client's N proxies cost O(N^2).
 *
 *  Proxies.  A proxy is a struct cproxy: the shared layer's record
 *  (proxy.h, which decides what is forwarded: see its notes) plus the
 *  server's handle.  forward() sends a local trigger as a TRIGGER with no
 *  ACK wanted.  Notices and TOKEN replies become ct_proxy_fire(); a lost
 *  connection ct_proxy_lose() with CT_REASON_OWNER_LOST, or
 *  CT_REASON_SHUTDOWN when the server said it was stopping.
 *
 *  Lifetime.  Proxy records (struct cproxy) are freed only by
 *  ct_net_client_free(), after the loop has let go of the client and each
 *  proxy's callback unregistered (the stop_callback guarantee: it is not
 *  running and never will).  The proxy tokens themselves are reference
 *  counted and outlive the client if the application holds them.
 */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* The next request id: never 0 ("no reply wanted") and never one still
 * pending (after the 32-bit counter wraps), so that each reply names one
 * request.  Fewer than 2^32 requests can be pending (each holds memory),
 * so the loop ends. */
static uint32_t next_id_locked(ct_net_client *c) {
  do
    if (++c->next_id == 0)
      c->next_id = 1;
  while (net_map_get(&c->reqs, c->next_id));
  return c->next_id;
}

static struct cproxy *find_by_token_locked(ct_net_client *c, const ct_token *t) {
  return net_map_get(&c->by_token, (uint64_t)(uintptr_t)t);
}

static struct cproxy *find_by_handle_locked(ct_net_client *c, uint32_t h) {
  return net_map_get(&c->by_handle, h);
}

/* Is the pending request `id` waiting for another type of reply than
 * `type`?  Such a reply (an ACK to a LIST, a LIST_REPLY to a GET, ...) is
 * a protocol error: taken as the answer, it would leave the caller with
 * no payload or no proxy.  Found by fuzz/fuzz_decoder.c. */
static bool reply_mismatch_locked(ct_net_client *c, uint32_t id,
                                  uint8_t type) {
  const struct req *q = net_map_get(&c->reqs, id);
  return q && q->want != type;
}

static struct req *take_req_locked(ct_net_client *c, uint32_t id) {
  return net_map_del(&c->reqs, id);
}

/* Link q (its id set) as pending: 0 or -ENOMEM. */
static int link_req_locked(ct_net_client *c, struct req *q) {
  return net_map_put(&c->reqs, q->id, q);
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

/* A local trigger of a proxy (proxy.h, "Threads"): tell the server. */
static void forward(struct ct_proxy *base, ct_reason r, int detail) {
  struct cproxy *p = (struct cproxy *)base; /* base is the first member */
  ct_net_client *c = p->c;
  pthread_mutex_lock(&c->mu);
  if (!c->dead) {
    struct net_trigger t = {.req = 0, /* no ACK wanted */
                            .handle = p->handle,
                            .reason = (uint8_t)r,
                            .detail = (uint8_t)detail};
    if (net_enc_trigger(&c->out, &t) == 0)
      client_flush_locked(c);
    else
      CLOG(c, "out of memory: trigger of '%s' not forwarded",
           ct_token_name(p->base.tok));
  }
  pthread_mutex_unlock(&c->mu);
}

/* New proxy record for handle h, named name (I/O thread, under mu). */
static struct cproxy *new_proxy_locked(ct_net_client *c, uint32_t h,
                                       const char *name) {
  if (c->nproxies == c->capproxies) {
    size_t cap = c->capproxies ? c->capproxies * 2 : 8;
    if (cap < c->capproxies || cap > SIZE_MAX / sizeof *c->proxies)
      return NULL;
    struct cproxy **p2 = net_realloc(c->proxies, cap * sizeof *p2);
    if (!p2)
      return NULL;
    c->proxies = p2;
    c->capproxies = cap;
  }
  struct cproxy *p = net_calloc(1, sizeof *p);
  if (!p)
    return NULL;
  /* A fresh token runs no callback: allowed under mu (LOCK ORDER). */
  if (ct_proxy_init(&p->base, name, forward) < 0) {
    net_free(p);
    return NULL;
  }
  p->c = c;
  p->handle = h;
  /* Both indexes or neither: a failure leaves the client as it was. */
  if (net_map_put(&c->by_handle, h, p) < 0) {
    ct_proxy_fini(&p->base);
    net_free(p);
    return NULL;
  }
  if (net_map_put(&c->by_token, (uint64_t)(uintptr_t)p->base.tok, p) < 0) {
    net_map_del(&c->by_handle, h);
    ct_proxy_fini(&p->base);
    net_free(p);
    return NULL;
  }
  c->proxies[c->nproxies++] = p;
  return p;
}

void client_free_proxies(ct_net_client *c) {
  for (size_t i = 0; i < c->nproxies; i++) {
    ct_proxy_fini(&c->proxies[i]->base); /* not running, never will */
    net_free(c->proxies[i]);
  }
  net_free(c->proxies);
  c->proxies = NULL;
  c->nproxies = c->capproxies = 0;
  net_map_free(&c->by_handle);
  net_map_free(&c->by_token);
  net_map_free(&c->reqs); /* empty: every request completed or unlinked */
}

/* ---- losing the connection ---- */

void client_lose(ct_net_client *c, int err, ct_reason reason) {
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
  for (size_t i = 0; i < c->reqs.cap; i++) {
    struct req *q = c->reqs.slot[i].val;
    if (!q)
      continue;
    q->result = err;
    if (q->done) {
      ct_token *done = ct_token_ref(q->done);
      ct_token_trigger(done);
      ct_token_unref(done);
    } else {
      q->next_async = async;
      async = q;
    }
  }
  net_map_free(&c->reqs); /* nothing is linked once dead */
  pthread_mutex_unlock(&c->mu);
  while (async) {
    struct req *q = async;
    async = q->next_async;
    deliver(q, NULL, err);
  }
  /* The lost token first: whoever sees a proxy triggered for the loss
   * also finds the client's error and lost token set.  (It is documented
   * as CT_REASON_OWNER_LOST whatever the cause.) */
  ct_token_trigger_reason(c->lost, CT_REASON_OWNER_LOST, 0);
  /* Proxies are not added once dead; the array is stable. */
  if (!c->keep)
    for (size_t k = 0; k < c->nproxies; k++)
      ct_proxy_lose(&c->proxies[k]->base, reason);
}

/* ---- replies ---- */

/* A proxy's name from a TOKEN reply: the owner's token's name, as the
 * reference's proxy.name is; an empty or non-UTF-8 owner name is the
 * server's error: fall back to the served name. */
static const char *proxy_name(const struct net_token *m, char *buf,
                              const struct req *q) {
  if (m->owner_len > 0 &&
      net_utf8_valid((const uint8_t *)m->owner, m->owner_len)) {
    memcpy(buf, m->owner, m->owner_len);
    buf[m->owner_len] = '\0';
    return buf;
  }
  return q ? q->name : NULL;
}

static int on_token(ct_net_client *c, const struct net_token *m) {
  char owner[CT_NET_NAME_MAX + 1];
  ct_token *done = NULL;
  pthread_mutex_lock(&c->mu);
  if (reply_mismatch_locked(c, m->req, MSG_TOKEN)) {
    pthread_mutex_unlock(&c->mu);
    return -EPROTO;
  }
  struct req *q = take_req_locked(c, m->req);
  struct cproxy *p = find_by_handle_locked(c, m->handle);
  int result = 0;
  const char *pname = proxy_name(m, owner, q);
  if (!p && q && !(p = new_proxy_locked(c, m->handle, pname)))
    result = -ENOMEM;
  if (q) {
    q->result = result;
    if (p)
      q->proxy = ct_token_ref(p->base.tok);
    if (q->done)
      done = ct_token_ref(q->done);
  }
  pthread_mutex_unlock(&c->mu);
  /* Trigger before completing: the caller gets a proxy that is
   * already triggered if the owner's token is. */
  if (p && m->triggered && !ct_token_triggered(p->base.tok))
    ct_proxy_fire(&p->base, (ct_reason)m->reason, m->detail, m->cause,
                  m->cause_len);
  if (q)
    deliver(q, done, result);
  return 0;
}

int client_on_frame(ct_net_client *c, const struct net_frame *f) {
  const uint8_t *b = f->body;
  size_t n = f->len;
  ct_token *done = NULL;
  struct req *q;
  switch (f->type) {
  case MSG_NOTIFY: {
    struct net_notify m;
    if (net_dec_notify(b, n, &m) < 0)
      return -EPROTO;
    pthread_mutex_lock(&c->mu);
    struct cproxy *p = find_by_handle_locked(c, m.handle);
    pthread_mutex_unlock(&c->mu);
    if (p) /* records live until ct_net_client_free() joins us */
      ct_proxy_fire(&p->base, (ct_reason)m.reason, m.detail, m.cause,
                    m.cause_len);
    return 0;
  }
  case MSG_TOKEN: {
    struct net_token m;
    if (net_dec_token(b, n, &m) < 0)
      return -EPROTO;
    return on_token(c, &m);
  }
  case MSG_ACK: {
    uint32_t req;
    uint8_t res;
    if (net_dec_ack(b, n, &req, &res) < 0)
      return -EPROTO;
    pthread_mutex_lock(&c->mu);
    if (reply_mismatch_locked(c, req, MSG_ACK)) {
      pthread_mutex_unlock(&c->mu);
      return -EPROTO;
    }
    q = complete_locked(c, req, res ? 1 : 0, &done);
    pthread_mutex_unlock(&c->mu);
    if (q)
      deliver(q, done, res ? 1 : 0);
    return 0;
  }
  case MSG_LIST_REPLY: {
    struct net_list_reply m;
    if (net_dec_list_reply(b, n, &m) < 0)
      return -EPROTO;
    uint8_t *copy = net_malloc(n);
    if (copy)
      memcpy(copy, b, n);
    pthread_mutex_lock(&c->mu);
    if (reply_mismatch_locked(c, m.req, MSG_LIST_REPLY)) {
      pthread_mutex_unlock(&c->mu);
      net_free(copy);
      return -EPROTO;
    }
    q = complete_locked(c, m.req, copy ? 0 : -ENOMEM, &done);
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
    struct net_error m;
    if (net_dec_error(b, n, &m) < 0)
      return -EPROTO;
    int err = net_err_to_errno(m.code);
    if (m.req == 0) {
      CLOG(c, "server closed the connection: %.*s", (int)m.msg_len, m.msg);
      /* SHUTDOWN: the server stopped in order (-ESHUTDOWN, proxies get
       * CT_REASON_SHUTDOWN); any other: as a reset (owner lost). */
      return err == -ESHUTDOWN ? -ESHUTDOWN
             : err == -EPROTO  ? -EPROTO
                               : -ECONNRESET;
    }
    pthread_mutex_lock(&c->mu);
    q = complete_locked(c, m.req, err, &done);
    pthread_mutex_unlock(&c->mu);
    if (q)
      deliver(q, done, err);
    return 0;
  }
  case MSG_PONG: {
    uint32_t req;
    return net_dec_req(b, n, &req) < 0 ? -EPROTO : 0;
  }
  default:
    CLOG(c, "unexpected message type 0x%02x from the server", f->type);
    return -EPROTO;
  }
}

/* ---- requests ---- */

/* What a request sends; encoded under mu once its id is known. */
struct req_body {
  uint8_t type; /* MSG_GET, MSG_TRIGGER or MSG_LIST */
  const char *name;
  size_t name_len;
  uint32_t handle, start;
  uint8_t reason, detail;
};

static int encode_locked(ct_net_client *c, const struct req_body *rb,
                         uint32_t id) {
  switch (rb->type) {
  case MSG_GET:
    return net_enc_get(&c->out, id, rb->name, rb->name_len);
  case MSG_TRIGGER: {
    struct net_trigger t = {.req = id, .handle = rb->handle,
                            .reason = rb->reason, .detail = rb->detail};
    return net_enc_trigger(&c->out, &t);
  }
  default:
    return net_enc_list(&c->out, id, rb->start);
  }
}

static uint8_t reply_type(uint8_t type) {
  return type == MSG_GET ? MSG_TOKEN
         : type == MSG_TRIGGER ? MSG_ACK
                               : MSG_LIST_REPLY;
}

/* Send request rb and wait for its answer (the caller's thread). */
static int request(ct_net_client *c, struct req *q, const struct req_body *rb,
                   int64_t deadline) {
  if (!net_valid_deadline(deadline))
    return -EINVAL;
  if (client_on_io_thread(c))
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
  q->want = reply_type(rb->type);
  if (link_req_locked(c, q) < 0) {
    pthread_mutex_unlock(&c->mu);
    ct_token_unref(q->done);
    return -ENOMEM;
  }
  if (encode_locked(c, rb, q->id) < 0) {
    take_req_locked(c, q->id);
    pthread_mutex_unlock(&c->mu);
    ct_token_unref(q->done);
    return -ENOMEM;
  }
  client_flush_locked(c);
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
  struct req_body rb = {.type = MSG_GET, .name = name, .name_len = n};
  struct req q = {.name = name};
  int r = request(c, &q, &rb, deadline);
  if (r < 0) {
    ct_token_unref(q.proxy);
    return r;
  }
  *out = q.proxy;
  return 0;
}

/* The reasons a server accepts (issue 13, 20): none of the backend-only
 * ones (owner lost, unreachable, shutdown), which the server refuses. */
static int check_trigger_args(ct_reason reason, int detail) {
  return !ct_proxy_reason_sendable(reason) || detail < 0 || detail > 255
             ? -EINVAL
             : 0;
}

static int proxy_handle(ct_net_client *c, ct_token *proxy, uint32_t *h) {
  pthread_mutex_lock(&c->mu);
  struct cproxy *p = find_by_token_locked(c, proxy);
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
  struct req_body rb = {.type = MSG_TRIGGER, .handle = h,
                        .reason = (uint8_t)reason, .detail = (uint8_t)detail};
  struct req q = {0};
  return request(c, &q, &rb, deadline);
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
  struct req_body rb = {.type = MSG_TRIGGER, .handle = h,
                        .reason = (uint8_t)reason, .detail = (uint8_t)detail};
  pthread_mutex_lock(&c->mu);
  int r = 0;
  if (c->dead) {
    r = atomic_load_explicit(&c->error, memory_order_acquire);
  } else {
    q->id = next_id_locked(c);
    if (link_req_locked(c, q) < 0) {
      r = -ENOMEM;
    } else if (encode_locked(c, &rb, q->id) < 0) {
      take_req_locked(c, q->id);
      r = -ENOMEM;
    } else {
      client_flush_locked(c);
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
    struct req_body rb = {.type = MSG_LIST, .start = start};
    struct req q = {0};
    r = request(c, &q, &rb, deadline);
    if (r < 0) {
      net_free(q.payload);
      break;
    }
    struct net_list_reply m;
    if (net_dec_list_reply(q.payload, q.plen, &m) < 0) { /* checked once */
      net_free(q.payload);
      r = -EPROTO;
      break;
    }
    size_t pos = 0;
    for (uint32_t i = 0; i < m.count && r == 0; i++) {
      struct net_list_entry e;
      if (net_dec_list_entry(&m, &pos, &e) != 1) {
        r = -EPROTO;
        break;
      }
      memcpy(name, e.name, e.name_len);
      name[e.name_len] = '\0';
      memcpy(cause, e.cause, e.cause_len);
      cause[e.cause_len] = '\0';
      ct_net_token_info info = {.name = name,
                                .triggered = e.triggered,
                                .reason = (ct_reason)e.reason,
                                .detail = e.detail,
                                .cause = cause};
      fn(arg, &info);
      total++;
    }
    net_free(q.payload);
    if (r == 0 && m.next != 0 && m.next <= start)
      r = -EPROTO; /* the server must make progress */
    start = m.next;
  } while (r == 0 && start != 0);
  net_free(name);
  return r < 0 ? r : total;
}
