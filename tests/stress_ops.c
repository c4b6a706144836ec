/* SPDX-License-Identifier: MIT
 *
 * stress_ops.c -- the random operations of the stress (test_stress.c): what
 * each worker thread draws and does (create, chain, trigger, deadlines,
 * waits, descriptors, callbacks, unref, names, deep descendants, fork,
 * signals), and the waiter threads.  The shared state is declared in
 * stress.h; the design notes, and the checks each operation makes at once
 * ("During the epoch"), are at the top of test_stress.c.
 */
#include "stress.h"


#include <poll.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "canceltoken_os.h"
#include <time.h>
#include <unistd.h>

/* ---- callbacks ---- */

static void user_cb(ct_token *t, void *arg) {
  struct reg *g = arg;
  if (!ct_token_triggered(t))
    BAD("a callback ran on a token that is not triggered");
  if (atomic_fetch_add(&g->ran, 1) != 0)
    BAD("a callback ran twice");
}

static void tracking_cb(ct_token *t, void *arg) {
  user_cb(t, arg);
  if (atomic_fetch_sub(&dl_pending, 1) == 1) {
    pthread_mutex_lock(&dl_mu);
    pthread_cond_broadcast(&dl_cv);
    pthread_mutex_unlock(&dl_mu);
  }
}

/* ---- per-thread state ---- */

const char *const op_names[NOPS] = {
    "new", "child", "chain", "chain_n", "trigger", "deadline", "wait",
    "fd", "register", "unregister", "unref", "name", "deep", "fork",
    "signal+deadline"};
/* Weights, relative (an operation is drawn with probability weight / sum). */
static const int op_weight[NOPS] = {8, 10, 10, 6, 9, 5, 12, 2, 14, 10, 8, 6, 2, 1, 2};

static void park(int *seen_epoch, int *counter) {
  pthread_mutex_lock(&park_mu);
  (*counter)++;
  pthread_cond_broadcast(&parked_cv);
  while (epoch_no == *seen_epoch && !atomic_load(&quit))
    pthread_cond_wait(&park_cv, &park_mu);
  *seen_epoch = epoch_no;
  pthread_mutex_unlock(&park_mu);
}

