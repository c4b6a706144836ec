/* SPDX-License-Identifier: MIT */
/* ct_bench.c -- the libcanceltoken side of the benchmark suite: times the
 * workloads that cpp_bench.cpp times with C++20 <stop_token>, plus the raw
 * baselines (pthread condition variable, plain poll(2)) measured in the same
 * process, and prints key,unit,median,min,max,note lines (bench_util.h).
 * bench/run.py runs both programs and joins their results. */
#define _GNU_SOURCE
#include "canceltoken.h"

#include "bench_util.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

/* Fail loudly on an unexpected library error: a benchmark over a broken
 * call would report nonsense. */
#define CT_OK(expr)                                                           \
  do {                                                                        \
    int rc_ = (expr);                                                         \
    if (rc_ < 0) {                                                            \
      fprintf(stderr, "ct_bench: %s:%d: %s -> %s\n", __FILE__, __LINE__,      \
              #expr, ct_err_name(rc_));                                       \
      exit(2);                                                                \
    }                                                                         \
  } while (0)

static void progress(const char *what) {
  fprintf(stderr, "ct_bench: %s\n", what);
}

/* ---- 1. check cost ----------------------------------------------------- */

/* The measured loop.  noinline keeps it the same code for every token; the
 * barrier forces one load of the state word per iteration (see
 * BU_BARRIER).  The loop overhead (increment, compare, branch) is included
 * in the figure, exactly as in cpp_bench's loop. */
__attribute__((noinline)) static size_t check_loop(const ct_token *t,
                                                   size_t n) {
  size_t i, hits = 0;
  for (i = 0; i < n; i++) {
    if (ct_token_triggered(t))
      hits++;
    BU_BARRIER();
  }
  return hits;
}

static double time_check(const ct_token *t, size_t n) {
  int64_t t0 = bu_now();
  size_t hits = check_loop(t, n);
  int64_t t1 = bu_now();
  if (hits != 0)
    bu_die("check loop saw a triggered token");
  return (double)(t1 - t0) / (double)n;
}

/* A chain root -> l[0] -> ... -> l[depth-1]; each link a child of the
 * previous one.  Returns the array of links; *root receives the root. */
static ct_token **make_chain(ct_token **root, size_t depth) {
  ct_token **l = (ct_token **)bu_xmalloc(depth * sizeof *l);
  size_t i;
  CT_OK(ct_token_new(root, "root"));
  for (i = 0; i < depth; i++)
    CT_OK(ct_token_new_child(&l[i], "link", i ? l[i - 1] : *root));
  return l;
}

static void free_chain(ct_token *root, ct_token **l, size_t depth) {
  size_t i;
  ct_token_unref(root);
  for (i = 0; i < depth; i++)
    ct_token_unref(l[i]);
  free(l);
}

static void bench_check(const bu_config *c) {
  static const size_t depths[] = {10, 100, 10000};
  double *v = (double *)bu_xmalloc(c->reps * sizeof *v);
  ct_token *t;
  size_t r, d;

  progress("check");
  CT_OK(ct_token_new(&t, "plain"));
  time_check(t, c->check_iters / 10); /* warm-up */
  for (r = 0; r < c->reps; r++)
    v[r] = time_check(t, c->check_iters);
  bu_emit("check.plain", "ns/check", v, c->reps, "ct_token_triggered()");
  ct_token_unref(t);

  for (d = 0; d < sizeof depths / sizeof depths[0]; d++) {
    char key[64], note[96];
    ct_token *root;
    ct_token **l = make_chain(&root, depths[d]);
    const ct_token *leaf = l[depths[d] - 1];
    time_check(leaf, c->check_iters / 10);
    for (r = 0; r < c->reps; r++)
      v[r] = time_check(leaf, c->check_iters);
    snprintf(key, sizeof key, "check.depth%zu", depths[d]);
    snprintf(note, sizeof note, "leaf of a ct_token_new_child chain");
    bu_emit(key, "ns/check", v, c->reps, note);
    free_chain(root, l, depths[d]);
  }
  free(v);
}

/* ---- 2. fan-out and deep chain ------------------------------------------ */

/* One root with n direct children made by ct_token_new_child (use_chain_n
 * 0) or ct_token_chain_n(n=1) (use_chain_n 1).  Each repetition plays two
 * generations (see "heap layout" in bench_util.h):
 *   1. fresh:    trim; create n children; trigger the root (it returns once
 *                every child is triggered); destroy the children in a
 *                random order;
 *   2. recycled: create n children again, now at scattered addresses;
 *                trigger; destroy them in creation order.
 * Every figure is per child. */
static int64_t make_children(ct_token **kids, size_t n, ct_token **root,
                             int use_chain_n) {
  size_t i;
  int64_t t0;
  CT_OK(ct_token_new(root, "root"));
  t0 = bu_now();
  if (use_chain_n) {
    for (i = 0; i < n; i++)
      CT_OK(ct_token_chain_n(&kids[i], root, 1));
  } else {
    for (i = 0; i < n; i++)
      CT_OK(ct_token_new_child(&kids[i], "child", *root));
  }
  return bu_now() - t0;
}

static int64_t trigger_children(ct_token **kids, size_t n, ct_token *root) {
  size_t i;
  int64_t t0 = bu_now(), t1;
  CT_OK(ct_token_trigger(root));
  t1 = bu_now();
  for (i = 0; i < n; i++)
    if (!ct_token_triggered(kids[i]))
      bu_die("fanout: a child was not triggered by its root");
  return t1 - t0;
}

static void bench_fanout(const bu_config *c, int use_chain_n) {
  enum { CREATE, TRIGGER, DESTROY_RANDOM, CREATE2, TRIGGER2, DESTROY, NF };
  static const char *const what[NF] = {
      "create",          "trigger",          "destroy_random",
      "create_recycled", "trigger_recycled", "destroy"};
  size_t n = c->fanout_n, r, i, k;
  double *v[NF];
  ct_token **kids = (ct_token **)bu_xmalloc(n * sizeof *kids);
  size_t *perm = (size_t *)bu_xmalloc(n * sizeof *perm);
  const char *pfx = use_chain_n ? "fanout_chain1" : "fanout";
  char key[64], note[96];

  progress(use_chain_n ? "fanout (ct_token_chain_n n=1)"
                       : "fanout (ct_token_new_child)");
  bu_shuffle(perm, n);
  memset(kids, 0, n * sizeof *kids);
  for (k = 0; k < NF; k++)
    v[k] = (double *)bu_xmalloc(c->reps * sizeof(double));
  for (r = 0; r < c->reps; r++) {
    ct_token *root;
    int64_t t0;
    bu_trim();
    v[CREATE][r] = (double)make_children(kids, n, &root, use_chain_n);
    v[TRIGGER][r] = (double)trigger_children(kids, n, root);
    t0 = bu_now();
    for (i = 0; i < n; i++)
      ct_token_unref(kids[perm[i]]);
    ct_token_unref(root);
    v[DESTROY_RANDOM][r] = (double)(bu_now() - t0);

    v[CREATE2][r] = (double)make_children(kids, n, &root, use_chain_n);
    v[TRIGGER2][r] = (double)trigger_children(kids, n, root);
    t0 = bu_now();
    for (i = 0; i < n; i++)
      ct_token_unref(kids[i]);
    ct_token_unref(root);
    v[DESTROY][r] = (double)(bu_now() - t0);
    for (k = 0; k < NF; k++)
      v[k][r] /= (double)n;
  }
  snprintf(note, sizeof note, "n=%zu %s", n,
           use_chain_n ? "ct_token_chain_n(n=1)" : "ct_token_new_child");
  for (k = 0; k < NF; k++) {
    snprintf(key, sizeof key, "%s.%s", pfx, what[k]);
    bu_emit(key, "ns/child", v[k], c->reps, note);
    free(v[k]);
  }
  free(kids);
  free(perm);
}

/* Fan-out over children that really are scattered: a generation made in
 * address order is destroyed in a random order while the next one is made,
 * one child for one child, so each new child takes the address that the
 * allocator's LIFO lists give back (the one just freed).  The plain
 * "recycled" generation above no longer guarantees scattering on our side:
 * growing the root's children array is a large allocation, which makes
 * glibc coalesce the freed children first, and the next generation then
 * comes out in address order again.  Same recipe in cpp_bench.cpp. */
static void bench_fanout_scattered(const bu_config *c) {
  size_t n = c->fanout_n, r, i;
  double *v = (double *)bu_xmalloc(c->reps * sizeof *v);
  ct_token **a = (ct_token **)bu_xmalloc(n * sizeof *a);
  ct_token **b = (ct_token **)bu_xmalloc(n * sizeof *b);
  size_t *perm = (size_t *)bu_xmalloc(n * sizeof *perm);
  char note[96];

  progress("fanout (scattered)");
  bu_shuffle(perm, n);
  for (r = 0; r < c->reps; r++) {
    ct_token *ra, *rb;
    bu_trim();
    make_children(a, n, &ra, 0);
    CT_OK(ct_token_new(&rb, "root"));
    for (i = 0; i < n; i++) {
      ct_token_unref(a[perm[i]]);
      CT_OK(ct_token_new_child(&b[i], "child", rb));
    }
    ct_token_unref(ra);
    v[r] = (double)trigger_children(b, n, rb) / (double)n;
    for (i = 0; i < n; i++)
      ct_token_unref(b[i]);
    ct_token_unref(rb);
  }
  snprintf(note, sizeof note, "n=%zu ct_token_new_child, scattered", n);
  bu_emit("fanout.trigger_scattered", "ns/child", v, c->reps, note);
  free(v);
  free(a);
  free(b);
  free(perm);
}

/* A chain of chain_n links, each a child of the previous.  The trigger of
 * the root returns when the last link is triggered.  Destruction drops the
 * references in creation order, so the last unref (of the leaf) frees the
 * whole chain at once -- the header promises that this does not recurse. */
static void bench_chain(const bu_config *c) {
  size_t n = c->chain_n, r;
  double *vc = (double *)bu_xmalloc((c->reps + 1) * sizeof *vc);
  double *vt = (double *)bu_xmalloc((c->reps + 1) * sizeof *vt);
  double *vd = (double *)bu_xmalloc((c->reps + 1) * sizeof *vd);
  char note[96];

  progress("deep chain");
  /* Repetition 0 is a warm-up (first-touch page faults of a fresh heap)
   * and is not reported. */
  for (r = 0; r <= c->reps; r++) {
    ct_token *root, **l;
    int64_t t0, t1, t2, t3;
    /* A fresh heap on both sides (see "heap layout" in bench_util.h): a
     * chain is a dependent walk, so its cost is the layout the groups
     * before it happened to leave in the allocator. */
    bu_trim();
    t0 = bu_now();
    l = make_chain(&root, n);
    t1 = bu_now();
    CT_OK(ct_token_trigger(root));
    t2 = bu_now();
    if (!ct_token_triggered(l[n - 1]))
      bu_die("chain: the leaf was not triggered by the root");
    /* The unrefs only: C++ destroys its links likewise, and frees its
     * vector of them after the clock stops. */
    ct_token_unref(root);
    for (size_t i = 0; i < n; i++)
      ct_token_unref(l[i]);
    t3 = bu_now();
    free(l);
    vc[r] = (double)(t1 - t0) / (double)n;
    vt[r] = (double)(t2 - t1) / (double)n;
    vd[r] = (double)(t3 - t2) / (double)n;
  }
  snprintf(note, sizeof note, "depth=%zu ct_token_new_child", n);
  bu_emit("chain.create", "ns/link", vc + 1, c->reps, note);
  bu_emit("chain.trigger", "ns/link", vt + 1, c->reps, note);
  bu_emit("chain.destroy", "ns/link", vd + 1, c->reps, note);
  free(vc);
  free(vt);
  free(vd);
}

/* ---- 3. churn ------------------------------------------------------------ */

/* Create a child of one long-lived parent and destroy it, churn_n times.
 * The RSS delta over the loop shows whether the parent keeps anything per
 * dead child.  A short warm-up runs first so that one-time growth (the
 * parent's first child slot, the allocator's first chunk of that size) is
 * not counted as churn growth.  Three forms: ct_token_new_child, the n=1
 * chain, and a child with a deadline an hour away (Go's WithTimeout), which
 * also inserts into and removes from the deadline thread's timer heap. */
enum { CHURN_CHILD, CHURN_CHAIN1, CHURN_DEADLINE };

static void churn_once(int mode, ct_token *parent) {
  ct_token *ch;
  if (mode == CHURN_CHAIN1) {
    CT_OK(ct_token_chain_n(&ch, &parent, 1));
  } else {
    CT_OK(ct_token_new_child(&ch, "request", parent));
    if (mode == CHURN_DEADLINE)
      CT_OK(ct_token_set_deadline(ch, ct_deadline_after(3600000000000LL)));
  }
  ct_token_unref(ch);
}

static void bench_churn(const bu_config *c, int mode) {
  static const char *const keys[] = {"churn", "churn_chain1",
                                     "churn_deadline"};
  static const char *const what[] = {
      "ct_token_new_child+unref", "ct_token_chain_n(n=1)+unref",
      "ct_token_new_child+ct_token_set_deadline(now+1h)+unref"};
  size_t n = c->churn_n, r, i;
  double *vt = (double *)bu_xmalloc(c->reps * sizeof *vt);
  double *vm = (double *)bu_xmalloc(c->reps * sizeof *vm);
  char k2[64], note[128];
  ct_token *parent;

  progress(keys[mode]);
  CT_OK(ct_token_new(&parent, "server"));
  for (i = 0; i < 1000; i++)
    churn_once(mode, parent);
  for (r = 0; r < c->reps; r++) {
    long m0, m1;
    int64_t t0, t1;
    m0 = bu_rss_bytes();
    t0 = bu_now();
    for (i = 0; i < n; i++)
      churn_once(mode, parent);
    t1 = bu_now();
    m1 = bu_rss_bytes();
    vt[r] = (double)(t1 - t0) / (double)n;
    vm[r] = (double)(m1 - m0) / 1024.0;
  }
  ct_token_unref(parent);
  snprintf(note, sizeof note, "n=%zu %s", n, what[mode]);
  bu_emit(keys[mode], "ns/cycle", vt, c->reps, note);
  snprintf(k2, sizeof k2, "%s.rss", keys[mode]);
  bu_emit(k2, "KiB", vm, c->reps, "RSS after minus RSS before the loop");
  free(vt);
  free(vm);
}

/* ---- 4. memory ----------------------------------------------------------- */

/* Bytes per live token, from the RSS delta over mem_n live tokens of one
 * kind: MEM_TOKEN, plain tokens (ct_token_new); MEM_CHILD, children of one
 * root (ct_token_new_child); MEM_LINK, a chain where each token is the
 * child of the previous one.  The array that holds the tokens is allocated
 * and touched before the first reading, so only the tokens (token, link,
 * name and whatever else the library allocates for them) are counted.
 * This group runs first and trims the heap before each repetition, so that
 * freed pages of an earlier repetition are not reused silently. */
enum { MEM_TOKEN, MEM_CHILD, MEM_LINK };

static void bench_memory_one(const bu_config *c, int kind) {
  static const char *const keys[] = {"memory.token", "memory.child",
                                     "memory.link"};
  static const char *const what[] = {"ct_token_new", "ct_token_new_child",
                                     "chain of ct_token_new_child"};
  size_t n = c->mem_n, r, i;
  double *vm = (double *)bu_xmalloc(c->reps * sizeof *vm);
  double *vh = (double *)bu_xmalloc(c->reps * sizeof *vh);
  ct_token **kids = (ct_token **)bu_xmalloc(n * sizeof *kids);
  char note[128];

  memset(kids, 0, n * sizeof *kids);
  for (r = 0; r < c->reps; r++) {
    ct_token *root;
    long m0, m1, h0, h1;
    CT_OK(ct_token_new(&root, "root"));
    bu_trim();
    m0 = bu_rss_bytes();
    h0 = bu_heap_bytes();
    for (i = 0; i < n; i++) {
      if (kind == MEM_TOKEN)
        CT_OK(ct_token_new(&kids[i], "token"));
      else
        CT_OK(ct_token_new_child(&kids[i], "child",
                                 kind == MEM_LINK && i ? kids[i - 1] : root));
    }
    m1 = bu_rss_bytes();
    h1 = bu_heap_bytes();
    vm[r] = (double)(m1 - m0) / (double)n;
    vh[r] = (double)(h1 - h0) / (double)n;
    for (i = 0; i < n; i++)
      ct_token_unref(kids[i]);
    ct_token_unref(root);
  }
  bu_sort(vh, c->reps);
  snprintf(note, sizeof note, "n=%zu %s; malloc'd %.0f B/token", n,
           what[kind], vh[c->reps / 2]);
  bu_emit(keys[kind], "B/token", vm, c->reps, note);
  free(kids);
  free(vm);
  free(vh);
}

static void bench_memory(const bu_config *c) {
  progress("memory");
  bench_memory_one(c, MEM_TOKEN);
  bench_memory_one(c, MEM_CHILD);
  bench_memory_one(c, MEM_LINK);
}

/* ---- 5. wake-up latency -------------------------------------------------- */

typedef struct wake_ctx {
  ct_token *t;
  int ep;
  int efd; /* the raw eventfd baseline */
  /* raw baseline */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int flag;
} wake_ctx;

static void w_new(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  (void)i;
  CT_OK(ct_token_new(&w->t, "wake"));
}
static void w_wait(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  (void)i;
  if (ct_token_wait(w->t, CT_FOREVER) != 0)
    bu_die("ct_token_wait did not return 0");
}
static void w_fire(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  (void)i;
  if (ct_token_trigger(w->t) != 1)
    bu_die("ct_token_trigger did not return 1");
}
static void w_free(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  (void)i;
  ct_token_unref(w->t);
  w->t = NULL;
}

/* epoll on the token's descriptor.  Creating the descriptor and adding it
 * to the epoll set happen in prepare, untimed, as a program would do them
 * long before it is cancelled. */
static void e_new(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  struct epoll_event ev;
  int fd;
  (void)i;
  CT_OK(ct_token_new(&w->t, "wake-fd"));
  fd = ct_token_fd(w->t);
  CT_OK(fd);
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
    bu_die("epoll_ctl ADD");
}
static void e_wait(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  struct epoll_event ev;
  int k;
  (void)i;
  do
    k = epoll_wait(w->ep, &ev, 1, -1);
  while (k < 0 && errno == EINTR);
  if (k != 1)
    bu_die("epoll_wait");
}
static void e_free(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  (void)i;
  epoll_ctl(w->ep, EPOLL_CTL_DEL, ct_token_fd(w->t), NULL);
  ct_token_unref(w->t);
  w->t = NULL;
}

/* The floor for the epoll case: epoll on a plain eventfd that the firing
 * thread writes with write(2) and nothing else -- what any token's
 * descriptor wake-up costs at least.  Same process, same rounds, so the
 * ratio epoll / epoll_raw is free of the machine's drift. */
static void r_new(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  struct epoll_event ev;
  (void)i;
  w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w->efd < 0)
    bu_die("eventfd");
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.fd = w->efd;
  if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->efd, &ev) != 0)
    bu_die("epoll_ctl ADD");
}
static void r_fire(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  uint64_t one = 1;
  (void)i;
  if (write(w->efd, &one, sizeof one) != (ssize_t)sizeof one)
    bu_die("write eventfd");
}
static void r_free(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  (void)i;
  epoll_ctl(w->ep, EPOLL_CTL_DEL, w->efd, NULL);
  close(w->efd);
  w->efd = -1;
}

