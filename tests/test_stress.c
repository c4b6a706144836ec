/* SPDX-License-Identifier: MIT
 *
 * test_stress.c -- a bounded-time random stress of the core.  N worker
 * threads do random operations for M seconds -- new, child, chain, N-ary
 * chain, trigger (plain and with a reason), deadlines, timed waits and
 * sleeps, descriptors, callback registration and unregistration, ref and
 * unref -- while K waiter threads block with no deadline on random tokens,
 * and the deadline thread fires tokens of its own accord.
 *
 *   test_stress [--threads N] [--seconds S] [--seed X]
 *   (or CT_STRESS_THREADS, CT_STRESS_SECONDS, CT_STRESS_SEED)
 *
 * Defaults: 4 workers (plus 2 waiters) for 2 s, the CI setting.  The
 * release check is documented in docs/hardening.md:
 *   CT_STRESS_THREADS=16 CT_STRESS_SECONDS=600 ./test_stress
 *
 * Design notes:
 *
 *  Epochs.  The run is cut into epochs of at most EPOCH_MS or MAXREC
 *  tokens.  Within an epoch every token created is recorded (struct rec:
 *  its parents, the registry's reference, flags saying whether a trigger
 *  or a deadline was aimed at it).  At the end of an epoch the workers
 *  park, every deadline that was set has fired and finished (a tracking
 *  callback, registered *before* the deadline is set, runs at the end of
 *  whichever trigger reaches the token first), and the main thread checks
 *  the invariants at this quiescent point:
 *    I1 every child of a triggered token is triggered (so, by induction,
 *       every descendant is);
 *    I2 a triggered token's triggered_token is itself -- and then a
 *       trigger or a deadline really was aimed at it, with a matching
 *       reason -- or the triggered_token of one of its triggered parents
 *       (so, by induction, an ancestor that really was triggered), with
 *       the same reason and detail;
 *  Then it triggers the roots of everything still reachable, and checks:
 *    I3 every live token is triggered (propagation reached it);
 *    I4 every waiter returns (a waiter still blocked fails the test after
 *       a generous failure-only deadline);
 *    I5 every callback still registered has run exactly once; every one
 *       unregistered with result 0 never ran, and with result 1 ran once.
 *  During the epoch the workers check what holds at any time: a wait on a
 *  token already triggered returns at once and says so, a token is
 *  triggered when ct_token_trigger() returns, the first trigger names
 *  the token itself, a callback runs on a triggered token and only once,
 *  a direct child that existed before a trigger started is triggered when
 *  it returns.  (Not deeper descendants: an intermediate token may have
 *  been claimed by a concurrent trigger still propagating.)
 *
 *  Lifetimes.  A rec's mutex guards the registry's reference; a worker
 *  takes a reference of its own under it before using a token, so the
 *  "release" operation may drop the registry's reference (and free the
 *  token) at any time.  A chained token keeps its parents alive, so a
 *  rec's raw pointer may be used for the ancestors of a token known to be
 *  alive.
 *
 *  Failures found by other threads are counted and the first message is
 *  kept; the main thread fails the test with it.
 */
#include "test_util.h"

#include <poll.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "canceltoken_os.h"
#include <time.h>
#include <unistd.h>

enum {
  MAXREC = 2048,
  MAXEDGE = 4 * MAXREC,
  MAXPAR = 4,
  EPOCH_MS = 100,
  FD_RECS = 64,   /* only the first records get descriptors: bounded fds */
  MAXTHREADS = 64
};
#define FAIL_NS (INT64_C(60) * 1000 * MS) /* failure-only deadline */

static int cfg_threads = 4, cfg_waiters = 2;
static double cfg_seconds = 2;
static unsigned cfg_seed;

/* ---- failures from any thread ---- */

static _Atomic int nfail;
static char first_fail[256];
static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;

#define BAD(...)                                                              \
  do {                                                                        \
    if (atomic_fetch_add(&nfail, 1) == 0) {                                   \
      pthread_mutex_lock(&fail_mu);                                           \
      snprintf(first_fail, sizeof first_fail, __VA_ARGS__);                   \
      pthread_mutex_unlock(&fail_mu);                                         \
    }                                                                         \
  } while (0)

/* ---- the registry of one epoch ---- */