static uint64_t rnd(uint64_t *s) { /* xorshift64* */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

/* A new reference on a random live token, and its record; NULL if the
 * pick found none. */
static ct_token *pick(uint64_t *rng, int *idx) {
  int n = atomic_load(&nrec);
  if (n > MAXREC)
    n = MAXREC;
  if (n == 0)
    return NULL;
  int i = (int)(rnd(rng) % (uint64_t)n);
  /* acquire: pairs with the release store that publishes the record */
  if (!atomic_load_explicit(&recs[i].ready, memory_order_acquire))
    return NULL;
  pthread_mutex_lock(&recs[i].mu);
  ct_token *t = ct_token_ref(recs[i].t);
  pthread_mutex_unlock(&recs[i].mu);
  *idx = i;
  return t;
}

static int reserve(void) {
  int i = atomic_fetch_add(&nrec, 1);
  if (i >= MAXREC) {
    ct_token_trigger(epoch_full);
    return -1;
  }
  return i;
}

/* Fill record i for t (a new reference given to the registry). */
static void publish(int i, ct_token *t, const int *par, int np) {
  struct rec *r = &recs[i];
  r->t = r->ptr = t;
  r->np = np;
  for (int k = 0; k < np; k++)
    r->par[k] = par[k];
  r->done_seq = atomic_fetch_add(&seq, 1);
  atomic_store_explicit(&r->ready, true, memory_order_release);
  for (int k = 0; k < np; k++) {
    bool dup = false;
    for (int j = 0; j < k; j++)
      dup |= par[j] == par[k];
    if (dup)
      continue;
    int e = atomic_fetch_add(&nedge, 1);
    if (e >= MAXEDGE)
      continue;
    edges[e].child = i;
    int head = atomic_load(&recs[par[k]].child_head);
    do
      edges[e].next = head;
    while (!atomic_compare_exchange_weak(&recs[par[k]].child_head, &head, e));
  }
}

static void do_create(struct worker *w, enum op op) {
  ct_token *ps[MAXPAR] = {0};
  int pi[MAXPAR], np = 0;
  int want = op == OP_NEW     ? 0
             : op == OP_CHILD ? 1
             : op == OP_CHAIN ? 2
                              : 1 + (int)(rnd(&w->rng) % MAXPAR);
  for (int k = 0; k < want; k++) {
    if (k > 0 && op == OP_CHAIN_N && rnd(&w->rng) % 4 == 0) {
      ps[k] = ct_token_ref(ps[0]); /* a parent may appear twice */
      pi[k] = pi[0];
    } else if (!(ps[k] = pick(&w->rng, &pi[k]))) {
      break;
    }
    np++;
  }
  if (np < want)
    goto out;
  int i = reserve();
  if (i < 0)
    goto out;
  ct_token *t = NULL;
  int r;
  switch (op) {
  case OP_NEW:
    r = rnd(&w->rng) % 4 ? ct_token_new(&t, "r")
                         /* a far deadline: cancelled by the last unref */
                         : ct_token_new_deadline(&t, "rd",
                                                 ct_deadline_after(3600 * 1000 * MS));
    break;
  case OP_CHILD:
    r = ct_token_new_child(&t, "c", ps[0]);
    break;
  case OP_CHAIN:
    r = ct_token_chain(&t, ps[0], ps[1]);
    break;
  default:
    r = ct_token_chain_n(&t, ps, (size_t)np);
  }
  if (r != 0) {
    BAD("creating a token (%s) failed: %s", op_names[op], ct_err_name(r));
    goto out;
  }
  publish(i, t, pi, np);
out:
  for (int k = 0; k < np; k++)
    ct_token_unref(ps[k]);
}

static void do_trigger(struct worker *w) {
  int i;
  ct_token *t = pick(&w->rng, &i);
  if (!t)
    return;
  uint64_t start = atomic_load(&seq);
  atomic_store(&recs[i].direct, true);
  int detail = 0, r;
  ct_reason reason = CT_REASON_TRIGGER;
  if (rnd(&w->rng) % 2) {
    r = ct_token_trigger(t);
  } else {
    reason = (ct_reason)(CT_REASON_USER + (int)(rnd(&w->rng) % 8));
    detail = (int)(rnd(&w->rng) % 256);
    r = ct_token_trigger_reason(t, reason, detail);
  }
  if (r != 0 && r != 1)
    BAD("trigger returned %d", r);
  if (!ct_token_triggered(t))
    BAD("a token is not triggered when ct_token_trigger() returns");
  if (r == 1) {
    int d = -1;
    if (ct_token_triggered_token(t) != t)
      BAD("the first trigger does not name the token itself");
    if (ct_token_reason(t, &d) != reason || d != detail)
      BAD("the first trigger's reason is not the one given");
  }
  /* If this call won, the direct children that existed before it started
   * are triggered when it returns.  (If it did not, the winner may still be
   * propagating; and deeper descendants may have been claimed by another
   * trigger still propagating: both are checked at the quiescent points.) */
  for (int e = r == 1 ? atomic_load(&recs[i].child_head) : -1; e >= 0;
       e = edges[e].next) {
    struct rec *c = &recs[edges[e].child];
    if (c->done_seq >= start)
      continue;
    pthread_mutex_lock(&c->mu);
    if (c->t && !ct_token_triggered(c->t))
      BAD("a child is not triggered when its parent's trigger returns");
    pthread_mutex_unlock(&c->mu);
  }
  ct_token_unref(t);
}

static void do_deadline(struct worker *w) {
  int i;
  ct_token *t = pick(&w->rng, &i);
  if (!t)
    return;
  /* The tracking callback first: it runs at the end of whichever trigger
   * reaches t first, the deadline thread's included. */
  struct reg *g = calloc(1, sizeof *g);
  g->t = t;
  g->rec = i;
  g->result = -1;
  g->tracking = true;
  atomic_fetch_add(&dl_pending, 1);
  int r = ct_callback_register(&g->cb, t, tracking_cb, g);
  if (r < 0)
    BAD("register (tracking): %s", ct_err_name(r));
  g->holds = r == 0;
  g->next = w->regs;
  w->regs = g;
  atomic_store(&recs[i].deadline, true);
  int64_t when = ct_deadline_after((int64_t)(rnd(&w->rng) % 2000000));
  int64_t m = atomic_load(&dl_max);
  while (m < when && !atomic_compare_exchange_weak(&dl_max, &m, when))
    ;
  r = ct_token_set_deadline(t, when);
  if (r != 0 && r != 1)
    BAD("set_deadline: %s", ct_err_name(r));
  ct_token_unref(t);
}

static void do_wait(struct worker *w) {
  int i;
  ct_token *t = pick(&w->rng, &i);
  if (!t)
    return;
  bool before = ct_token_triggered(t);
  uint64_t x = rnd(&w->rng);
  int64_t dl = x % 4 == 0 ? 0 : ct_deadline_after((int64_t)(x % 1000000));
  int r;
  switch ((x >> 8) % 3) {
  case 0:
    r = ct_token_wait(t, dl);
    if (r == 0 && !ct_token_triggered(t))
      BAD("ct_token_wait returned 0 on a token that is not triggered");
    if (before && r != 0)
      BAD("ct_token_wait on a triggered token returned %s", ct_err_name(r));
    if (r != 0 && r != -ETIMEDOUT)
      BAD("ct_token_wait returned %s", ct_err_name(r));
    break;
  case 1:
    r = ct_sleep(t, dl);
    if (r == -ECANCELED && !ct_token_triggered(t))
      BAD("ct_sleep was cancelled by a token that is not triggered");
    if (before && r != -ECANCELED)
      BAD("ct_sleep on a triggered token returned %s", ct_err_name(r));
    break;
  default:
    r = ct_poll(t, NULL, 0, dl);
    if (before && r != -ECANCELED)
      BAD("ct_poll on a triggered token returned %s", ct_err_name(r));
    if (r != -ECANCELED && r != -ETIMEDOUT)
      BAD("ct_poll returned %s", ct_err_name(r));
  }
  ct_token_unref(t);
}

static void do_fd(struct worker *w) {
  int i;
  ct_token *t = pick(&w->rng, &i);
  if (!t)
    return;
  if (i < FD_RECS) {
    /* Readable implies triggered at any time; triggered implies readable
     * only once the trigger that reached it has returned (checked at the
     * quiescent points: a trigger in another thread may have claimed the
     * token and not yet reached its descriptor). */
    atomic_store(&recs[i].hasfd, true);
    int fd = ct_token_fd(t);
    if (fd < 0) {
      BAD("ct_token_fd: %s", ct_err_name(fd));
    } else {
      struct pollfd p = {fd, POLLIN, 0};
      if (poll(&p, 1, 0) == 1 && !ct_token_triggered(t))
        BAD("a token's descriptor is readable before it is triggered");
    }
  }
  ct_token_unref(t);
}

/* fork and signals with deadlines (issue 13): do_fork(), do_signal_deadline() */
#include "stress_os.h"

static void do_register(struct worker *w) {
  int i;
  ct_token *t = pick(&w->rng, &i);
  if (!t)
    return;
  struct reg *g = calloc(1, sizeof *g);
  g->t = t;
  g->rec = i;
  g->result = -1;
  bool before = ct_token_triggered(t);
  int r = ct_callback_register(&g->cb, t, user_cb, g);
  g->holds = r == 0;
  if (r == 1 && atomic_load(&g->ran) != 1)
    BAD("register returned 1 but the callback did not run");
  if (r == 0 && before)
    BAD("register on a triggered token returned 0");
  if (r < 0) {
    BAD("register: %s", ct_err_name(r));
    free(g);
  } else {
    g->next = w->regs;
    w->regs = g;
  }
  ct_token_unref(t);
}

static void do_unregister(struct worker *w) {
  /* the most recent registration still registered, if any */
  for (struct reg **pp = &w->regs; *pp; pp = &(*pp)->next) {
    struct reg *g = *pp;
    if (g->tracking)
      continue;
    int r = ct_callback_unregister(&g->cb);
    int ran = atomic_load(&g->ran);
    if (r == 0 && ran != 0)
      BAD("unregister returned 0 but the callback ran");
    if (r == 1 && ran != 1)
      BAD("unregister returned 1 but the callback ran %d times", ran);
    if (r != 0 && r != 1)
      BAD("unregister: %s", ct_err_name(r));
    g->result = r;
    *pp = g->next;
    g->next = w->done;
    w->done = g;
    return;
  }
}

static void do_release(struct worker *w) {
  int n = atomic_load(&nrec);
  if (n > MAXREC)
    n = MAXREC;
  if (n == 0)
    return;
  int i = (int)(rnd(&w->rng) % (uint64_t)n);
  if (!atomic_load_explicit(&recs[i].ready, memory_order_acquire))
    return;
  pthread_mutex_lock(&recs[i].mu);
  ct_token *t = recs[i].t;
  recs[i].t = NULL;
  pthread_mutex_unlock(&recs[i].mu);
  ct_token_unref(t); /* may free it: the registry's was perhaps the last */
}

static void do_name(struct worker *w) {
  int i;
  ct_token *t = pick(&w->rng, &i);
  if (!t)
    return;
  const char *name = ct_token_name(t);
  if (!name || !*name)
    BAD("a token has no name");
  if (ct_token_triggered(t)) {
    char buf[64];
    if (ct_token_message(t, buf, sizeof buf) < 0)
      BAD("ct_token_message failed on a triggered token");
  }
  ct_token_unref(t);
}

/* ---- deep descendants with waiters and callbacks (issue 13, item 2) ----
 * A private chain of 8..256 tokens (named children and unnamed chain_n(1)
 * links) under a random token of the registry, with a descriptor half way
 * down, callbacks at random depths and a thread blocked on the leaf.  The
 * chain is reachable only through its top, so whichever thread claims the
 * top (this one's trigger of it, or any trigger of an ancestor, or the
 * deadline thread) claims the whole chain: every callback must then find
 * every token below it triggered and the descriptor readable, and the
 * callback on the top waits for the leaf's waiter to have returned -- the
 * shutdown callback of the issue, which waited for ever. */
enum { DEEP_MIN = 8, DEEP_MAX = 256, DEEP_CBS = 4 };
struct deep {
  ct_token *tok[DEEP_MAX];
  int n, fd_depth, fd;
  _Atomic int waiter_done;
};
struct deep_cb {
  ct_callback cb;
  struct deep *d;
  int depth;
  _Atomic int ran;
  _Atomic int registering; /* inside ct_callback_register(): a run now is
                              the inline run, on a top that may still be
                              propagating in another thread (see the
                              header): nothing to check about below */
};

static bool stress_fd_readable(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void deep_cb(ct_token *t, void *arg) {
  struct deep_cb *c = arg;
  struct deep *d = c->d;
  if (atomic_fetch_add(&c->ran, 1) != 0)
    BAD("deep: a callback ran twice");
  if (t != d->tok[c->depth])
    BAD("deep: a callback ran for another token");
  if (atomic_load(&c->registering))
    return;
  for (int k = c->depth; k < d->n; k++)
    if (!ct_token_triggered(d->tok[k])) {
      BAD("deep: a callback at depth %d ran before depth %d was triggered",
          c->depth, k);
      return;
    }
  if (d->fd_depth >= c->depth && !stress_fd_readable(d->fd))
    BAD("deep: a callback ran before a descriptor below was readable");
  if (c->depth == 0)
    while (!atomic_load(&d->waiter_done))
      sched_yield(); /* woken already: it only has to be scheduled */
}

static void *deep_waiter(void *arg) {
  struct deep *d = arg;
  if (ct_token_wait(d->tok[d->n - 1], CT_FOREVER) != 0)
    BAD("deep: the leaf's wait failed");
  atomic_store(&d->waiter_done, 1);
  return NULL;
}

static void do_deep(struct worker *w) {
  int i;
  ct_token *p = pick(&w->rng, &i);
  if (!p)
    return;
  struct deep *d = calloc(1, sizeof *d);
  struct deep_cb *cbs = calloc(DEEP_CBS, sizeof *cbs);
  if (!d || !cbs) {
    BAD("deep: out of memory");
    free(d);
    free(cbs);
    ct_token_unref(p);
    return;
  }
  d->n = DEEP_MIN + (int)(rnd(&w->rng) % (DEEP_MAX - DEEP_MIN + 1));
  ct_token *up = p;
  for (int k = 0; k < d->n; k++) {
    int r = rnd(&w->rng) % 4 == 0 ? ct_token_chain_n(&d->tok[k], &up, 1)
                                  : ct_token_new_child(&d->tok[k], "deep", up);
    if (r < 0) {
      BAD("deep: creation failed: %s", ct_err_name(r));
      d->n = k;
      break;
    }
    up = d->tok[k];
  }
  if (d->n < DEEP_MIN)
    goto out;
  d->fd_depth = d->n / 2;
  d->fd = ct_token_fd(d->tok[d->fd_depth]);
  if (d->fd < 0) {
    BAD("deep: ct_token_fd: %s", ct_err_name(d->fd));
    goto out;
  }
  pthread_t th;
  bool waiter = pthread_create(&th, NULL, deep_waiter, d) == 0;
  if (!waiter)
    atomic_store(&d->waiter_done, 1); /* out of threads: no waiter then */
  for (int c = 0; c < DEEP_CBS; c++) {
    cbs[c].d = d;
    cbs[c].depth = c == 0 ? 0 : (int)(rnd(&w->rng) % (uint64_t)d->n);
    atomic_store(&cbs[c].registering, 1);
    int r = ct_callback_register(&cbs[c].cb, d->tok[cbs[c].depth], deep_cb,
                                 &cbs[c]);
    atomic_store(&cbs[c].registering, 0);
    if (r < 0)
      BAD("deep: register: %s", ct_err_name(r));
  }
  /* Trigger the top; an ancestor's trigger may have claimed it already,
   * and may not have run the callbacks yet. */
  bool mine = ct_token_trigger(d->tok[0]) == 1;
  if (waiter)
    pthread_join(th, NULL);
  for (int c = 0; c < DEEP_CBS; c++) {
    /* Our trigger ran them all: 1.  Another thread's may still be running
     * them: 1 (it ran, perhaps waited for) or 0 (it never will). */
    int r = ct_callback_unregister(&cbs[c].cb);
    int ran = atomic_load(&cbs[c].ran);
    if (!(r == 1 && ran == 1) && !(!mine && r == 0 && ran == 0))
      BAD("deep: unregister returned %d, the callback ran %d times%s", r,
          ran, mine ? " after our trigger" : "");
  }
out:
  for (int k = d->n; k-- > 0;)
    ct_token_unref(d->tok[k]);
  ct_token_unref(p);
  free(cbs);
  free(d);
}

void *worker_main(void *arg) {
  struct worker *w = arg;
  int seen = 0;
  park(&seen, &parked_workers);
  while (!atomic_load(&quit)) {
    while (!atomic_load(&epoch_stop)) {
      int wsum = 0;
      for (int k = 0; k < NOPS; k++)
        wsum += op_weight[k];
      int x = (int)(rnd(&w->rng) % (uint64_t)wsum), op = 0;
      while (x >= op_weight[op])
        x -= op_weight[op++];
      switch (op) {
      case OP_NEW:
      case OP_CHILD:
      case OP_CHAIN:
      case OP_CHAIN_N:
        do_create(w, (enum op)op);
        break;
      case OP_TRIGGER:
        do_trigger(w);
        break;
      case OP_DEADLINE:
        do_deadline(w);
        break;
      case OP_WAIT:
        do_wait(w);
        break;
      case OP_FD:
        do_fd(w);
        break;
      case OP_REGISTER:
        do_register(w);
        break;
      case OP_UNREGISTER:
        do_unregister(w);
        break;
      case OP_RELEASE:
        do_release(w);
        break;
      case OP_DEEP:
        do_deep(w);
        break;
      case OP_FORK:
        do_fork(w);
        break;
      case OP_SIGNAL_DEADLINE:
        do_signal_deadline(w);
        break;
      default:
        do_name(w);
      }
      w->ops[op]++;
    }
    park(&seen, &parked_workers);
  }
  return NULL;
}

/* A waiter blocks with no deadline; the end of the epoch must wake it. */
void *waiter_main(void *arg) {
  struct worker *w = arg;
  int seen = 0;
  park(&seen, &parked_waiters);
  while (!atomic_load(&quit)) {
    for (;;) {
      int i;
      ct_token *t = pick(&w->rng, &i);
      if (!t) {
        if (atomic_load(&epoch_stop))
          break;
        sched_yield();
        continue;
      }
      /* Publish what we wait on, or see the stop: under wm, so that the
       * main thread, which sets the stop and then reads cur under wm,
       * either finds it or we do not wait. */
      pthread_mutex_lock(&w->wm);
      bool stop = atomic_load(&epoch_stop);
      if (!stop) {
        w->cur = t;
        w->cur_rec = i;
      }
      pthread_mutex_unlock(&w->wm);
      if (stop) {
        ct_token_unref(t);
        break;
      }
      int r = ct_token_wait(t, CT_FOREVER);
      if (r != 0 || !ct_token_triggered(t))
        BAD("a wait with no deadline returned %d on a token %s", r,
            ct_token_triggered(t) ? "triggered" : "not triggered");
      w->waits++;
      pthread_mutex_lock(&w->wm);
      w->cur = NULL;
      pthread_mutex_unlock(&w->wm);
      ct_token_unref(t);
    }
    park(&seen, &parked_waiters);
  }
  return NULL;
}