/* The raw baseline: pthread mutex + condition variable + flag. */
static void c_new(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  (void)i;
  w->flag = 0; /* published to the waiter by the harness's release store */
}
static void c_wait(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  (void)i;
  pthread_mutex_lock(&w->mu);
  while (!w->flag)
    pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
}
static void c_fire(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  (void)i;
  pthread_mutex_lock(&w->mu);
  w->flag = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}
/* The same, signalling after the unlock: the woken waiter then never finds
 * the mutex still held by the signaller and has to sleep a second time. */
static void c_fire_unlocked(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  (void)i;
  pthread_mutex_lock(&w->mu);
  w->flag = 1;
  pthread_mutex_unlock(&w->mu);
  pthread_cond_signal(&w->cv);
}
static void c_free(void *p, size_t i) {
  (void)p;
  (void)i;
}

/* Wake-up latency in one regime (see "CPU placement" in bench_util.h):
 * same_cpu 0, trigger and waiter on two CPUs (keys wake.*), or 1, both on
 * one CPU (keys wake_1cpu.*). */
static void bench_wake(const bu_config *c, int same_cpu) {
  enum { NV = 5 };
  static const char *const names[NV] = {"wait", "epoll", "condvar",
                                        "condvar_unl", "epoll_raw"};
  static const char *const notes[NV] = {
      "ct_token_wait <- ct_token_trigger",
      "epoll_wait on ct_token_fd <- ct_token_trigger",
      "baseline: pthread mutex+cond+flag; signal under the mutex",
      "baseline: pthread mutex+cond+flag; signal after unlock",
      "baseline: epoll_wait on a plain eventfd <- write(2)"};
  wake_ctx w;
  bu_wake_ops ops[NV];
  double *pct[NV][BU_NPCT], *lat[NV];
  size_t r, k, j, unsettled = 0;
  int cpu[2], tcpu, wcpu;

  progress(same_cpu ? "wake-up latency (same CPU)"
                    : "wake-up latency (cross-CPU)");
  if (bu_two_cpus(cpu) < 2 && !same_cpu) {
    printf("# wake (cross-CPU) skipped: only one CPU available\n");
    return;
  }
  tcpu = cpu[0];
  wcpu = same_cpu ? cpu[0] : cpu[1];
  memset(&w, 0, sizeof w);
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  w.ep = epoll_create1(EPOLL_CLOEXEC);
  if (w.ep < 0)
    bu_die("epoll_create1");
  ops[0] = (bu_wake_ops){&w, w_new, w_wait, w_fire, w_free};
  ops[1] = (bu_wake_ops){&w, e_new, e_wait, w_fire, e_free};
  ops[2] = (bu_wake_ops){&w, c_new, c_wait, c_fire, c_free};
  ops[3] = (bu_wake_ops){&w, c_new, c_wait, c_fire_unlocked, c_free};
  ops[4] = (bu_wake_ops){&w, r_new, e_wait, r_fire, r_free};
  for (k = 0; k < NV; k++) {
    for (j = 0; j < BU_NPCT; j++)
      pct[k][j] = (double *)bu_xmalloc(c->reps * sizeof(double));
    lat[k] = (double *)bu_xmalloc(c->wake_rounds * sizeof(double));
  }
  /* The variants take turns round by round (see bu_wake_run).  A short
   * untimed run first warms up the thread, the futexes and the epoll set. */
  bu_wake_run(ops, NV, c->wake_rounds / 10, lat, tcpu, wcpu);
  for (r = 0; r < c->reps; r++) {
    unsettled += bu_wake_run(ops, NV, c->wake_rounds, lat, tcpu, wcpu);
    for (k = 0; k < NV; k++)
      bu_record_pcts(pct[k], r, lat[k], c->wake_rounds);
  }
  for (k = 0; k < NV; k++) {
    const char *pfx = same_cpu ? "wake_1cpu" : "wake";
    char note[160];
    snprintf(note, sizeof note, "%s; rounds=%zu%s", notes[k], c->wake_rounds,
             unsettled ? "; WARNING some waiters not seen asleep" : "");
    bu_emit_pcts(pfx, names[k], pct[k], c->reps, note);
    for (j = 0; j < BU_NPCT; j++)
      free(pct[k][j]);
    free(lat[k]);
  }
  close(w.ep);
  pthread_cond_destroy(&w.cv);
  pthread_mutex_destroy(&w.mu);
}

