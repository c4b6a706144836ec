/* SPDX-License-Identifier: MIT
 *
 * client_io.c -- the token clients' I/O thread: one epoll loop per
 * process that holds every client's socket, reads what the servers send,
 * hands each frame to client_req.c, writes what could not be sent at
 * once, and keeps the heartbeats.
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
 *  for the loop: client_flush_locked() arms EPOLLOUT for the socket (`want_out`,
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
 *  Free slots are kept on a stack (`free_slots`), so a connect takes one
 *  in O(1) instead of scanning for one (10,000 connects were 5 * 10^7
 *  slot reads).
 *
 *  Heartbeats.  The loop thread alone reads and writes last_rx/last_ping.
 *  The clients that have a heartbeat sit in a binary min-heap (`hb`,
 *  under g_mu) keyed by a time at or before their next heartbeat work:
 *  the key is heartbeat_due() as of when it was last set, and last_rx and
 *  last_ping only move forward, so the true due time is never earlier.
 *  The wait's timeout is the top's key, and after each batch the loop
 *  takes the tops whose key has passed: one whose true due time is still
 *  ahead (it has received since) only gets its key moved up; one that is
 *  due is serviced (a ping, or lost after three silent periods), and its
 *  key is then moved past now (heartbeat() leaves its next work after
 *  now, and the re-key takes now + 1 ns at least in any case), so the
 *  sweep ends.  The due times saturate at INT64_MAX, so any heartbeat_ns
 *  is safe.  A lost client leaves the heap there and then; a freed one,
 *  in client_loop_detach(), by its index `hb_idx`.  So a wake-up costs O(log n) per client with work and
 *  nothing per idle one, where it used to walk every slot twice (a notice
 *  to 10,000 heartbeat clients of one process walked 2 * 10,000 slots per
 *  batch of 64 events).
 *
 *  Bursts.  A notice to many of a process's clients arrives as a burst:
 *  the server sends to their connections one after the other, a few
 *  microseconds apart (more over loopback TCP, whose send() runs the
 *  receiver's TCP inline).  A thread that sleeps in epoll_wait() as soon
 *  as it has handled what is there is woken again for nearly every one of
 *  them, and a wake-up costs both sides more than the notice itself (a
 *  context switch here; a wake-up, often an inter-processor interrupt, in
 *  the sender's send()).  So once a wait returns SPIN_BATCH or more
 *  events at once (a burst is under way), or any event while the thread
 *  polls, the thread polls (epoll_wait() with a timeout of 0) instead of
 *  sleeping until SPIN_NS have passed since that batch, with
 *  sched_yield() between polls so that whatever else is runnable on its
 *  CPU goes first; then it sleeps as before.  Events that come one at a
 *  time (one client's replies, a lone notice) never start the polling,
 *  and a burst costs at most SPIN_NS of polling after its last batch
 *  (bench/net_bench.c, fan-out, --stats, medians of 8 interleaved runs on
 *  a shared 2-CPU machine, with the HELLO groups in place either way: over
 *  TCP, 1,000 connections in 10 processes, the client processes' context
 *  switches per notice fell from 0.36 to 0.20 and their CPU time per
 *  notice from 6.7 to 5.6 us, the server's from 11.7 to 10.0 us, and the
 *  trigger to the last proxy from 11.9 to 9.6 ms; over Unix sockets, where
 *  the thread was woken about once per burst already, 3.96 to 3.46 ms; the
 *  one-client latency rows did not move).  Heartbeats, stops
 *  and frees work as before: each poll is one pass of the same loop.
 *
 *  fork().  The child gets no I/O thread.  An atfork handler holds g_mu
 *  across fork() (so the child's copy is consistent) and forgets the
 *  parent's loop in the child: a client connected in the child starts a
 *  new loop.  Clients inherited from the parent are not served in the
 *  child and may only be freed there: free sees that their loop belongs to
 *  another process (`pid`) and touches neither it nor its epoll set, which
 *  the parent shares.  The child also draws an I/O group of its own
 *  (client_group(): the number every HELLO of the process carries, by
 *  which the server sends a notice to this process's connections back to
 *  back, PROTOCOL.md), since its connections are read by its own thread.
 *
 *  LOCK ORDER.  `mu` (a client's) and `g_mu` (the loop's) are never held
 *  together: both are leaves.  No token is ever triggered and no callback
 *  registered on an already-triggered token while either is held, because
 *  a proxy's callback (proxy.c, then forward() in client_req.c) takes
 *  `mu` to forward the trigger,
 *  and any callback may free a client (g_mu).  Creating a token and
 *  registering a callback on a fresh (untriggered) one run no callbacks,
 *  and are done under `mu`.
 */
