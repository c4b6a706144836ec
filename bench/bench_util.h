/* SPDX-License-Identifier: MIT */
/* bench_util.h -- helpers shared by ct_bench.c (libcanceltoken) and
 * cpp_bench.cpp (C++20 <stop_token>) so that both sides take time, memory
 * and wake-up latency in exactly the same way and print results in the same
 * line format:
 *
 *     key,unit,median,min,max,note
 *
 * one line per figure, where median/min/max are taken over the repetitions
 * of the workload and note is free text without commas.  Lines that begin
 * with '#' are comments.  Everything here is static inline and compiles as
 * C11 and as C++20. */
#ifndef CT_BENCH_UTIL_H
#define CT_BENCH_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* A compiler barrier.  Put in the body of a timing loop, it makes the
 * compiler assume any memory may have changed, so a load in the loop (the
 * token's state word) must be done again on every iteration instead of
 * being hoisted out; it emits no instruction. */
#define BU_BARRIER() __asm__ __volatile__("" ::: "memory")

/* Both programs time with this one function: CLOCK_MONOTONIC, as ct_now(). */
static inline int64_t bu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

static inline void bu_die(const char *what) {
  fprintf(stderr, "bench: fatal: %s\n", what);
  exit(2);
}

static inline void *bu_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL)
    bu_die("out of memory");
  return p;
}

/* ---- statistics -------------------------------------------------------- */

static inline int bu_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static inline void bu_sort(double *v, size_t n) {
  qsort(v, n, sizeof *v, bu_cmp_double);
}

/* Nearest-rank percentile of an already sorted array (q in 0..1]. */
static inline double bu_percentile(const double *sorted, size_t n, double q) {
  size_t rank;
  if (n == 0)
    return 0.0;
  rank = (size_t)(q * (double)n + 0.999999);
  if (rank < 1)
    rank = 1;
  if (rank > n)
    rank = n;
  return sorted[rank - 1];
}

/* Print one result line: the median, min and max of n repetitions.  Sorts
 * v in place. */
static inline void bu_emit(const char *key, const char *unit, double *v,
                           size_t n, const char *note) {
  double med;
  if (n == 0)
    return;
  bu_sort(v, n);
  med = (n % 2) ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
  printf("%s,%s,%.4f,%.4f,%.4f,%s\n", key, unit, med, v[0], v[n - 1],
         note ? note : "");
  fflush(stdout);
}

/* The wake-up latency distribution every program reports: for each variant
 * the keys <prefix>.<variant>.p10 ... .p99, each the median over the
 * repetitions of that percentile.  run.py puts p50 and p99 in the table and
 * draws the whole set in the chart. */
#define BU_NPCT 7
static const double bu_pcts[BU_NPCT] = {0.10, 0.25, 0.50, 0.75,
                                        0.90, 0.95, 0.99};
static const char *const bu_pct_names[BU_NPCT] = {"p10", "p25", "p50", "p75",
                                                  "p90", "p95", "p99"};

/* pct[j][r] = percentile bu_pcts[j] of repetition r's sorted latencies. */
static inline void bu_record_pcts(double *const *pct, size_t r,
                                  const double *sorted, size_t n) {
  size_t j;
  for (j = 0; j < BU_NPCT; j++)
    pct[j][r] = bu_percentile(sorted, n, bu_pcts[j]);
}

/* Emit <pfx>.<name>.pNN for every percentile (sorts pct[j] in place). */
static inline void bu_emit_pcts(const char *pfx, const char *name,
                                double *const *pct, size_t reps,
                                const char *note) {
  size_t j;
  char key[96];
  for (j = 0; j < BU_NPCT; j++) {
    snprintf(key, sizeof key, "%s.%s.%s", pfx, name, bu_pct_names[j]);
    bu_emit(key, "ns", pct[j], reps, note);
  }
}

/* ---- memory ------------------------------------------------------------ */

