/* SPDX-License-Identifier: MIT */
/* glib_bench.c -- the GLib side of the benchmark suite: the workloads of
 * ct_bench.c written the way a GLib program writes them with GCancellable
 * (gio), printed in the key,unit,median,min,max,note format of
 * ../bench_util.h so that ../run.py can join them with the others.
 *
 * GLib has no chained cancellables.  A child is linked the way GLib code
 * does it: its own GCancellable plus a handler, connected with
 * g_cancellable_connect() on the parent, that cancels the child.  Stopping
 * the root of a chain therefore emits one "cancelled" signal per link,
 * nested, and the deep chain runs on a big stack (as in cpp_bench).
 *
 * Design notes: every workload uses bench_util.h's timing, RSS, heap-layout
 * and wake-up harness, so that the figures compare with ct_bench's and
 * cpp_bench's line by line.  GCancellable uses a process-wide mutex in
 * g_cancellable_cancel() and in (dis)connect; nothing here runs
 * concurrently except the wake-up workload's two threads. */
#define _GNU_SOURCE
#include "../bench_util.h"

#include <gio/gio.h>
#include <poll.h>
#include <sys/epoll.h>

static void progress(const char *what) {
  fprintf(stderr, "glib_bench: %s\n", what);
}

/* The link: cancelling the parent cancels the child. */
static void forward_cancel(GCancellable *parent, gpointer child) {
  (void)parent;
  g_cancellable_cancel(G_CANCELLABLE(child));
}

/* A child of parent: a new GCancellable and its link; *id gets the handler
 * id that g_cancellable_disconnect() needs. */
static GCancellable *new_child(GCancellable *parent, gulong *id) {
  GCancellable *c = g_cancellable_new();
  *id = g_cancellable_connect(parent, G_CALLBACK(forward_cancel), c, NULL);
  return c;
}

/* Undo new_child: disconnect the link, drop the child. */
static void free_child(GCancellable *parent, GCancellable *c, gulong id) {
  g_cancellable_disconnect(parent, id);
  g_object_unref(c);
}

/* Run fn(arg) on a thread with a 1 GiB stack (reserved address space only):
 * cancelling the root of a chain nests one signal emission per link, which
 * at depth 100,000 needs far more than the default 8 MiB. */
static void on_big_stack(void *(*fn)(void *), void *arg) {
  pthread_attr_t a;
  pthread_t th;
  pthread_attr_init(&a);
  pthread_attr_setstacksize(&a, (size_t)1 << 30);
  if (pthread_create(&th, &a, fn, arg) != 0)
    bu_die("pthread_create (big stack)");
  pthread_join(th, NULL);
  pthread_attr_destroy(&a);
}

/* ---- 1. check cost ----------------------------------------------------- */

__attribute__((noinline)) static size_t check_loop(GCancellable *c,
                                                   size_t n) {
  size_t i, hits = 0;
  for (i = 0; i < n; i++) {
    if (g_cancellable_is_cancelled(c))
      hits++;
    BU_BARRIER();
  }
  return hits;
}

static double time_check(GCancellable *c, size_t n) {
  int64_t t0 = bu_now();
  size_t hits = check_loop(c, n);
  int64_t t1 = bu_now();
  if (hits != 0)
    bu_die("check loop saw a cancelled cancellable");
  return (double)(t1 - t0) / (double)n;
}

/* root -> l[0] -> ... -> l[depth-1], each linked to the previous one. */
typedef struct chain {
  GCancellable *root;
  GCancellable **l;
  gulong *id;
  size_t n;
} chain;

static void make_chain(chain *ch, size_t depth) {
  size_t i;
  ch->n = depth;
  ch->root = g_cancellable_new();
  ch->l = (GCancellable **)bu_xmalloc(depth * sizeof *ch->l);
  ch->id = (gulong *)bu_xmalloc(depth * sizeof *ch->id);
  for (i = 0; i < depth; i++)
    ch->l[i] = new_child(i ? ch->l[i - 1] : ch->root, &ch->id[i]);
}

/* Leaf first: a handler is disconnected while its parent is alive. */
static void free_chain(chain *ch) {
  size_t i;
  for (i = ch->n; i-- > 0;)
    free_child(i ? ch->l[i - 1] : ch->root, ch->l[i], ch->id[i]);
  g_object_unref(ch->root);
  free(ch->l);
  free(ch->id);
}

