/* SPDX-License-Identifier: MIT */
/* cpp_bench.cpp -- the C++20 side of the benchmark suite: the workloads of
 * ct_bench.c written the way a C++ programmer would write them with
 * std::stop_source / std::stop_token / std::stop_callback (g++ 12,
 * libstdc++), printed in the same key,unit,median,min,max,note format
 * (bench_util.h) so that bench/run.py can join the two.
 *
 * C++ has no chained tokens.  A "child" is emulated the usual way: its own
 * std::stop_source plus a std::stop_callback registered on the parent's
 * token whose function calls request_stop() on the child's source (struct
 * Child below).  A chain of depth d is d such children, each on the
 * previous one's token. */
#include "bench_util.h"

/* libstdc++ 12's stop_source() passes *this to a constructor that ignores
 * it, which g++ -O2 reports as a possibly uninitialized use. */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <vector>

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

namespace {

void progress(const char *what) { fprintf(stderr, "cpp_bench: %s\n", what); }

struct Forward {
  std::stop_source *to;
  void operator()() const noexcept { to->request_stop(); }
};

/* A child token: a source of its own, stopped by the parent through a
 * callback.  The source is declared first, so it exists before the callback
 * can run (it runs at once if the parent is already stopped). */
struct Child {
  std::stop_source src;
  std::stop_callback<Forward> link;
  explicit Child(const std::stop_token &parent)
      : src(), link(parent, Forward{&src}) {}
  Child(const Child &) = delete;
  Child &operator=(const Child &) = delete;
};

/* Run f on a thread with a 512 MiB stack.  request_stop() runs callbacks
 * synchronously, so stopping the root of an emulated chain of depth d
 * recurses d levels deep (request_stop -> callback -> request_stop ...).
 * With g++ 12 -O2 depth 100,000 still fits the default 8 MiB stack, but
 * 200,000 overflows it; the big stack keeps the measurement independent of
 * frame sizes.  The stack is only reserved address space: untouched pages
 * cost nothing. */
template <class F> void on_big_stack(F f) {
  pthread_attr_t a;
  pthread_t th;
  pthread_attr_init(&a);
  pthread_attr_setstacksize(&a, (size_t)512 << 20);
  auto run = [](void *p) -> void * {
    (*static_cast<F *>(p))();
    return nullptr;
  };
  if (pthread_create(&th, &a, run, &f) != 0)
    bu_die("pthread_create (big stack)");
  pthread_join(th, nullptr);
  pthread_attr_destroy(&a);
}

/* ---- 1. check cost ----------------------------------------------------- */

/* Same loop as ct_bench's check_loop.  The token is copied into a local so
 * that its state pointer can live in a register, as the ct_token pointer
 * does on our side: each iteration then does one load of the state word,
 * forced by the barrier. */
__attribute__((noinline)) size_t check_loop(const std::stop_token &t,
                                            size_t n) {
  std::stop_token local(t);
  size_t hits = 0;
  for (size_t i = 0; i < n; i++) {
    if (local.stop_requested())
      hits++;
    BU_BARRIER();
  }
  return hits;
}

double time_check(const std::stop_token &t, size_t n) {
  int64_t t0 = bu_now();
  size_t hits = check_loop(t, n);
  int64_t t1 = bu_now();
  if (hits != 0)
    bu_die("check loop saw a stopped token");
  return (double)(t1 - t0) / (double)n;
}

/* root -> l[0] -> ... -> l[depth-1]. */
std::vector<std::unique_ptr<Child>> make_chain(const std::stop_source &root,
                                               size_t depth) {
  std::vector<std::unique_ptr<Child>> l(depth);
  for (size_t i = 0; i < depth; i++)
    l[i] = std::make_unique<Child>(i ? l[i - 1]->src.get_token()
                                     : root.get_token());
  return l;
}

void bench_check(const bu_config *c) {
  static const size_t depths[] = {10, 100, 10000};
  std::vector<double> v(c->reps);
  progress("check");
  {
    std::stop_source s;
    std::stop_token t = s.get_token();
    time_check(t, c->check_iters / 10);
    for (size_t r = 0; r < c->reps; r++)
      v[r] = time_check(t, c->check_iters);
    bu_emit("check.plain", "ns/check", v.data(), c->reps,
            "stop_token::stop_requested()");
  }
  for (size_t depth : depths) {
    char key[64];
    std::stop_source root;
    auto l = make_chain(root, depth);
    std::stop_token leaf = l[depth - 1]->src.get_token();
    time_check(leaf, c->check_iters / 10);
    for (size_t r = 0; r < c->reps; r++)
      v[r] = time_check(leaf, c->check_iters);
    snprintf(key, sizeof key, "check.depth%zu", depth);
    bu_emit(key, "ns/check", v.data(), c->reps,
            "leaf of an emulated chain (stop_callback -> request_stop)");
  }
}

/* ---- 2. fan-out and deep chain ------------------------------------------ */

/* As bench_fanout in ct_bench.c: per repetition a fresh generation (trim,
 * create, stop the root, destroy in random order) and a recycled one
 * (create at scattered addresses, stop, destroy in creation order). */
int64_t make_children(std::vector<std::unique_ptr<Child>> &kids,
                      std::unique_ptr<std::stop_source> &root) {
  root = std::make_unique<std::stop_source>();
  std::stop_token tok = root->get_token();
  int64_t t0 = bu_now();
  for (auto &k : kids)
    k = std::make_unique<Child>(tok);
  return bu_now() - t0;
}

int64_t trigger_children(std::vector<std::unique_ptr<Child>> &kids,
                         std::stop_source &root) {
  int64_t t0 = bu_now();
  root.request_stop();
  int64_t t1 = bu_now();
  for (auto &k : kids)
    if (!k->src.stop_requested())
      bu_die("fanout: a child was not stopped by its root");
  return t1 - t0;
}

void bench_fanout(const bu_config *c) {
  enum { CREATE, TRIGGER, DESTROY_RANDOM, CREATE2, TRIGGER2, DESTROY, NF };
  static const char *const what[NF] = {
      "create",          "trigger",          "destroy_random",
      "create_recycled", "trigger_recycled", "destroy"};
  size_t n = c->fanout_n;
  std::vector<double> v[NF];
  std::vector<std::unique_ptr<Child>> kids(n);
  std::vector<size_t> perm(n);
  std::unique_ptr<std::stop_source> root;
  char key[64], note[96];

  progress("fanout");
  bu_shuffle(perm.data(), n);
  for (size_t r = 0; r < c->reps; r++) {
    double x[NF];
    bu_trim();
    x[CREATE] = (double)make_children(kids, root);
    x[TRIGGER] = (double)trigger_children(kids, *root);
    int64_t t0 = bu_now();
    for (size_t i = 0; i < n; i++)
      kids[perm[i]].reset();
    root.reset();
    x[DESTROY_RANDOM] = (double)(bu_now() - t0);

    x[CREATE2] = (double)make_children(kids, root);
    x[TRIGGER2] = (double)trigger_children(kids, *root);
    t0 = bu_now();
    for (size_t i = 0; i < n; i++)
      kids[i].reset();
    root.reset();
    x[DESTROY] = (double)(bu_now() - t0);
    for (size_t k = 0; k < NF; k++)
      v[k].push_back(x[k] / (double)n);
  }
  snprintf(note, sizeof note,
           "n=%zu child = stop_source + stop_callback on root (heap)", n);
  for (size_t k = 0; k < NF; k++) {
    snprintf(key, sizeof key, "fanout.%s", what[k]);
    bu_emit(key, "ns/child", v[k].data(), c->reps, note);
  }
}

/* As bench_fanout_scattered in ct_bench.c: the next generation is made
 * while the previous one is destroyed in a random order, one child for one
 * child, so each new child takes the address just freed. */
void bench_fanout_scattered(const bu_config *c) {
  size_t n = c->fanout_n;
  std::vector<double> v;
  std::vector<std::unique_ptr<Child>> a(n), b(n);
  std::vector<size_t> perm(n);
  char note[96];

  progress("fanout (scattered)");
  bu_shuffle(perm.data(), n);
  for (size_t r = 0; r < c->reps; r++) {
    std::unique_ptr<std::stop_source> ra, rb;
    bu_trim();
    make_children(a, ra);
    rb = std::make_unique<std::stop_source>();
    std::stop_token tok = rb->get_token();
    for (size_t i = 0; i < n; i++) {
      a[perm[i]].reset();
      b[i] = std::make_unique<Child>(tok);
    }
    ra.reset();
    v.push_back((double)trigger_children(b, *rb) / (double)n);
    for (size_t i = 0; i < n; i++)
      b[i].reset();
    rb.reset();
  }
  snprintf(note, sizeof note,
           "n=%zu child = stop_source + stop_callback on root, scattered", n);
  bu_emit("fanout.trigger_scattered", "ns/child", v.data(), c->reps, note);
}

/* Build the emulated chain, stop its root on a big stack (see
 * on_big_stack), destroy it.  Building and destroying happen on the main
 * thread, so that the allocations come from the same (main) malloc arena
 * as on our side.  Links are destroyed in creation order, as on our side.
 * Repetition 0 is a warm-up, as in ct_bench. */
void bench_chain(const bu_config *c) {
  size_t n = c->chain_n;
  std::vector<double> vc(c->reps + 1), vt(c->reps + 1), vd(c->reps + 1);
  char note[128];

  progress("deep chain");
  for (size_t r = 0; r <= c->reps; r++) {
    bu_trim(); /* a fresh heap on both sides, as in ct_bench.c */
    auto root = std::make_unique<std::stop_source>();
    int64_t t0 = bu_now();
    auto l = make_chain(*root, n);
    int64_t t1 = bu_now(), t2 = 0, t1b = 0;
    on_big_stack([&] {
      t1b = bu_now();
      root->request_stop();
      t2 = bu_now();
    });
    if (!l[n - 1]->src.stop_requested())
      bu_die("chain: the leaf was not stopped by the root");
    int64_t t2b = bu_now();
    root.reset();
    for (size_t i = 0; i < n; i++)
      l[i].reset();
    int64_t t3 = bu_now();
    vc[r] = (double)(t1 - t0) / (double)n;
    vt[r] = (double)(t2 - t1b) / (double)n;
    vd[r] = (double)(t3 - t2b) / (double)n;
  }
  snprintf(note, sizeof note,
           "depth=%zu emulated; stop recurses once per link (512 MiB stack)",
           n);
  bu_emit("chain.create", "ns/link", vc.data() + 1, c->reps, note);
  bu_emit("chain.trigger", "ns/link", vt.data() + 1, c->reps, note);
  bu_emit("chain.destroy", "ns/link", vd.data() + 1, c->reps, note);
}

/* ---- 3. churn ------------------------------------------------------------ */

/* A child of a long-lived parent, made and destroyed churn_n times.  Two
 * forms: the Child on the stack (the idiomatic C++ form: one heap
 * allocation, the source's shared state) and on the heap (make_unique: two
 * allocations, closer to what a ct_token costs).  Warm-up as in ct_bench. */
template <bool Heap> void churn_loop(const std::stop_token &ptok, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if constexpr (Heap) {
      auto ch = std::make_unique<Child>(ptok);
      BU_BARRIER();
    } else {
      Child ch(ptok);
      BU_BARRIER();
    }
  }
}