/* ---- 6. cancellable poll --------------------------------------------------- */

/* ct_poll and poll(2) on the read end of a pipe that always holds one
 * unread byte, so every call returns at once with POLLIN.  The token is
 * never triggered.  One untimed call first lets the library create whatever
 * it creates lazily.  Two baselines: poll(2) on the pipe alone -- what
 * ct_poll asks of the kernel when a descriptor is ready, since it polls the
 * caller's set first -- and poll(2) on {pipe, the token's descriptor},
 * what C++ and GLib code do by hand, so that ct_poll's own overhead is
 * measured in one process. */
static void bench_poll(const bu_config *c) {
  size_t n = c->poll_n, r, i;
  double *vc = (double *)bu_xmalloc(c->reps * sizeof *vc);
  double *vp = (double *)bu_xmalloc(c->reps * sizeof *vp);
  double *v2 = (double *)bu_xmalloc(c->reps * sizeof *v2);
  int fds[2];
  struct pollfd pfd, pfd2[2];
  ct_token *t;
  char note[96];

  progress("poll");
  if (pipe(fds) != 0 || write(fds[1], "x", 1) != 1)
    bu_die("pipe");
  CT_OK(ct_token_new(&t, "poll"));
  pfd.fd = fds[0];
  pfd.events = POLLIN;
  pfd.revents = 0;
  if (ct_poll(t, &pfd, 1, CT_FOREVER) != 1 || !(pfd.revents & POLLIN))
    bu_die("ct_poll on a ready pipe did not return 1/POLLIN");
  pfd2[0] = pfd;
  pfd2[1].fd = ct_token_fd(t);
  pfd2[1].events = POLLIN;
  pfd2[1].revents = 0;
  for (i = 0; i < n / 50; i++) /* warm-up */
    if (ct_poll(t, &pfd, 1, CT_FOREVER) != 1 || poll(&pfd, 1, -1) != 1)
      bu_die("poll warm-up");
  /* The three loops alternate in slices of n/50 calls, so that a change in
   * machine load during a repetition hits all alike. */
  for (r = 0; r < c->reps; r++) {
    size_t slice = n / 50 ? n / 50 : 1, done;
    int64_t tc = 0, tp = 0, t2fd = 0;
    for (done = 0; done < n; done += slice) {
      size_t m = n - done < slice ? n - done : slice;
      int64_t t0, t1, t2, t3;
      t0 = bu_now();
      for (i = 0; i < m; i++)
        if (ct_poll(t, &pfd, 1, CT_FOREVER) != 1)
          bu_die("ct_poll");
      t1 = bu_now();
      for (i = 0; i < m; i++)
        if (poll(&pfd, 1, -1) != 1)
          bu_die("poll");
      t2 = bu_now();
      for (i = 0; i < m; i++)
        if (poll(pfd2, 2, -1) != 1)
          bu_die("poll (2 descriptors)");
      t3 = bu_now();
      tc += t1 - t0;
      tp += t2 - t1;
      t2fd += t3 - t2;
    }
    vc[r] = (double)tc / (double)n;
    vp[r] = (double)tp / (double)n;
    v2[r] = (double)t2fd / (double)n;
  }
  snprintf(note, sizeof note, "n=%zu ct_poll(t, 1 ready pipe, CT_FOREVER)", n);
  bu_emit("poll.ct", "ns/call", vc, c->reps, note);
  snprintf(note, sizeof note, "n=%zu baseline: poll(2) on the same pipe", n);
  bu_emit("poll.plain", "ns/call", vp, c->reps, note);
  snprintf(note, sizeof note,
           "n=%zu baseline: poll(2) on {pipe; the token's descriptor}", n);
  bu_emit("poll.plain2", "ns/call", v2, c->reps, note);
  ct_token_unref(t);
  close(fds[0]);
  close(fds[1]);
  free(vc);
  free(vp);
  free(v2);
}