/* Resident set size in bytes, from /proc/self/statm (second field, pages). */
static inline long bu_rss_bytes(void) {
  long size = 0, res = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL)
    return -1;
  if (fscanf(f, "%ld %ld", &size, &res) != 2)
    res = -1;
  fclose(f);
  return res < 0 ? -1 : res * sysconf(_SC_PAGESIZE);
}

/* Bytes the C allocator has handed out and not had back (glibc).  Only used
 * as a cross-check note next to the RSS figures. */
static inline long bu_heap_bytes(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  return (long)(mi.uordblks + mi.hblkhd);
#else
  return -1;
#endif
}

/* Give freed heap pages back to the kernel so that an RSS delta taken next
 * counts fresh pages only (and not pages an earlier workload left behind). */
static inline void bu_trim(void) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

/* ---- heap layout ----------------------------------------------------------
 *
 * How fast a walk over a million small objects runs depends on how they lie
 * in memory: in address order, the hardware prefetcher hides the cache
 * misses, but in scattered order every object can cost a miss.  The
 * fan-out workload therefore measures both layouts on purpose, and builds
 * each layout the same way on both sides:
 *   - "fresh": bu_trim() first, so the allocator carves the objects one
 *     after another out of coalesced free memory, in creation order (and
 *     every page is touched for the first time);
 *   - "recycled": the previous generation was destroyed in a random order
 *     (bu_shuffle, fixed seed), so the allocator's LIFO free lists hand
 *     the addresses back scattered, as in a long-running server. */

/* idx[0..n) = a pseudo-random permutation of 0..n-1 (xorshift64*, fixed
 * seed: the same permutation in every run and in both programs). */
static inline void bu_shuffle(size_t *idx, size_t n) {
  uint64_t x = 0x9e3779b97f4a7c15ull;
  size_t i;
  for (i = 0; i < n; i++)
    idx[i] = i;
  for (i = n; i > 1; i--) {
    size_t j, tmp;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    j = (size_t)((x * 0x2545f4914f6cdd1dull) % i);
    tmp = idx[i - 1];
    idx[i - 1] = idx[j];
    idx[j] = tmp;
  }
}

/* ---- threads ----------------------------------------------------------- */

static inline long bu_gettid(void) { return (long)syscall(SYS_gettid); }

/* The scheduler state letter of one of our threads ('R', 'S', ...), read
 * from /proc/self/task/<tid>/stat; '?' when it cannot be read. */