template <bool Heap> void bench_churn_one(const bu_config *c) {
  size_t n = c->churn_n;
  std::vector<double> vt(c->reps), vm(c->reps);
  const char *key = Heap ? "churn_heap" : "churn";
  char k2[64], note[128];
  std::stop_source parent;
  std::stop_token ptok = parent.get_token();

  progress(Heap ? "churn (heap Child)" : "churn (stack Child)");
  churn_loop<Heap>(ptok, 1000);
  for (size_t r = 0; r < c->reps; r++) {
    long m0 = bu_rss_bytes();
    int64_t t0 = bu_now();
    churn_loop<Heap>(ptok, n);
    int64_t t1 = bu_now();
    long m1 = bu_rss_bytes();
    vt[r] = (double)(t1 - t0) / (double)n;
    vm[r] = (double)(m1 - m0) / 1024.0;
  }
  snprintf(note, sizeof note, "n=%zu Child on the %s", n,
           Heap ? "heap (make_unique)" : "stack");
  bu_emit(key, "ns/cycle", vt.data(), c->reps, note);
  snprintf(k2, sizeof k2, "%s.rss", key);
  bu_emit(k2, "KiB", vm.data(), c->reps, "RSS after minus RSS before the loop");
}

/* ---- 4. memory ----------------------------------------------------------- */

