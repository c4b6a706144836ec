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
 *
 *  Files.  This file is the main thread (epochs, the quiescent checks,
 *  main) and defines the shared state; stress_ops.c has the workers' and
 *  waiters' operations (with stress_os.h: fork and signals); stress.h
 *  declares what the two share.
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

static int cfg_threads = 4, cfg_waiters = 2;
static double cfg_seconds = 2;
static unsigned cfg_seed;

/* ---- the shared state (declared in stress.h) ---- */

_Atomic int nfail;
char first_fail[256];
pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;

struct rec recs[MAXREC];
struct edge edges[MAXEDGE];
_Atomic int nrec, nedge;
_Atomic uint64_t seq;
_Atomic int epoch_stop;
ct_token *epoch_full; /* triggered when the registry is full */

_Atomic int dl_pending;
_Atomic int64_t dl_max;
pthread_mutex_t dl_mu = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t dl_cv;

struct worker workers[MAXTHREADS], waiters[MAXTHREADS];
pthread_mutex_t park_mu = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t park_cv, parked_cv;
int parked_workers, parked_waiters, epoch_no;
_Atomic int quit;

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