static void bench_check(const bu_config *c) {
  static const size_t depths[] = {10, 100, 10000};
  double *v = (double *)bu_xmalloc(c->reps * sizeof *v);
  GCancellable *t;
  size_t r, d;

  progress("check");
  t = g_cancellable_new();
  time_check(t, c->check_iters / 10);
  for (r = 0; r < c->reps; r++)
    v[r] = time_check(t, c->check_iters);
  bu_emit("check.plain", "ns/check", v, c->reps,
          "g_cancellable_is_cancelled()");
  g_object_unref(t);
  for (d = 0; d < sizeof depths / sizeof depths[0]; d++) {
    char key[64];
    chain ch;
    make_chain(&ch, depths[d]);
    time_check(ch.l[depths[d] - 1], c->check_iters / 10);
    for (r = 0; r < c->reps; r++)
      v[r] = time_check(ch.l[depths[d] - 1], c->check_iters);
    snprintf(key, sizeof key, "check.depth%zu", depths[d]);
    bu_emit(key, "ns/check", v, c->reps,
            "leaf of a chain linked by cancelled handlers");
    free_chain(&ch);
  }
  free(v);
}

/* ---- 2. fan-out and deep chain ------------------------------------------ */

/* As bench_fanout in ct_bench.c: per repetition a fresh generation (trim,
 * create, cancel the root, destroy in random order) and a recycled one.
 * Destroying a child disconnects its handler from the root and drops it. */
static int64_t make_children(GCancellable **kids, gulong *ids, size_t n,
                             GCancellable **root) {
  size_t i;
  int64_t t0;
  *root = g_cancellable_new();
  t0 = bu_now();
  for (i = 0; i < n; i++)
    kids[i] = new_child(*root, &ids[i]);
  return bu_now() - t0;
}

static int64_t trigger_children(GCancellable **kids, size_t n,
                                GCancellable *root) {
  size_t i;
  int64_t t0 = bu_now(), t1;
  g_cancellable_cancel(root);
  t1 = bu_now();
  for (i = 0; i < n; i++)
    if (!g_cancellable_is_cancelled(kids[i]))
      bu_die("fanout: a child was not cancelled by its root");
  return t1 - t0;
}

static void bench_fanout(const bu_config *c) {
  enum { CREATE, TRIGGER, DESTROY_RANDOM, CREATE2, TRIGGER2, DESTROY, NF };
  static const char *const what[NF] = {
      "create",          "trigger",          "destroy_random",
      "create_recycled", "trigger_recycled", "destroy"};
  size_t n = c->fanout_n, r, i, k;
  double *v[NF];
  GCancellable **kids = (GCancellable **)bu_xmalloc(n * sizeof *kids);
  gulong *ids = (gulong *)bu_xmalloc(n * sizeof *ids);
  size_t *perm = (size_t *)bu_xmalloc(n * sizeof *perm);
  char key[64], note[128];

  progress("fanout");
  bu_shuffle(perm, n);
  for (k = 0; k < NF; k++)
    v[k] = (double *)bu_xmalloc(c->reps * sizeof(double));
  for (r = 0; r < c->reps; r++) {
    GCancellable *root;
    int64_t t0;
    bu_trim();
    v[CREATE][r] = (double)make_children(kids, ids, n, &root);
    v[TRIGGER][r] = (double)trigger_children(kids, n, root);
    t0 = bu_now();
    for (i = 0; i < n; i++)
      free_child(root, kids[perm[i]], ids[perm[i]]);
    g_object_unref(root);
    v[DESTROY_RANDOM][r] = (double)(bu_now() - t0);

    v[CREATE2][r] = (double)make_children(kids, ids, n, &root);
    v[TRIGGER2][r] = (double)trigger_children(kids, n, root);
    t0 = bu_now();
    for (i = 0; i < n; i++)
      free_child(root, kids[i], ids[i]);
    g_object_unref(root);
    v[DESTROY][r] = (double)(bu_now() - t0);
    for (k = 0; k < NF; k++)
      v[k][r] /= (double)n;
  }
  snprintf(note, sizeof note,
           "n=%zu child = GCancellable + g_cancellable_connect on root", n);
  for (k = 0; k < NF; k++) {
    snprintf(key, sizeof key, "fanout.%s", what[k]);
    bu_emit(key, "ns/child", v[k], c->reps, note);
    free(v[k]);
  }
  free(kids);
  free(ids);
  free(perm);
}

static void *cancel_root(void *arg) {
  chain *ch = (chain *)arg;
  g_cancellable_cancel(ch->root);
  return NULL;
}

/* As bench_chain in ct_bench.c.  The cancel runs on a big stack (the time
 * of starting that thread is excluded: it is taken inside the thread). */
