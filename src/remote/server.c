/* SPDX-License-Identifier: MIT
 *
 * server.c -- the token server's public API, name table and loop.  The
 * server owns real tokens, registered under names,
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
 *  queueing idempotent; server_proto.c makes the sending so.
 *
 *  Files.  This file holds the public API, the name table and the loop;
 *  the connections' buffers, limits and timeouts are in server_conn.c, the
 *  protocol handlers and notices in server_proto.c, the listening socket
 *  in server_listen.c (see server.h).  Hostile peers are the business of
 *  server_conn.c and server_listen.c; their design notes say how.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

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

struct entry *srv_lookup(ct_net_server *s, const char *name, size_t n) {
  pthread_mutex_lock(&s->mu);
  struct entry *e = lookup_locked(s, name, n);
  pthread_mutex_unlock(&s->mu); /* entries are never freed while we run */
  return e;
}

struct entry *srv_entry_by_id(ct_net_server *s, uint32_t id) {
  pthread_mutex_lock(&s->mu);
  struct entry *e = id < s->nentries ? s->entries[id] : NULL;
  pthread_mutex_unlock(&s->mu);
  return e;
}

/* ---- the loop ---- */

/* The end of the loop: every connection is told ERROR SHUTDOWN (an
 * orderly stop, so that clients can tell it from a server that died:
 * issue 13, 18) and closed; then the listener goes. */
static void teardown(ct_net_server *s) {
  fanout_stop(s);
  while (s->conns)
    conn_shutdown(s, s->conns);
  conn_free_dead(s);
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
      listen_accept(s);
    } else if (kind == EV_WAKE) {
      uint64_t v;
      ssize_t r = read(s->wake_fd, &v, sizeof v);
      (void)r;
      proto_process_fired(s);
    } else {
      conn_event(s, evs[i].data.ptr, evs[i].events);
    }
  }
  conn_free_dead(s);
  int64_t now = ct_now();
  if (now >= s->next_sweep) {
    listen_resume_due(s, now);
    conn_sweep(s, now);
    conn_free_dead(s);
    s->next_sweep = now + SWEEP_MS * INT64_C(1000000);
  }
  return n;
}

static int run_loop(ct_net_server *s) {
  int err = 0;
  proto_process_fired(s); /* entries added (and fired) before we ran */
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

void net_server_adopt(ct_net_server *s, int fd) { listen_adopt(s, fd); }

int net_server_run_once(ct_net_server *s, int timeout_ms) {
  proto_process_fired(s);
  return loop_pass(s, timeout_ms);
}

/* ---- creation ---- */

int ct_net_server_new(ct_net_server **out, const char *address,
                      const ct_net_server_options *opts) {
  if (!out || !address)
    return -EINVAL;
  *out = NULL;
  ct_net_server_options o;
  static const size_t sizes[] = {CT_NET_SERVER_OPTIONS_SIZE_1,
                                 CT_NET_SERVER_OPTIONS_SIZE_2};
  /* An unknown size: nothing else of *opts may be read (not even log). */
  if (net_options_copy(&o, sizeof o, opts, sizes, 2) < 0)
    return -EINVAL;
  if ((o.secret_len && !o.secret) || (o.n_allowed_uids && !o.allowed_uids) ||
      o.handshake_timeout_ns < 0 || o.frame_timeout_ns < 0 ||
      o.stall_timeout_ns < 0)
    return -EINVAL;
  if (!o.max_clients)
    o.max_clients = 65536;
  if (!o.max_handshakes)
    o.max_handshakes = o.max_clients;
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
  /* The groups' sort order (server.h, group_set_key()); without random
   * bytes, something no client can predict well either. */
  if (net_random((uint8_t *)&s->group_salt, sizeof s->group_salt) < 0)
    s->group_salt = (uint64_t)ct_now() ^ (uint64_t)(uintptr_t)s;
  s->lkind = EV_LISTEN;
  s->wkind = EV_WAKE;
  pthread_mutex_init(&s->mu, NULL);
  int r;
  char err[200] = "";
  if ((r = net_resolve_address(address, &s->addr, 0, err, sizeof err)) < 0) {
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
  r = listen_open(s);
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
  else if (net_grow(&s->entries, &s->capentries, s->nentries,
                    sizeof *s->entries, 8) < 0)
    r = -ENOMEM;
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
  /* No stack size: this thread runs application callbacks (those of a
   * served token that a client triggers), which are entitled to the
   * C library's default stack like any thread of the application; it
   * used to be 256 KiB, on which a callback with 1 MiB of locals crashed
   * (tests/test_net.c, test_library_threads_give_callbacks_an_ordinary_
   * stack).  Untouched pages cost only address space. */
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
    net_wipe(s->secret, s->o.secret_len);
    net_free(s->secret);
  }
  net_free((void *)s->o.allowed_uids);
  net_free(s->scratch);
  pthread_mutex_destroy(&s->mu);
  net_free(s);
}