struct rec {
  pthread_mutex_t mu; /* guards t */
  ct_token *t;        /* the registry's reference; NULL once released */
  ct_token *ptr;      /* the same pointer, kept after release */
  int np, par[MAXPAR];
  uint64_t done_seq;      /* creation returned before this point */
  _Atomic int child_head; /* edges to children, -1: none */
  _Atomic bool direct;    /* a trigger was aimed at it (set before) */
  _Atomic bool deadline;  /* a deadline was aimed at it (set before) */
  _Atomic bool hasfd;     /* ct_token_fd() was called on it */
  _Atomic bool ready;     /* filled in (release) */
};
struct edge {
  int child, next;
};

static struct rec recs[MAXREC];
static struct edge edges[MAXEDGE];
static _Atomic int nrec, nedge;
static _Atomic uint64_t seq;
static _Atomic int epoch_stop;
static ct_token *epoch_full; /* triggered when the registry is full */

/* ---- callbacks ---- */

struct reg {
  ct_callback cb;
  ct_token *t; /* borrowed: the registration's own reference keeps it */
  int rec;
  _Atomic int ran;
  int result; /* of unregister; -1 while registered */
  bool tracking;
  bool holds; /* register returned 0: the registration holds a reference */
  struct reg *next;
};

static _Atomic int dl_pending; /* tracking callbacks not yet run */
static _Atomic int64_t dl_max;  /* the latest deadline set this epoch */
static pthread_mutex_t dl_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t dl_cv;

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

enum op {
  OP_NEW, OP_CHILD, OP_CHAIN, OP_CHAIN_N, OP_TRIGGER, OP_DEADLINE, OP_WAIT,
  OP_FD, OP_REGISTER, OP_UNREGISTER, OP_RELEASE, OP_NAME, OP_DEEP, OP_FORK,
  OP_SIGNAL_DEADLINE, NOPS
};
static const char *op_names[NOPS] = {
    "new", "child", "chain", "chain_n", "trigger", "deadline", "wait",
    "fd", "register", "unregister", "unref", "name", "deep", "fork",
    "signal+deadline"};
/* Weights, relative (an operation is drawn with probability weight / sum). */
static const int op_weight[NOPS] = {8, 10, 10, 6, 9, 5, 12, 2, 14, 10, 8, 6, 2, 1, 2};

struct worker {
  pthread_t th;
  uint64_t rng;
  uint64_t ops[NOPS];
  struct reg *regs; /* registered, or unregistered and kept to check */
  struct reg *done; /* unregistered: checked and freed at the epoch end */
  /* waiters */
  pthread_mutex_t wm; /* guards cur */
  ct_token *cur;      /* the waiter's reference while it waits */
  int cur_rec;
  uint64_t waits;
};
static struct worker workers[MAXTHREADS], waiters[MAXTHREADS];

/* Parking: threads wait here between epochs. */
static pthread_mutex_t park_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cv, parked_cv;
static int parked_workers, parked_waiters, epoch_no; /* under park_mu */
static _Atomic int quit;

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