typedef struct chain_run {
  chain ch;
  int64_t t0, t1;
} chain_run;

static void *timed_cancel_root(void *arg) {
  chain_run *cr = (chain_run *)arg;
  cr->t0 = bu_now();
  cancel_root(&cr->ch);
  cr->t1 = bu_now();
  return NULL;
}

static void bench_chain(const bu_config *c) {
  size_t n = c->chain_n, r;
  double *vc = (double *)bu_xmalloc((c->reps + 1) * sizeof *vc);
  double *vt = (double *)bu_xmalloc((c->reps + 1) * sizeof *vt);
  double *vd = (double *)bu_xmalloc((c->reps + 1) * sizeof *vd);
  char note[128];

  progress("deep chain");
  for (r = 0; r <= c->reps; r++) {
    chain_run cr;
    int64_t t0, t1, t2, t3;
    t0 = bu_now();
    make_chain(&cr.ch, n);
    t1 = bu_now();
    on_big_stack(timed_cancel_root, &cr);
    if (!g_cancellable_is_cancelled(cr.ch.l[n - 1]))
      bu_die("chain: the leaf was not cancelled by the root");
    t2 = bu_now();
    free_chain(&cr.ch);
    t3 = bu_now();
    vc[r] = (double)(t1 - t0) / (double)n;
    vt[r] = (double)(cr.t1 - cr.t0) / (double)n;
    vd[r] = (double)(t3 - t2) / (double)n;
  }
  snprintf(note, sizeof note,
           "depth=%zu linked by cancelled handlers; cancel nests one signal "
           "emission per link (1 GiB stack)",
           n);
  bu_emit("chain.create", "ns/link", vc + 1, c->reps, note);
  bu_emit("chain.trigger", "ns/link", vt + 1, c->reps, note);
  bu_emit("chain.destroy", "ns/link", vd + 1, c->reps, note);
  free(vc);
  free(vt);
  free(vd);
}

/* ---- 3. churn ------------------------------------------------------------ */

static void bench_churn(const bu_config *c) {
  size_t n = c->churn_n, r, i;
  double *vt = (double *)bu_xmalloc(c->reps * sizeof *vt);
  double *vm = (double *)bu_xmalloc(c->reps * sizeof *vm);
  char note[128];
  GCancellable *parent, *ch;
  gulong id;

  progress("churn");
  parent = g_cancellable_new();
  for (i = 0; i < 1000; i++) {
    ch = new_child(parent, &id);
    free_child(parent, ch, id);
  }
  for (r = 0; r < c->reps; r++) {
    long m0, m1;
    int64_t t0, t1;
    m0 = bu_rss_bytes();
    t0 = bu_now();
    for (i = 0; i < n; i++) {
      ch = new_child(parent, &id);
      free_child(parent, ch, id);
    }
    t1 = bu_now();
    m1 = bu_rss_bytes();
    vt[r] = (double)(t1 - t0) / (double)n;
    vm[r] = (double)(m1 - m0) / 1024.0;
  }
  g_object_unref(parent);
  snprintf(note, sizeof note,
           "n=%zu g_cancellable_new+connect on parent; disconnect+unref", n);
  bu_emit("churn", "ns/cycle", vt, c->reps, note);
  bu_emit("churn.rss", "KiB", vm, c->reps,
          "RSS after minus RSS before the loop");
  free(vt);
  free(vm);
}

/* ---- 4. memory ----------------------------------------------------------- */

/* As bench_memory in ct_bench.c: plain cancellables, children of one root,
 * and a chain; the holding arrays are touched before the first reading. */
static void bench_memory_one(const bu_config *c, int kind) {
  static const char *const keys[] = {"memory.token", "memory.child",
                                     "memory.link"};
  static const char *const what[] = {
      "g_cancellable_new", "GCancellable + cancelled handler on one root",
      "chain of GCancellables linked by cancelled handlers"};
  size_t n = c->mem_n, r, i;
  double *vm = (double *)bu_xmalloc(c->reps * sizeof *vm);
  GCancellable **kids = (GCancellable **)bu_xmalloc(n * sizeof *kids);
  gulong *ids = (gulong *)bu_xmalloc(n * sizeof *ids);
  char note[160];

  memset(kids, 0, n * sizeof *kids);
  memset(ids, 0, n * sizeof *ids);
  for (r = 0; r < c->reps; r++) {
    GCancellable *root = g_cancellable_new();
    long m0, m1;
    bu_trim();
    m0 = bu_rss_bytes();
    for (i = 0; i < n; i++) {
      if (kind == 0)
        kids[i] = g_cancellable_new();
      else
        kids[i] = new_child(kind == 2 && i ? kids[i - 1] : root, &ids[i]);
    }
    m1 = bu_rss_bytes();
    vm[r] = (double)(m1 - m0) / (double)n;
    for (i = n; i-- > 0;) {
      if (kind == 0)
        g_object_unref(kids[i]);
      else
        free_child(kind == 2 && i ? kids[i - 1] : root, kids[i], ids[i]);
    }
    g_object_unref(root);
  }
  snprintf(note, sizeof note, "n=%zu %s", n, what[kind]);
  bu_emit(keys[kind], "B/token", vm, c->reps, note);
  free(kids);
  free(ids);
  free(vm);
}