int main(int argc, char **argv) {
  bu_config c = bu_parse_args(argc, argv);
  bu_print_config("ct_bench", &c);
  /* memory first, while the heap is fresh (see bench_memory). */
  if (bu_selected(&c, "memory"))
    bench_memory(&c);
  if (bu_selected(&c, "check"))
    bench_check(&c);
  if (bu_selected(&c, "fanout")) {
    bench_fanout(&c, 0);
    bench_fanout(&c, 1);
    bench_fanout_scattered(&c);
  }
  if (bu_selected(&c, "chain"))
    bench_chain(&c);
  if (bu_selected(&c, "churn")) {
    bench_churn(&c, CHURN_CHILD);
    bench_churn(&c, CHURN_CHAIN1);
  }
  if (bu_selected(&c, "wake")) {
    bench_wake(&c, 0);
    bench_wake(&c, 1);
  }
  if (bu_selected(&c, "poll"))
    bench_poll(&c);
  /* Last, because its first deadline starts the library's timer thread,
   * which lives until exit.  In a process with a second thread, every
   * poll(2) costs about 50 ns more (the kernel then counts references on
   * each descriptor it looks up), and the peers poll single-threaded. */
  if (bu_selected(&c, "churn"))
    bench_churn(&c, CHURN_DEADLINE);
  return 0;
}