/* As bench_memory in ct_bench.c: the holding array is touched before the
 * first reading; the heap is trimmed before each repetition.  Three kinds:
 * a plain token (a std::stop_source held by value: its shared state is the
 * one allocation), a Child of one root, and a chain of Children. */
void bench_memory_tokens(const bu_config *c) {
  size_t n = c->mem_n;
  std::vector<double> vm(c->reps), vh(c->reps);
  /* Sources without state: the array is touched, nothing else allocated. */
  std::vector<std::stop_source> toks(n, std::stop_source(std::nostopstate));
  char note[160];
  for (size_t r = 0; r < c->reps; r++) {
    bu_trim();
    long m0 = bu_rss_bytes(), h0 = bu_heap_bytes();
    for (size_t i = 0; i < n; i++)
      toks[i] = std::stop_source();
    long m1 = bu_rss_bytes(), h1 = bu_heap_bytes();
    vm[r] = (double)(m1 - m0) / (double)n;
    vh[r] = (double)(h1 - h0) / (double)n;
    for (size_t i = 0; i < n; i++)
      toks[i] = std::stop_source(std::nostopstate);
  }
  bu_sort(vh.data(), c->reps);
  snprintf(note, sizeof note,
           "n=%zu std::stop_source by value (its shared state); malloc'd "
           "%.0f B/token",
           n, vh[c->reps / 2]);
  bu_emit("memory.token", "B/token", vm.data(), c->reps, note);
}