static void bench_memory(const bu_config *c) {
  progress("memory");
  bench_memory_one(c, 0);
  bench_memory_one(c, 1);
  bench_memory_one(c, 2);
}

/* ---- 5. wake-up latency -------------------------------------------------- */

typedef struct wake_ctx {
  GCancellable *c;
  gulong id;
  int ep, fd;
  GMutex mu;
  GCond cv;
} wake_ctx;

static void w_new(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  (void)i;
  w->c = g_cancellable_new();
}

/* The cancelled handler of the GCond wait: take the mutex so that the
 * waiter is either before its check (and will see the flag) or asleep in
 * g_cond_wait (and gets the broadcast). */
static void w_wake(GCancellable *c, gpointer p) {
  wake_ctx *w = (wake_ctx *)p;
  (void)c;
  g_mutex_lock(&w->mu);
  g_cond_broadcast(&w->cv);
  g_mutex_unlock(&w->mu);
}

/* A cancellable blocking wait as GLib code writes it: connect a handler
 * that signals a GCond, wait on the GCond until the cancellable is
 * cancelled, disconnect.  The disconnect happens after the wake-up, inside
 * the timed span, as std::stop_callback's deregistration does in
 * condition_variable_any::wait. */
static void w_wait(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  gulong id;
  (void)i;
  id = g_cancellable_connect(w->c, G_CALLBACK(w_wake), w, NULL);
  g_mutex_lock(&w->mu);
  while (!g_cancellable_is_cancelled(w->c))
    g_cond_wait(&w->cv, &w->mu);
  g_mutex_unlock(&w->mu);
  g_cancellable_disconnect(w->c, id);
}

static void w_fire(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  (void)i;
  g_cancellable_cancel(w->c);
}

static void w_free(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  (void)i;
  g_object_unref(w->c);
  w->c = NULL;
}

/* epoll on g_cancellable_get_fd(), set up untimed as on our side. */
static void e_new(void *p, size_t i) {
  wake_ctx *w = (wake_ctx *)p;
  struct epoll_event ev;
  (void)i;
  w->c = g_cancellable_new();
  w->fd = g_cancellable_get_fd(w->c);
  if (w->fd < 0)
    bu_die("g_cancellable_get_fd");
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.fd = w->fd;
  if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->fd, &ev) != 0)
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
  epoll_ctl(w->ep, EPOLL_CTL_DEL, w->fd, NULL);
  g_cancellable_release_fd(w->c);
  g_object_unref(w->c);
  w->c = NULL;
}

static void bench_wake(const bu_config *c, int same_cpu) {
  enum { NV = 2 };
  static const char *const names[NV] = {"wait", "epoll"};
  static const char *const notes[NV] = {
      "GCond wait + cancelled handler that broadcasts <- g_cancellable_cancel",
      "epoll_wait on g_cancellable_get_fd <- g_cancellable_cancel"};
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
  g_mutex_init(&w.mu);
  g_cond_init(&w.cv);
  w.ep = epoll_create1(EPOLL_CLOEXEC);
  if (w.ep < 0)
    bu_die("epoll_create1");
  ops[0] = (bu_wake_ops){&w, w_new, w_wait, w_fire, w_free};
  ops[1] = (bu_wake_ops){&w, e_new, e_wait, w_fire, e_free};
  for (k = 0; k < NV; k++) {
    for (j = 0; j < BU_NPCT; j++)
      pct[k][j] = (double *)bu_xmalloc(c->reps * sizeof(double));
    lat[k] = (double *)bu_xmalloc(c->wake_rounds * sizeof(double));
  }
  bu_wake_run(ops, NV, c->wake_rounds / 10, lat, tcpu, wcpu);
  for (r = 0; r < c->reps; r++) {
    unsettled += bu_wake_run(ops, NV, c->wake_rounds, lat, tcpu, wcpu);
    for (k = 0; k < NV; k++)
      bu_record_pcts(pct[k], r, lat[k], c->wake_rounds);
  }
  for (k = 0; k < NV; k++) {
    char note[192];
    snprintf(note, sizeof note, "%s; rounds=%zu%s", notes[k], c->wake_rounds,
             unsettled ? "; WARNING some waiters not seen asleep" : "");
    bu_emit_pcts(same_cpu ? "wake_1cpu" : "wake", names[k], pct[k], c->reps,
                 note);
    for (j = 0; j < BU_NPCT; j++)
      free(pct[k][j]);
    free(lat[k]);
  }
  close(w.ep);
  g_cond_clear(&w.cv);
  g_mutex_clear(&w.mu);
}