static void *worker_main(void *arg) {
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
static void *waiter_main(void *arg) {
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

/* ---- the main thread's checks ---- */

static void wait_parked(int *counter, int n, const char *what) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += FAIL_NS / 1000000000;
  pthread_mutex_lock(&park_mu);
  while (*counter < n)
    if (pthread_cond_timedwait(&parked_cv, &park_mu, &ts) != 0)
      break;
  int got = *counter;
  pthread_mutex_unlock(&park_mu);
  if (got < n)
    fail_msg("%s: %d of %d threads still running after 60 s", what, n - got,
             n);
}

static void wait_deadlines(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += FAIL_NS / 1000000000;
  pthread_mutex_lock(&dl_mu);
  while (atomic_load(&dl_pending) > 0)
    if (pthread_cond_timedwait(&dl_cv, &dl_mu, &ts) != 0)
      break;
  pthread_mutex_unlock(&dl_mu);
  if (atomic_load(&dl_pending) > 0)
    fail_msg("%d deadlines have not fired after 60 s",
             atomic_load(&dl_pending));
}

static _Atomic int fence_ran;
static void fence_cb(ct_token *t, void *arg) {
  (void)t;
  (void)arg;
  atomic_store(&fence_ran, 1);
  pthread_mutex_lock(&dl_mu);
  pthread_cond_broadcast(&dl_cv);
  pthread_mutex_unlock(&dl_mu);
}

/* Every tracking callback has run, but a callback runs before the trigger
 * that runs it has reached the token's grandchildren: the deadline thread
 * may still be propagating.  It serves deadlines one at a time in order,
 * so once a token whose deadline is later than every other one has fired
 * there, every earlier trigger of that thread has returned. */
static void deadline_fence(void) {
  for (int64_t extra = MS;; extra *= 2) {
    int64_t now = ct_now(), m = atomic_load(&dl_max);
    ct_token *f;
    ct_callback cb = {0};
    ASSERT_OK(ct_token_new(&f, "fence"));
    atomic_store(&fence_ran, 0);
    ASSERT_OK(ct_callback_register(&cb, f, fence_cb, NULL));
    int r = ct_token_set_deadline(f, (m > now ? m : now) + extra);
    assert_true(r == 0 || r == 1);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += FAIL_NS / 1000000000;
    pthread_mutex_lock(&dl_mu);
    while (!atomic_load(&fence_ran))
      if (pthread_cond_timedwait(&dl_cv, &dl_mu, &ts) != 0)
        break;
    pthread_mutex_unlock(&dl_mu);
    if (!atomic_load(&fence_ran))
      fail_msg("the deadline fence did not fire after 60 s");
    ct_callback_unregister(&cb);
    ct_token_unref(f);
    if (r == 0)
      return; /* fired on the deadline thread: the fence holds */
  }
}

static bool alive(int i) { return recs[i].t != NULL; } /* main, quiescent */

/* I1 and I2 on every live record (and their ancestors through them). */
static uint64_t check_quiescent(void) {
  uint64_t checked = 0;
  int n = atomic_load(&nrec);
  if (n > MAXREC)
    n = MAXREC;
  for (int i = 0; i < n; i++) {
    struct rec *r = &recs[i];
    if (!atomic_load(&r->ready) || !alive(i))
      continue;
    checked++;
    bool trig = ct_token_triggered(r->t);
    if (atomic_load(&r->hasfd)) {
      struct pollfd p = {ct_token_fd(r->t), POLLIN, 0};
      if ((poll(&p, 1, 0) == 1) != trig)
        fail_msg("token %d: triggered %d but its descriptor is%s readable",
                 i, trig, trig ? " not" : "");
    }
    for (int k = 0; k < r->np; k++)
      if (ct_token_triggered(recs[r->par[k]].ptr) && !trig)
        fail_msg("I1: token %d has a triggered parent %d but is not "
                 "triggered", i, r->par[k]);
    if (!trig)
      continue;
    ct_token *x = ct_token_triggered_token(r->t);
    int d = 0, dx = 0;
    ct_reason why = ct_token_reason(r->t, &d);
    if (x == r->t) {
      bool ok = why == CT_REASON_DEADLINE ? atomic_load(&r->deadline)
                                          : atomic_load(&r->direct);
      if (!ok)
        fail_msg("I2: token %d names itself as triggered (reason %d) but "
                 "nothing was aimed at it", i, (int)why);
      continue;
    }
    bool found = false;
    for (int k = 0; k < r->np && !found; k++) {
      ct_token *p = recs[r->par[k]].ptr;
      found = ct_token_triggered(p) && ct_token_triggered_token(p) == x;
    }
    if (!found)
      fail_msg("I2: token %d names a triggered_token that none of its "
               "triggered parents names", i);
    if (!ct_token_triggered(x) || ct_token_triggered_token(x) != x)
      fail_msg("I2: token %d's triggered_token was not itself triggered", i);
    if (ct_token_reason(x, &dx) != why || dx != d)
      fail_msg("I2: token %d's reason differs from its triggered_token's", i);
  }
  return checked;
}

/* Mark the ancestors of record i (and i) in `mark`. */
static void mark_ancestors(int i, bool *mark) {
  int stack[MAXREC], sp = 0;
  if (mark[i])
    return;
  mark[i] = true;
  stack[sp++] = i;
  while (sp) {
    struct rec *r = &recs[stack[--sp]];
    for (int k = 0; k < r->np; k++)
      if (!mark[r->par[k]]) {
        mark[r->par[k]] = true;
        stack[sp++] = r->par[k];
      }
  }
}

struct totals {
  uint64_t epochs, tokens, checked, cb_ran, cb_unreg0, cb_unreg1, deadlines,
      waits;
};

static void end_epoch(struct totals *tot) {
  static bool mark[MAXREC];
  int nw = cfg_threads, nwt = cfg_waiters;
  atomic_store(&epoch_stop, 1);
  wait_parked(&parked_workers, nw, "workers");
  wait_deadlines();
  deadline_fence();
  tot->checked += check_quiescent();
  /* The tokens the waiters wait on, with a reference of ours. */
  ct_token *held[MAXTHREADS];
  int nheld = 0;
  memset(mark, 0, sizeof mark);
  for (int k = 0; k < nwt; k++) {
    pthread_mutex_lock(&waiters[k].wm);
    if (waiters[k].cur) {
      held[nheld++] = ct_token_ref(waiters[k].cur);
      mark_ancestors(waiters[k].cur_rec, mark);
    }
    pthread_mutex_unlock(&waiters[k].wm);
  }
  int n = atomic_load(&nrec);
  if (n > MAXREC)
    n = MAXREC;
  for (int i = 0; i < n; i++)
    if (atomic_load(&recs[i].ready) && alive(i))
      mark_ancestors(i, mark);
  for (int k = 0; k < nw; k++)
    for (struct reg *g = workers[k].regs; g; g = g->next)
      if (g->holds) /* else the token may be gone */
        mark_ancestors(g->rec, mark);
  /* Trigger the roots only: propagation must reach everything else. */
  for (int i = 0; i < n; i++)
    if (mark[i] && recs[i].np == 0) {
      atomic_store(&recs[i].direct, true);
      ct_token_trigger(recs[i].ptr);
    }
  /* I3 */
  for (int i = 0; i < n; i++)
    if (mark[i] && !ct_token_triggered(recs[i].ptr))
      fail_msg("I3: token %d is not triggered after all its roots were", i);
  tot->checked += check_quiescent();
  /* I4: every waiter returns and parks. */
  wait_parked(&parked_waiters, nwt,
              "waiters (blocked after their token was triggered)");
  for (int k = 0; k < nheld; k++)
    ct_token_unref(held[k]);
  /* I5 */
  for (int k = 0; k < nw; k++) {
    struct worker *w = &workers[k];
    while (w->regs) {
      struct reg *g = w->regs;
      w->regs = g->next;
      if (atomic_load(&g->ran) != 1)
        fail_msg("I5: a registered callback ran %d times",
                 atomic_load(&g->ran));
      int r = ct_callback_unregister(&g->cb);
      if (r != 1)
        fail_msg("I5: unregister after the run returned %d", r);
      if (g->tracking)
        tot->deadlines++;
      else
        tot->cb_ran++;
      free(g);
    }
    while (w->done) {
      struct reg *g = w->done;
      w->done = g->next;
      if (atomic_load(&g->ran) != g->result)
        fail_msg("I5: unregister returned %d but the callback ran %d times",
                 g->result, atomic_load(&g->ran));
      if (g->result == 0)
        tot->cb_unreg0++;
      else
        tot->cb_unreg1++;
      free(g);
    }
  }
  /* Drop the registry's references. */
  for (int i = 0; i < n; i++) {
    ct_token_unref(recs[i].t);
    recs[i].t = recs[i].ptr = NULL;
  }
  tot->tokens += (uint64_t)n;
  tot->epochs++;
  if (atomic_load(&nfail))
    fail_msg("%d failure(s); the first: %s", atomic_load(&nfail), first_fail);
}

static void begin_epoch(void) {
  for (int i = 0; i < MAXREC; i++) {
    struct rec *r = &recs[i];
    r->t = r->ptr = NULL;
    r->np = 0;
    r->done_seq = 0;
    atomic_store(&r->child_head, -1);
    atomic_store(&r->direct, false);
    atomic_store(&r->deadline, false);
    atomic_store(&r->hasfd, false);
    atomic_store(&r->ready, false);
  }
  atomic_store(&nrec, 0);
  atomic_store(&nedge, 0);
  atomic_store(&dl_max, 0);
  atomic_store(&epoch_stop, 0);
  ASSERT_OK(ct_token_new(&epoch_full, "epoch-full"));
  pthread_mutex_lock(&park_mu);
  parked_workers = parked_waiters = 0;
  epoch_no++;
  pthread_cond_broadcast(&park_cv);
  pthread_mutex_unlock(&park_mu);
}

static void test_random_stress(void **state) {
  (void)state;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&park_cv, &ca);
  pthread_cond_init(&parked_cv, &ca);
  pthread_cond_init(&dl_cv, &ca);
  for (int i = 0; i < MAXREC; i++)
    pthread_mutex_init(&recs[i].mu, NULL);
  for (int k = 0; k < cfg_threads; k++) {
    workers[k].rng = (uint64_t)cfg_seed * 0x9e3779b97f4a7c15ull + 2 * k + 1;
    assert_int_equal(pthread_create(&workers[k].th, NULL, worker_main,
                                    &workers[k]), 0);
  }
  for (int k = 0; k < cfg_waiters; k++) {
    waiters[k].rng = (uint64_t)cfg_seed * 0xbf58476d1ce4e5b9ull + 2 * k + 1;
    pthread_mutex_init(&waiters[k].wm, NULL);
    assert_int_equal(pthread_create(&waiters[k].th, NULL, waiter_main,
                                    &waiters[k]), 0);
  }
  wait_parked(&parked_workers, cfg_threads, "start");
  wait_parked(&parked_waiters, cfg_waiters, "start");
  struct totals tot = {0};
  int64_t t0 = ct_now(),
          end = t0 + (int64_t)(cfg_seconds * 1e9);
  while (ct_now() < end) {
    begin_epoch();
    int64_t slice = ct_deadline_after(EPOCH_MS * MS);
    ct_token_wait(epoch_full, slice < end ? slice : end); /* pacing only */
    end_epoch(&tot);
    ct_token_unref(epoch_full);
  }
  double secs = (double)(ct_now() - t0) / 1e9;
  pthread_mutex_lock(&park_mu);
  atomic_store(&quit, 1);
  pthread_cond_broadcast(&park_cv);
  pthread_mutex_unlock(&park_mu);
  uint64_t ops[NOPS] = {0}, total = 0;
  for (int k = 0; k < cfg_threads; k++) {
    pthread_join(workers[k].th, NULL);
    for (int o = 0; o < NOPS; o++)
      ops[o] += workers[k].ops[o];
  }
  for (int k = 0; k < cfg_waiters; k++) {
    pthread_join(waiters[k].th, NULL);
    tot.waits += waiters[k].waits;
  }
  for (int o = 0; o < NOPS; o++)
    total += ops[o];
  print_message("stress: %d workers + %d waiters, %.1f s, seed %u: %llu "
                "operations in %llu epochs, %llu tokens\n",
                cfg_threads, cfg_waiters, secs, cfg_seed,
                (unsigned long long)total, (unsigned long long)tot.epochs,
                (unsigned long long)tot.tokens);
  print_message("stress: ");
  for (int o = 0; o < NOPS; o++)
    print_message("%s=%llu ", op_names[o], (unsigned long long)ops[o]);
  print_message("\nstress: %llu quiescent token checks; callbacks: %llu ran "
                "once, %llu unregistered before running, %llu unregistered "
                "after; %llu deadlines fired; %llu blocking waits woken\n",
                (unsigned long long)tot.checked,
                (unsigned long long)tot.cb_ran,
                (unsigned long long)tot.cb_unreg0,
                (unsigned long long)tot.cb_unreg1,
                (unsigned long long)tot.deadlines,
                (unsigned long long)tot.waits);
  assert_int_equal(atomic_load(&nfail), 0);
  assert_true(total > 0);
}

static double arg_num(int argc, char **argv, const char *flag,
                      const char *env, double dflt) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], flag) == 0)
      return atof(argv[i + 1]);
  const char *s = getenv(env);
  return s && *s ? atof(s) : dflt;
}

int main(int argc, char **argv) {
  cfg_threads = (int)arg_num(argc, argv, "--threads", "CT_STRESS_THREADS", 4);
  cfg_seconds = arg_num(argc, argv, "--seconds", "CT_STRESS_SECONDS", 2);
  cfg_seed = (unsigned)arg_num(argc, argv, "--seed", "CT_STRESS_SEED",
                               (double)(unsigned)time(NULL));
  if (cfg_threads < 1)
    cfg_threads = 1;
  if (cfg_threads > MAXTHREADS)
    cfg_threads = MAXTHREADS;
  cfg_waiters = cfg_threads / 2 > 0 ? cfg_threads / 2 : 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_stress),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