void bench_memory_children(const bu_config *c, bool chain) {
  size_t n = c->mem_n;
  std::vector<double> vm(c->reps), vh(c->reps);
  std::vector<std::unique_ptr<Child>> kids(n); /* zeroed, hence touched */
  char note[192];
  for (size_t r = 0; r < c->reps; r++) {
    std::stop_source root;
    std::stop_token tok = root.get_token();
    bu_trim();
    long m0 = bu_rss_bytes(), h0 = bu_heap_bytes();
    for (size_t i = 0; i < n; i++)
      kids[i] = std::make_unique<Child>(chain && i ? kids[i - 1]->src.get_token()
                                                   : tok);
    long m1 = bu_rss_bytes(), h1 = bu_heap_bytes();
    vm[r] = (double)(m1 - m0) / (double)n;
    vh[r] = (double)(h1 - h0) / (double)n;
    /* Leaf first, as glib_bench must; either order is safe here, since a
     * stop_callback keeps the state it is registered on alive. */
    for (size_t i = n; i-- > 0;)
      kids[i].reset();
  }
  bu_sort(vh.data(), c->reps);
  snprintf(note, sizeof note,
           "n=%zu %s; Child = stop_source + stop_callback (%zu B object + "
           "shared state); malloc'd %.0f B/token",
           n, chain ? "chain of Children" : "Children of one root",
           sizeof(Child), vh[c->reps / 2]);
  bu_emit(chain ? "memory.link" : "memory.child", "B/token", vm.data(),
          c->reps, note);
}

void bench_memory(const bu_config *c) {
  progress("memory");
  bench_memory_tokens(c);
  bench_memory_children(c, false);
  bench_memory_children(c, true);
}