static inline char bu_thread_state(long tid) {
  char path[64], buf[512];
  const char *p;
  ssize_t len;
  int fd;
  snprintf(path, sizeof path, "/proc/self/task/%ld/stat", tid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return '?';
  len = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (len <= 0)
    return '?';
  buf[len] = '\0';
  p = strrchr(buf, ')'); /* the command name may contain anything */
  if (p == NULL || p[1] != ' ')
    return '?';
  return p[2];
}

/* ---- wake-up latency harness ---------------------------------------------
 *
 * One waiter thread and the main thread play rounds.  The variants being
 * compared take turns round by round (A B C A B C ...), so that a change in
 * machine load during the run hits all of them alike.  In round i, with
 * variant v = i % nvariants:
 *   main:   prepare(i)  -- make a fresh one-shot object (untimed)
 *           publish go = i + 1
 *   waiter: sees go, publishes ready = i + 1, calls wait(i), which blocks;
 *   main:   sees ready, then polls the waiter's scheduler state until it is
 *           'S' (asleep in the kernel: futex, epoll_wait, ...), so that
 *           every round measures a real wake-up from sleep and never a
 *           waiter that had not yet gone to sleep;
 *           t0 = now; fire(i)
 *   waiter: wait(i) returns; t1 = now; publishes done = i + 1
 *   main:   latency = t1 - t0; cleanup(i)
 * The same harness drives every variant in both programs.  The main thread
 * yields (it does not sleep) while it waits for `done`, so when both
 * threads share a CPU the waiter gets it at once. */

typedef struct bu_wake_ops {
  void *ctx;
  void (*prepare)(void *ctx, size_t i);
  void (*wait)(void *ctx, size_t i);
  void (*fire)(void *ctx, size_t i);
  void (*cleanup)(void *ctx, size_t i);
} bu_wake_ops;

typedef struct bu_wake_shared {
  const bu_wake_ops *ops;
  size_t nops;
  int waiter_cpu;
  size_t rounds;          /* in all, over every variant */
  size_t go, ready, done; /* accessed with __atomic builtins */
  long tid;
  int64_t *woke;
} bu_wake_shared;

/* ---- CPU placement ------------------------------------------------------------
 *
 * A wake-up latency depends mostly on where the two threads run, so the
 * harness pins them and reports two regimes:
 *   - cross-CPU: waiter and trigger on two different CPUs.  The wake-up
 *     travels as an inter-processor interrupt and the waiter's CPU leaves
 *     its idle state; on a virtual machine both cost a trip through the
 *     hypervisor, often ten microseconds or more, which hides the
 *     mechanism's own cost;
 *   - same CPU: both threads on one CPU.  The trigger makes the waiter
 *     runnable; it runs as soon as the triggering thread yields or is
 *     preempted.  This measures the mechanism's own path (system calls,
 *     locks, context switches), IPI-free. */

/* The first two CPUs this process may run on; returns how many exist. */
static inline int bu_two_cpus(int cpu[2]) {
  cpu_set_t set;
  int i, n = 0;
  cpu[0] = cpu[1] = 0;
  if (sched_getaffinity(0, sizeof set, &set) != 0)
    return 1;
  for (i = 0; i < CPU_SETSIZE && n < 2; i++)
    if (CPU_ISSET(i, &set))
      cpu[n++] = i;
  return n;
}

static inline void bu_pin_self(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static inline void *bu_wake_waiter(void *arg) {
  bu_wake_shared *s = (bu_wake_shared *)arg;
  size_t i;
  bu_pin_self(s->waiter_cpu);
  __atomic_store_n(&s->tid, bu_gettid(), __ATOMIC_RELEASE);
  for (i = 0; i < s->rounds; i++) {
    const bu_wake_ops *o = &s->ops[i % s->nops];
    while (__atomic_load_n(&s->go, __ATOMIC_ACQUIRE) != i + 1)
      sched_yield();
    __atomic_store_n(&s->ready, i + 1, __ATOMIC_RELEASE);
    o->wait(o->ctx, i);
    s->woke[i] = bu_now();
    __atomic_store_n(&s->done, i + 1, __ATOMIC_RELEASE);
  }
  return NULL;
}

/* Runs `rounds` rounds of each of the nops variants, interleaved;
 * lat[v][0..rounds) receives variant v's latencies in ns, sorted.  The
 * calling thread is pinned to trigger_cpu and the waiter to waiter_cpu for
 * the run; the caller's CPU affinity is restored afterwards.
 * Returns the number of rounds whose waiter was not seen asleep before the
 * trigger (expected 0; reported in the note). */
static inline size_t bu_wake_run(const bu_wake_ops *ops, size_t nops,
                                 size_t rounds, double *const *lat,
                                 int trigger_cpu, int waiter_cpu) {
  bu_wake_shared s;
  pthread_t th;
  cpu_set_t saved;
  size_t i, v, unsettled = 0;
  memset(&s, 0, sizeof s);
  s.ops = ops;
  s.nops = nops;
  s.waiter_cpu = waiter_cpu;
  pthread_getaffinity_np(pthread_self(), sizeof saved, &saved);
  bu_pin_self(trigger_cpu);
  s.rounds = rounds * nops;
  s.woke = (int64_t *)bu_xmalloc(s.rounds * sizeof *s.woke);
  if (pthread_create(&th, NULL, bu_wake_waiter, &s) != 0)
    bu_die("pthread_create");
  while (__atomic_load_n(&s.tid, __ATOMIC_ACQUIRE) == 0)
    sched_yield();
  for (i = 0; i < s.rounds; i++) {
    const bu_wake_ops *o = &ops[i % nops];
    int64_t t0;
    int tries = 0;
    o->prepare(o->ctx, i);
    __atomic_store_n(&s.go, i + 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&s.ready, __ATOMIC_ACQUIRE) != i + 1)
      sched_yield();
    /* Wait (at most ~1 s) until the waiter sleeps in the kernel. */
    while (bu_thread_state(s.tid) != 'S') {
      if (++tries > 100000) {
        unsettled++;
        break;
      }
      if (tries > 100) {
        struct timespec ts = {0, 10000};
        nanosleep(&ts, NULL);
      } else {
        sched_yield();
      }
    }
    t0 = bu_now();
    o->fire(o->ctx, i);
    while (__atomic_load_n(&s.done, __ATOMIC_ACQUIRE) != i + 1)
      sched_yield();
    lat[i % nops][i / nops] = (double)(s.woke[i] - t0);
    o->cleanup(o->ctx, i);
  }
  pthread_join(th, NULL);
  pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
  free(s.woke);
  for (v = 0; v < nops; v++)
    bu_sort(lat[v], rounds);
  return unsettled;
}

/* ---- configuration ------------------------------------------------------ */

/* Sizes shared by both programs, so that --quick means the same thing. */
typedef struct bu_config {
  int quick;
  size_t reps;        /* repetitions of each workload */
  size_t check_iters; /* checks per timing loop */
  size_t fanout_n;    /* direct children of one root */
  size_t chain_n;     /* links in the deep chain */
  size_t churn_n;     /* create/destroy cycles */
  size_t mem_n;       /* live children for the memory figure */
  size_t wake_rounds; /* rounds of the wake-up latency harness */
  size_t poll_n;      /* calls of the poll loop */
  const char *only;   /* comma-separated workload groups, or NULL for all */
} bu_config;

static inline void bu_usage(const char *prog) {
  fprintf(stderr,
          "usage: %s [--quick] [--reps N] [--only GROUP[,GROUP...]]\n"
          "groups: memory check fanout chain churn wake poll\n"
          "prints key,unit,median,min,max,note lines on stdout\n",
          prog);
  exit(2);
}

static inline bu_config bu_parse_args(int argc, char **argv) {
  bu_config c;
  int i;
  long reps = 0;
  memset(&c, 0, sizeof c);
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0)
      c.quick = 1;
    else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
      reps = strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
      c.only = argv[++i];
    else
      bu_usage(argv[0]);
  }
  if (c.quick) {
    c.reps = 3;
    c.check_iters = 5000000;
    c.fanout_n = 100000;
    c.chain_n = 10000;
    c.churn_n = 100000;
    c.mem_n = 100000;
    c.wake_rounds = 200;
    c.poll_n = 50000;
  } else {
    c.reps = 5;
    c.check_iters = 100000000;
    c.fanout_n = 1000000;
    c.chain_n = 100000;
    c.churn_n = 1000000;
    c.mem_n = 1000000;
    c.wake_rounds = 2000;
    c.poll_n = 1000000;
  }
  if (reps > 0)
    c.reps = (size_t)reps;
  return c;
}

/* Is workload group g selected by --only? */
static inline int bu_selected(const bu_config *c, const char *g) {
  size_t gl = strlen(g);
  const char *p = c->only;
  if (p == NULL)
    return 1;
  while (*p) {
    const char *e = strchr(p, ',');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if (l == gl && memcmp(p, g, l) == 0)
      return 1;
    if (e == NULL)
      break;
    p = e + 1;
  }
  return 0;
}

static inline void bu_print_config(const char *prog, const bu_config *c) {
  printf("# %s quick=%d reps=%zu check_iters=%zu fanout_n=%zu chain_n=%zu "
         "churn_n=%zu mem_n=%zu wake_rounds=%zu poll_n=%zu\n",
         prog, c->quick, c->reps, c->check_iters, c->fanout_n, c->chain_n,
         c->churn_n, c->mem_n, c->wake_rounds, c->poll_n);
  fflush(stdout);
}

#endif /* CT_BENCH_UTIL_H */