/* ---- 7. cancellable poll --------------------------------------------------- */

/* g_poll on {ready pipe, the cancellable's descriptor} after an
 * is_cancelled check, in two forms: the descriptor made once (the cheapest
 * GLib pattern), and made and released around every call, which is what
 * GSocket's g_socket_condition_timed_wait() does (with no other holder,
 * every release closes the descriptor and the next make opens a new one). */
static void bench_poll(const bu_config *c) {
  size_t n = c->poll_n, r, i;
  double *v1 = (double *)bu_xmalloc(c->reps * sizeof *v1);
  double *v2 = (double *)bu_xmalloc(c->reps * sizeof *v2);
  int fds[2];
  GPollFD pfd[2];
  GCancellable *t;
  char note[160];

  progress("poll");
  if (pipe(fds) != 0 || write(fds[1], "x", 1) != 1)
    bu_die("pipe");
  t = g_cancellable_new();
  pfd[0].fd = fds[0];
  pfd[0].events = G_IO_IN;
  pfd[0].revents = 0;
  for (r = 0; r < c->reps; r++) {
    size_t slice = n / 50 ? n / 50 : 1, done;
    int64_t ta = 0, tb = 0;
    for (done = 0; done < n; done += slice) {
      size_t m = n - done < slice ? n - done : slice;
      int64_t t0, t1, t2;
      if (!g_cancellable_make_pollfd(t, &pfd[1]))
        bu_die("g_cancellable_make_pollfd");
      t0 = bu_now();
      for (i = 0; i < m; i++) {
        if (g_cancellable_is_cancelled(t))
          bu_die("cancelled");
        if (g_poll(pfd, 2, -1) != 1 || pfd[1].revents != 0)
          bu_die("g_poll");
      }
      t1 = bu_now();
      g_cancellable_release_fd(t);
      for (i = 0; i < m; i++) {
        if (g_cancellable_is_cancelled(t))
          bu_die("cancelled");
        if (!g_cancellable_make_pollfd(t, &pfd[1]))
          bu_die("g_cancellable_make_pollfd");
        if (g_poll(pfd, 2, -1) != 1 || pfd[1].revents != 0)
          bu_die("g_poll");
        g_cancellable_release_fd(t);
      }
      t2 = bu_now();
      ta += t1 - t0;
      tb += t2 - t1;
    }
    v1[r] = (double)ta / (double)n;
    v2[r] = (double)tb / (double)n;
  }
  snprintf(note, sizeof note,
           "n=%zu is_cancelled + g_poll({pipe; cancellable fd}); fd made "
           "once",
           n);
  bu_emit("poll.glib", "ns/call", v1, c->reps, note);
  snprintf(note, sizeof note,
           "n=%zu make_pollfd + g_poll + release_fd per call (as "
           "GSocket's condition_wait)",
           n);
  bu_emit("poll.glib_percall", "ns/call", v2, c->reps, note);
  g_object_unref(t);
  close(fds[0]);
  close(fds[1]);
  free(v1);
  free(v2);
}

int main(int argc, char **argv) {
  bu_config c = bu_parse_args(argc, argv);
  bu_print_config("glib_bench", &c);
  printf("# version: GLib %u.%u.%u\n", glib_major_version, glib_minor_version,
         glib_micro_version);
  if (bu_selected(&c, "memory"))
    bench_memory(&c);
  if (bu_selected(&c, "check"))
    bench_check(&c);
  if (bu_selected(&c, "fanout"))
    bench_fanout(&c);
  if (bu_selected(&c, "chain"))
    bench_chain(&c);
  if (bu_selected(&c, "churn"))
    bench_churn(&c);
  if (bu_selected(&c, "wake")) {
    bench_wake(&c, 0);
    bench_wake(&c, 1);
  }
  if (bu_selected(&c, "poll"))
    bench_poll(&c);
  return 0;
}