/* ---- 5. wake-up latency -------------------------------------------------- */

struct EventfdWrite {
  int fd;
  void operator()() const noexcept {
    uint64_t one = 1;
    ssize_t k = write(fd, &one, sizeof one);
    (void)k;
  }
};

struct WakeCtx {
  std::optional<std::stop_source> src;
  std::mutex mu;
  std::condition_variable_any cv;
  int ep = -1, efd = -1;
  std::optional<std::stop_callback<EventfdWrite>> cb;
};

/* condition_variable_any::wait(lock, stop_token, pred): the standard's
 * interruptible wait; it registers a stop_callback that notifies. */
void cv_new(void *p, size_t) { static_cast<WakeCtx *>(p)->src.emplace(); }
void cv_wait(void *p, size_t) {
  auto *w = static_cast<WakeCtx *>(p);
  std::unique_lock<std::mutex> lk(w->mu);
  std::stop_token tok = w->src->get_token();
  if (w->cv.wait(lk, tok, [] { return false; }))
    bu_die("cv wait returned true");
}
void cv_fire(void *p, size_t) {
  if (!static_cast<WakeCtx *>(p)->src->request_stop())
    bu_die("request_stop returned false");
}
void cv_free(void *p, size_t) { static_cast<WakeCtx *>(p)->src.reset(); }

/* epoll on an eventfd that a stop_callback writes: how a C++ program puts
 * a stop_token into an event loop.  Setup is untimed, as on our side. */
void ep_new(void *p, size_t) {
  auto *w = static_cast<WakeCtx *>(p);
  w->src.emplace();
  w->efd = eventfd(0, EFD_CLOEXEC);
  if (w->efd < 0)
    bu_die("eventfd");
  w->cb.emplace(w->src->get_token(), EventfdWrite{w->efd});
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.fd = w->efd;
  if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->efd, &ev) != 0)
    bu_die("epoll_ctl ADD");
}
void ep_wait(void *p, size_t) {
  auto *w = static_cast<WakeCtx *>(p);
  struct epoll_event ev;
  int k;
  do
    k = epoll_wait(w->ep, &ev, 1, -1);
  while (k < 0 && errno == EINTR);
  if (k != 1)
    bu_die("epoll_wait");
}
void ep_free(void *p, size_t) {
  auto *w = static_cast<WakeCtx *>(p);
  w->cb.reset();
  epoll_ctl(w->ep, EPOLL_CTL_DEL, w->efd, nullptr);
  close(w->efd);
  w->efd = -1;
  w->src.reset();
}

/* As bench_wake in ct_bench.c, in one regime (same_cpu 0 or 1). */
void bench_wake(const bu_config *c, int same_cpu) {
  constexpr size_t NV = 2;
  static const char *const names[NV] = {"wait", "epoll"};
  static const char *const notes[NV] = {
      "condition_variable_any::wait(lock; stop_token; pred) <- request_stop",
      "epoll_wait on eventfd written by a stop_callback <- request_stop"};
  WakeCtx w;
  w.ep = epoll_create1(EPOLL_CLOEXEC);
  if (w.ep < 0)
    bu_die("epoll_create1");
  bu_wake_ops ops[NV] = {{&w, cv_new, cv_wait, cv_fire, cv_free},
                         {&w, ep_new, ep_wait, cv_fire, ep_free}};
  std::vector<double> pct[NV][BU_NPCT], lat[NV];
  double *latp[NV], *pctp[NV][BU_NPCT];
  size_t unsettled = 0;
  for (size_t k = 0; k < NV; k++) {
    lat[k].resize(c->wake_rounds);
    latp[k] = lat[k].data();
    for (size_t j = 0; j < BU_NPCT; j++) {
      pct[k][j].resize(c->reps);
      pctp[k][j] = pct[k][j].data();
    }
  }

  int cpu[2];
  progress(same_cpu ? "wake-up latency (same CPU)"
                    : "wake-up latency (cross-CPU)");
  if (bu_two_cpus(cpu) < 2 && !same_cpu) {
    printf("# wake (cross-CPU) skipped: only one CPU available\n");
    close(w.ep);
    return;
  }
  int tcpu = cpu[0], wcpu = same_cpu ? cpu[0] : cpu[1];
  /* The variants take turns round by round (see bu_wake_run); a short
   * untimed run first, as in ct_bench. */
  bu_wake_run(ops, NV, c->wake_rounds / 10, latp, tcpu, wcpu);
  for (size_t r = 0; r < c->reps; r++) {
    unsettled += bu_wake_run(ops, NV, c->wake_rounds, latp, tcpu, wcpu);
    for (size_t k = 0; k < NV; k++)
      bu_record_pcts(pctp[k], r, latp[k], c->wake_rounds);
  }
  for (size_t k = 0; k < NV; k++) {
    const char *pfx = same_cpu ? "wake_1cpu" : "wake";
    char note[192];
    snprintf(note, sizeof note, "%s; rounds=%zu%s", notes[k], c->wake_rounds,
             unsettled ? "; WARNING some waiters not seen asleep" : "");
    bu_emit_pcts(pfx, names[k], pctp[k], c->reps, note);
  }
  close(w.ep);
}