#include "client.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

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
  size_t *free_slots;     /* nfree indexes of free slots, capacity nslots */
  size_t nslots, nfree, nclients;
  struct hb_ent *hb;      /* the heartbeat heap, see the design notes */
  size_t nhb, caphb;
  size_t waiters; /* frees waiting for `current` to change */
  uint32_t gen;
  ct_net_client *current; /* being serviced by the thread */
  uint8_t *scratch; /* the thread's read buffer (one frame); thread only */
};

/* An entry of the heartbeat heap: key `due` (ns, ct_now()), at or before
 * c's next heartbeat work. */
struct hb_ent {
  int64_t due;
  ct_net_client *c;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static struct loop *g_loop; /* the loop new clients join; under g_mu */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
/* The process's I/O group (client_group()); under g_mu, 0 until drawn. */
static uint64_t g_group;

#define WAKE_KEY UINT64_MAX
/* Bursts (see the design notes): a wait that returns SPIN_BATCH events or
 * more, or any while polling, makes the thread poll without sleeping for
 * SPIN_NS after that batch. */
#define SPIN_BATCH 2
#define SPIN_NS (INT64_C(30000))

/* ---- sending (any thread, under mu) ---- */

void client_flush_locked(ct_net_client *c) {
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

/* On the I/O thread, a blocking request would wait for a reply that only
 * this thread can read -- for any client, since they share it. */
bool client_on_io_thread(const ct_net_client *c) {
  return c->loop && pthread_equal(pthread_self(), c->loop->thread);
}

/* ---- the I/O thread ---- */

/* Read what is there and handle whole frames.  Returns 0, or the error
 * that loses the connection.
 *
 * Buffers are sized by what is pending, not by the largest frame: a read
 * goes into the loop's scratch buffer and only the unfinished tail of a
 * frame is kept in c->in, grown to that frame's length, and freed once
 * the frame is done (issue 13, class of 17: every client used to keep a
 * 32 KiB input buffer, 320 MiB for 10,000 clients). */
static int io_read(struct loop *l, ct_net_client *c) {
  uint8_t *base;
  size_t have;
  ssize_t r;
  size_t pend = net_buf_pending(&c->in);
  if (pend == 0) {
    base = l->scratch;
    r = recv(c->fd, base, NET_HDR + NET_MAX_FRAME, MSG_DONTWAIT);
    have = r > 0 ? (size_t)r : 0;
  } else {
    /* The rest of the frame in progress (its header first). */
    size_t want = NET_HDR;
    if (pend >= NET_HDR) {
      uint32_t len = get_u32(c->in.data + c->in.off);
      if (len == 0 || len > NET_MAX_FRAME) {
        CLOG(c, "bad frame length %u from the server", len);
        return -EPROTO;
      }
      want = NET_HDR + len;
    }
    if (net_buf_reserve(&c->in, want - pend) < 0)
      return -ENOMEM;
    base = c->in.data + c->in.off;
    r = recv(c->fd, base + pend, want - pend, MSG_DONTWAIT);
    have = pend + (r > 0 ? (size_t)r : 0);
  }
  if (r < 0)
    return errno == EAGAIN || errno == EINTR ? 0 : -ECONNRESET;
  if (r == 0)
    return -ECONNRESET;
  c->last_rx = ct_now();
  size_t pos = 0;
  for (;;) {
    struct net_frame f;
    uint32_t len = 0;
    int k = net_frame_next(base + pos, have - pos, NET_MAX_FRAME, &f, &len);
    if (k == 0)
      break;
    if (k < 0) {
      CLOG(c, "bad frame length %u from the server", len);
      return -EPROTO;
    }
    int e = client_on_frame(c, &f);
    if (e < 0)
      return e;
    pos += f.size;
  }
  if (base == l->scratch) {
    if (have > pos && net_buf_append(&c->in, base + pos, have - pos) < 0)
      return -ENOMEM;
  } else if (pos == have) {
    net_buf_free(&c->in); /* an idle client keeps no input buffer */
  } else {
    c->in.len = c->in.off + have; /* the frame is not complete yet */
  }
  return 0;
}

/* Heartbeat of one client: ping when the server has been silent for a
 * period, give up after three.  Returns 0 or -ETIMEDOUT. */
static int heartbeat(ct_net_client *c) {
  int64_t now = ct_now();
  /* "silent for three periods", written so that no heartbeat_ns can
   * overflow it (3 * INT64_MAX would): for a >= 0 and h > 0,
   * a >= 3h exactly when a / 3 >= h. */
  if ((now - c->last_rx) / 3 >= c->heartbeat) {
    CLOG(c, "no answer from the server for %lld ms",
        (long long)((now - c->last_rx) / 1000000));
    return -ETIMEDOUT;
  }
  if (now - c->last_rx >= c->heartbeat &&
      now - c->last_ping >= c->heartbeat) {
    pthread_mutex_lock(&c->mu);
    uint8_t *b = net_buf_frame(&c->out, MSG_PING, 4);
    if (b) {
      put_u32(b, 0);
      client_flush_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
    c->last_ping = now;
  }
  return 0;
}

/* t + the heartbeat period, saturated at INT64_MAX: any heartbeat_ns > 0
 * is accepted, INT64_MAX included (an outside review found that
 * last_rx + INT64_MAX wrapped negative, so the entry stayed due and the
 * sweep never ended, stopping every client of the process). */
static int64_t after_period(const ct_net_client *c, int64_t t) {
  return c->heartbeat > INT64_MAX - t ? INT64_MAX : t + c->heartbeat;
}

/* When heartbeat() next has work for c: a period after the later of the
 * last receive and the last ping (both >= 0, from ct_now()). */
static int64_t heartbeat_due(const ct_net_client *c) {
  return after_period(c, c->last_rx > c->last_ping ? c->last_rx
                                                   : c->last_ping);
}

/* ---- the heartbeat heap (under g_mu) ---- */

static void hb_put(struct loop *l, size_t i, struct hb_ent e) {
  l->hb[i] = e;
  e.c->hb_idx = i;
}

/* Move the entry at i up or down to where its key belongs. */
static void hb_fix(struct loop *l, size_t i) {
  struct hb_ent e = l->hb[i];
  while (i > 0 && l->hb[(i - 1) / 2].due > e.due) {
    hb_put(l, i, l->hb[(i - 1) / 2]);
    i = (i - 1) / 2;
  }
  for (;;) {
    size_t k = 2 * i + 1;
    if (k >= l->nhb)
      break;
    if (k + 1 < l->nhb && l->hb[k + 1].due < l->hb[k].due)
      k++;
    if (l->hb[k].due >= e.due)
      break;
    hb_put(l, i, l->hb[k]);
    i = k;
  }
  hb_put(l, i, e);
}

/* Room for one more entry; 0 or -ENOMEM. */
static int hb_reserve(struct loop *l) {
  if (l->nhb < l->caphb)
    return 0;
  size_t cap = l->caphb ? l->caphb * 2 : 8;
  struct hb_ent *a = net_realloc(l->hb, cap * sizeof *a);
  if (!a)
    return -ENOMEM;
  l->hb = a;
  l->caphb = cap;
  return 0;
}

/* Add c (room reserved). */
static void hb_push(struct loop *l, ct_net_client *c, int64_t due) {
  size_t i = l->nhb++;
  hb_put(l, i, (struct hb_ent){due, c});
  hb_fix(l, i);
}

/* Take c out, if it is in. */
static void hb_remove(struct loop *l, ct_net_client *c) {
  size_t i = c->hb_idx;
  if (i == SIZE_MAX)
    return;
  c->hb_idx = SIZE_MAX;
  if (i != --l->nhb) {
    hb_put(l, i, l->hb[l->nhb]);
    hb_fix(l, i);
  }
}

/* Give c's entry a new key. */
static void hb_rekey(struct loop *l, ct_net_client *c, int64_t due) {
  l->hb[c->hb_idx].due = due;
  hb_fix(l, c->hb_idx);
}

/* Handle epoll events (0: heartbeat only) for client c, which the loop
 * names in `current` (I/O thread, no lock held). */
static void service(struct loop *l, ct_net_client *c, uint32_t events) {
  if (c->gone)
    return;
  int err = 0;
  if (events & EPOLLOUT) {
    pthread_mutex_lock(&c->mu);
    client_flush_locked(c);
    pthread_mutex_unlock(&c->mu);
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
    err = io_read(l, c);
  if (err == 0 && c->heartbeat > 0)
    err = heartbeat(c);
  if (err < 0) {
    /* Out of the epoll set at once: a closed socket stays readable. */
    c->gone = true;
    epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
    client_lose(c, err, err == -ESHUTDOWN ? CT_REASON_SHUTDOWN
                                          : CT_REASON_OWNER_LOST);
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
  net_free(l->scratch);
  close(l->ep);
  close(l->wake_fd);
  net_free(l->slots);
  net_free(l->free_slots);
  net_free(l->hb);
  net_free(l);
}

static void *loop_thread(void *arg) {
  struct loop *l = arg;
  struct epoll_event ev[64];
  int64_t spin_until = 0; /* poll without sleeping until then */
  pthread_mutex_lock(&g_mu);
  for (;;) {
    if (l->stop)
      break;
    int timeout = -1;
    if (l->nhb > 0) {
      /* The earliest key: at or before any heartbeat work (design notes). */
      int64_t now = ct_now(), next = l->hb[0].due;
      if (next <= now)
        timeout = 0;
      else if ((next - now) / 1000000 < INT32_MAX)
        timeout = (int)((next - now) / 1000000 + 1);
      else
        timeout = INT32_MAX; /* a heartbeat of weeks: wake early, re-key */
    }
    pthread_mutex_unlock(&g_mu);
    /* Busy: poll without sleeping (see "Bursts" above). */
    bool spinning = spin_until > 0 && ct_now() < spin_until;
    int n = epoll_wait(l->ep, ev, 64, spinning ? 0 : timeout);
    if (n < 0)
      n = 0; /* EINTR; nothing else can happen to a valid epoll fd */
    if (n >= SPIN_BATCH || (n > 0 && spinning)) {
      spin_until = ct_now() + SPIN_NS;
    } else if (spinning) {
      sched_yield(); /* whoever else is runnable here goes first */
    }
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
    /* The heartbeat clients whose key has passed (design notes).  Each
     * turn removes the top or moves its key past now: the sweep ends. */
    int64_t now = ct_now();
    while (l->nhb > 0 && l->hb[0].due <= now) {
      ct_net_client *c = l->hb[0].c;
      if (c->gone) { /* lost while serviced for its events */
        hb_remove(l, c);
        continue;
      }
      int64_t due = heartbeat_due(c);
      if (due > now) { /* it received since the key was set */
        hb_rekey(l, c, due);
        continue;
      }
      /* c is alive: a free removes it from the heap under g_mu, which we
       * hold, and then waits for `current` to change. */
      l->current = c;
      pthread_mutex_unlock(&g_mu);
      service(l, c, 0);
      pthread_mutex_lock(&g_mu);
      /* Re-key before letting go of `current`: once released, a free
       * waiting for it may return and c be gone. */
      if (c->hb_idx != SIZE_MAX) { /* not freed meanwhile */
        if (c->gone)
          hb_remove(l, c);
        else /* heartbeat() left the next work after now; the floor
              * makes the sweep's end not depend on that reasoning */
          hb_rekey(l, c, heartbeat_due(c) > now ? heartbeat_due(c) : now + 1);
      }
      release_locked(l);
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
   * with the parent: forget it (its memory is the parent's business).
   * This process's connections will be read by a thread of its own, so
   * they are a group of their own. */
  g_loop = NULL;
  g_group = 0;
  pthread_cond_init(&g_cv, NULL); /* no waiter survives fork() */
  pthread_mutex_unlock(&g_mu);
}
static void install_atfork(void) {
  pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

uint64_t client_group(void) {
  pthread_once(&g_once, install_atfork);
  pthread_mutex_lock(&g_mu);
  while (g_group == 0) {
    uint8_t b[8];
    if (net_random(b, sizeof b) < 0)
      break; /* no group: the server sends in its own order */
    for (int i = 0; i < 8; i++)
      g_group = g_group << 8 | b[i];
  }
  uint64_t g = g_group;
  pthread_mutex_unlock(&g_mu);
  return g;
}

/* A new loop and its thread (under g_mu). */
static int loop_new_locked(struct loop **out) {
  struct loop *l = net_calloc(1, sizeof *l);
  if (!l)
    return -ENOMEM;
  l->pid = getpid();
  if (!(l->scratch = net_malloc(NET_HDR + NET_MAX_FRAME))) {
    net_free(l);
    return -ENOMEM;
  }
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
    /* No stack size: this thread runs application callbacks (a proxy's, or
     * a served token's that a client triggers), which are entitled to the
     * C library's default stack like any thread of the application; it
     * used to be 256 KiB, on which a callback with 1 MiB of locals crashed
     * (tests/test_net.c, test_library_threads_give_callbacks_an_ordinary_
     * stack).  Untouched pages cost only address space. */
    if (pthread_create(&l->thread, &attr, loop_thread, l) != 0)
      r = -EAGAIN;
    pthread_attr_destroy(&attr);
  }
  if (r < 0) {
    if (l->ep >= 0)
      close(l->ep);
    if (l->wake_fd >= 0)
      close(l->wake_fd);
    net_free(l->scratch);
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
int client_loop_attach(ct_net_client *c) {
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
  if (l->nfree == 0) {
    size_t cap = l->nslots ? l->nslots * 2 : 8;
    ct_net_client **a = net_realloc(l->slots, cap * sizeof *a);
    if (!a) {
      r = -ENOMEM;
      goto out;
    }
    memset(a + l->nslots, 0, (cap - l->nslots) * sizeof *a);
    l->slots = a;
    size_t *f = net_realloc(l->free_slots, cap * sizeof *f);
    if (!f) { /* slots keeps its larger size; nslots says what is used */
      r = -ENOMEM;
      goto out;
    }
    l->free_slots = f;
    for (size_t i = cap; i > l->nslots; i--) /* lowest index on top */
      f[l->nfree++] = i - 1;
    l->nslots = cap;
  }
  c->hb_idx = SIZE_MAX;
  if (c->heartbeat > 0 && (r = hb_reserve(l)) < 0)
    goto out;
  size_t slot = l->free_slots[l->nfree - 1];
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
  l->nfree--;
  l->nclients++;
  if (c->heartbeat > 0) {
    hb_push(l, c, heartbeat_due(c)); /* room reserved above */
    loop_wake(l); /* it may sleep with no or a later timeout */
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
void client_loop_detach(ct_net_client *c) {
  struct loop *l = c->loop;
  pthread_mutex_lock(&g_mu);
  if (l->pid != getpid()) { /* inherited across fork(): not served here */
    pthread_mutex_unlock(&g_mu);
    c->loop = NULL;
    return;
  }
  bool self = pthread_equal(pthread_self(), l->thread);
  epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL); /* ENOENT if gone */
  size_t slot = (size_t)(c->key & 0xffffffffu);
  l->slots[slot] = NULL;
  l->free_slots[l->nfree++] = slot; /* capacity nslots: cannot overflow */
  hb_remove(l, c);
  /* Whoever takes the count to zero stops the loop, even if it has yet
   * to wait below: another free may then run on the loop thread. */
  bool last = --l->nclients == 0;
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