/* ---- 6. cancellable poll --------------------------------------------------- */

/* The C++ way to make poll(2) cancellable: an eventfd written by a
 * stop_callback, polled next to the real descriptor, and a stop_requested()
 * check first -- what ct_poll does for the caller. */
void bench_poll(const bu_config *c) {
  size_t n = c->poll_n;
  std::vector<double> v(c->reps);
  int fds[2];
  char note[128];

  progress("poll");
  if (pipe(fds) != 0 || write(fds[1], "x", 1) != 1)
    bu_die("pipe");
  std::stop_source src;
  std::stop_token tok = src.get_token();
  int efd = eventfd(0, EFD_CLOEXEC);
  if (efd < 0)
    bu_die("eventfd");
  std::stop_callback<EventfdWrite> cb(tok, EventfdWrite{efd});
  struct pollfd pfd[2];
  pfd[0].fd = fds[0];
  pfd[0].events = POLLIN;
  pfd[1].fd = efd;
  pfd[1].events = POLLIN;
  for (size_t i = 0; i < n / 50; i++) /* warm-up, as in ct_bench */
    if (tok.stop_requested() || poll(pfd, 2, -1) != 1)
      bu_die("poll warm-up");
  for (size_t r = 0; r < c->reps; r++) {
    int64_t t0 = bu_now();
    for (size_t i = 0; i < n; i++) {
      if (tok.stop_requested())
        bu_die("stopped");
      if (poll(pfd, 2, -1) != 1 || pfd[1].revents != 0)
        bu_die("poll");
    }
    int64_t t1 = bu_now();
    v[r] = (double)(t1 - t0) / (double)n;
  }
  snprintf(note, sizeof note,
           "n=%zu stop_requested() + poll({pipe; stop eventfd})", n);
  bu_emit("poll.cpp", "ns/call", v.data(), c->reps, note);
  close(efd);
  close(fds[0]);
  close(fds[1]);
}

} // namespace

int main(int argc, char **argv) {
  bu_config c = bu_parse_args(argc, argv);
  bu_print_config("cpp_bench", &c);
  if (bu_selected(&c, "memory"))
    bench_memory(&c);
  if (bu_selected(&c, "check"))
    bench_check(&c);
  if (bu_selected(&c, "fanout")) {
    bench_fanout(&c);
    bench_fanout_scattered(&c);
  }
  if (bu_selected(&c, "chain"))
    bench_chain(&c);
  if (bu_selected(&c, "churn")) {
    bench_churn_one<false>(&c);
    bench_churn_one<true>(&c);
  }
  if (bu_selected(&c, "wake")) {
    bench_wake(&c, 0);
    bench_wake(&c, 1);
  }
  if (bu_selected(&c, "poll"))
    bench_poll(&c);
  return 0;
}
