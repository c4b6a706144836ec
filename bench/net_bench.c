/* SPDX-License-Identifier: MIT
 *
 * net_bench.c -- how fast a trigger crosses a process boundary.
 *
 *   latency  one client on loopback (Unix socket, then TCP): time from
 *            ct_token_trigger() on the owner's token to the proxy being
 *            triggered in the client (its callback runs), over many
 *            tokens; prints p50/p90/p99.
 *   fanout   C clients connected from several processes, each holding a
 *            proxy of one token: time from the trigger until the last
 *            proxy is triggered (and the median one), repeated; over TCP
 *            (net_fanout_C_*) and over a Unix socket (net_fanout_unix_C_*).
 *            Each client is its own connection; the clients of one
 *            process share one I/O thread.  The server sends a notice to
 *            one process's connections one after the other (each HELLO
 *            names the process's I/O group, PROTOCOL.md), so that thread
 *            wakes less often than once per connection.  The round is
 *            CPU-bound: the server's threads and the client
 *            processes share the machine's CPUs, so the time to the last
 *            proxy is about (what one notice costs both sides) x clients
 *            / CPUs, plus a fixed start (see --stats).  Profiled on the
 *            shared 2-CPU machine (2026-12-01, perf -a, per notice): over a
 *            Unix socket, 1,000 clients, 10.4 us = the server's send()
 *            3.7 + the client's recv() 2.8 + epoll_wait() 1.2 (epoll polls
 *            each ready socket, cold in the cache) + the
 *            client library 1.35 + the server's own code 0.5 + other
 *            kernel work 0.4; 10,000 clients 9.6 us, the same parts;
 *            over loopback TCP 19.7 us, of which send() 11.4 (the
 *            receiving side's TCP runs inline) and recv() 3.4.  The
 *            kernel's part alone (send, recv, epoll: 7.6 us over Unix,
 *            16.4 over TCP) puts 1,000 clients at >= 3.8 ms (Unix) and
 *            8.2 ms (TCP) and 10,000 at >= 38 ms on 2 CPUs while every
 *            connection gets its own send() and recv().  The
 *            parent sleeps while a round runs: each client process writes
 *            one byte on a pipe when its proxies of the round have all
 *            fired, and the stamps are read after that (until 2026-12 it
 *            scanned them every 100 us, which at 10,000 clients took a
 *            tenth of a CPU from the processes being measured).
 *
 *   --stats  also prints, for the fan-out rounds only, what one notice
 *            costs: context switches (voluntary + involuntary) and CPU
 *            time per notice in the server's process (its loop thread and
 *            the trigger) and summed over the client processes, from
 *            getrusage() before and after the rounds; then that CPU time
 *            times the clients over the CPUs, as a share of the measured
 *            time to the last proxy (near 100%: the round is CPU-bound),
 *            and the median time from the trigger to the first proxy
 *            (the fixed start: the server's thread waking, the grouping
 *            sort, the first send, the first client waking).
 *   --only   latency | fanout | fanout_tcp | fanout_unix: run one part.
 *   NET_BENCH_PERF_CTL=FIFO  (environment) writes "enable" to FIFO before
 *            the fan-out rounds and "disable" after, for a profile of the
 *            rounds alone:  perf record -a -g -D -1 --control fifo:FIFO ...
 *
 * Output lines follow bench/bench_util.h's format:
 *     key,unit,median,min,max,note
 * Times are CLOCK_MONOTONIC, which is one clock for every process on the
 * machine, so a client process's timestamps compare with the server's.
 *
 * usage: net_bench [--samples N] [--clients C] [--procs P] [--rounds R]
 *                  [--stats 1] [--only PART]
 *        defaults: 2000 samples, 1000 clients in 10 processes, 5 rounds,
 *        no stats, every part.
 */
#include "canceltoken_net.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what, int r) {
  fprintf(stderr, "net_bench: %s: %s\n", what, ct_strerror(r));
  exit(2);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int64_t pct(int64_t *v, size_t n, double p) {
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  return v[i];
}

/* The proxy's callback: when it was triggered. */
static void stamp(ct_token *t, void *arg) {
  (void)t;
  __atomic_store_n((int64_t *)arg, ct_now(), __ATOMIC_RELEASE);
}

/* ---- latency: one client ---- */

static void latency(const char *label, const char *address, int n) {
  ct_net_server *s;
  int r = ct_net_server_new(&s, address, NULL);
  if (r < 0)
    die("server", r);
  ct_token **tok = calloc((size_t)n, sizeof *tok);
  ct_token **px = calloc((size_t)n, sizeof *px);
  ct_callback *cb = calloc((size_t)n, sizeof *cb);
  int64_t *at = calloc((size_t)n, sizeof *at), *lat = calloc((size_t)n, 8);
  for (int i = 0; i < n; i++) {
    char name[32];
    snprintf(name, sizeof name, "t%d", i);
    ct_token_new(&tok[i], name);
    ct_net_server_add(s, name, tok[i]);
  }
  ct_net_server_start(s);
  char addr[300];
  ct_net_server_address(s, addr, sizeof addr);
  ct_net_client *c;
  if ((r = ct_net_client_connect(&c, addr, NULL, NULL, 0, CT_FOREVER)) < 0)
    die("connect", r);
  for (int i = 0; i < n; i++) {
    char name[32];
    snprintf(name, sizeof name, "t%d", i);
    if ((r = ct_net_client_get(c, &px[i], name, CT_FOREVER)) < 0)
      die("get", r);
    ct_callback_register(&cb[i], px[i], stamp, &at[i]);
  }
  for (int i = 0; i < n; i++) {
    int64_t t0 = ct_now();
    ct_token_trigger(tok[i]);
    ct_token_wait(px[i], CT_FOREVER);
    while (__atomic_load_n(&at[i], __ATOMIC_ACQUIRE) == 0)
      ; /* the callback runs just after the state flips */
    lat[i] = at[i] - t0;
  }
  qsort(lat, (size_t)n, sizeof *lat, cmp_i64);
  printf("net_latency_%s_p50,us,%.1f,%.1f,%.1f,one client trigger to proxy "
         "(%d samples)\n",
         label, pct(lat, (size_t)n, 0.5) / 1e3, lat[0] / 1e3,
         lat[n - 1] / 1e3, n);
  printf("net_latency_%s_p90,us,%.1f,%.1f,%.1f,\n", label,
         pct(lat, (size_t)n, 0.9) / 1e3, lat[0] / 1e3, lat[n - 1] / 1e3);
  printf("net_latency_%s_p99,us,%.1f,%.1f,%.1f,\n", label,
         pct(lat, (size_t)n, 0.99) / 1e3, lat[0] / 1e3, lat[n - 1] / 1e3);
  fflush(stdout);
  for (int i = 0; i < n; i++) {
    ct_callback_unregister(&cb[i]);
    ct_token_unref(px[i]);
  }
  ct_net_client_free(c);
  ct_net_server_free(s);
  for (int i = 0; i < n; i++)
    ct_token_unref(tok[i]);
  free(tok), free(px), free(cb), free(at), free(lat);
}

/* ---- fan-out: many clients in several processes ---- */

static int g_stats; /* --stats */

/* perf's control FIFO (NET_BENCH_PERF_CTL), if any. */
static void perf_ctl(const char *cmd) {
  const char *path = getenv("NET_BENCH_PERF_CTL");
  if (!path || !*path)
    return;
  FILE *f = fopen(path, "w");
  if (f) {
    fputs(cmd, f);
    fclose(f);
  }
}

/* What a process spent over an interval (getrusage deltas). */
struct usage {
  int64_t csw, icsw, cpu_us;
};

static void usage_now(struct usage *u) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  u->csw = ru.ru_nvcsw;
  u->icsw = ru.ru_nivcsw;
  u->cpu_us = (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
              ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static void usage_sub(struct usage *a, const struct usage *b) {
  a->csw -= b->csw, a->icsw -= b->icsw, a->cpu_us -= b->cpu_us;
}

/* A fan-out proxy's callback: the stamp, and the last of its process's
 * proxies of that round tells the parent (one byte on done_fd), so that
 * the parent sleeps until the round is over instead of scanning the
 * stamps (which, every 100 us over 10,000 slots, took a tenth of a CPU
 * from the processes being measured). */
struct fan_arg {
  int64_t *slot;
  int *left; /* this process's proxies of the round not fired yet */
  int done_fd;
};

static void fan_stamp(ct_token *t, void *arg) {
  struct fan_arg *a = arg;
  stamp(t, a->slot);
  /* acq_rel: the proxies of one process may fire on different threads
   * (the I/O thread, or a registration that ran at once); the last one
   * writes the byte after every stamp of the round is stored. */
  if (__atomic_sub_fetch(a->left, 1, __ATOMIC_ACQ_REL) == 0) {
    char b = 1;
    if (write(a->done_fd, &b, 1) != 1)
      _exit(2);
  }
}

static void fanout_child(const char *addr, int nclients, int rounds,
                         int64_t *slots, int ready_fd, int go_fd, int done_fd,
                         struct usage *used) {
  ct_net_client **c = calloc((size_t)nclients, sizeof *c);
  ct_token **px = calloc((size_t)nclients * (size_t)rounds, sizeof *px);
  ct_callback *cb = calloc((size_t)nclients * (size_t)rounds, sizeof *cb);
  struct fan_arg *fa = calloc((size_t)nclients * (size_t)rounds, sizeof *fa);
  int *left = calloc((size_t)rounds, sizeof *left);
  for (int k = 0; k < rounds; k++)
    left[k] = nclients;
  for (int i = 0; i < nclients; i++) {
    int r = ct_net_client_connect(&c[i], addr, NULL, NULL, 0, CT_FOREVER);
    if (r < 0)
      die("connect (fan-out)", r);
    for (int k = 0; k < rounds; k++) {
      char name[32];
      snprintf(name, sizeof name, "fan%d", k);
      size_t j = (size_t)k * (size_t)nclients + (size_t)i;
      if ((r = ct_net_client_get(c[i], &px[j], name, CT_FOREVER)) < 0)
        die("get (fan-out)", r);
      fa[j] = (struct fan_arg){&slots[j], &left[k], done_fd};
      ct_callback_register(&cb[j], px[j], fan_stamp, &fa[j]);
    }
  }
  char b = 1;
  struct usage u0;
  usage_now(&u0);
  if (write(ready_fd, &b, 1) != 1)
    exit(2);
  /* the parent closes go_fd when it is done with us: the rounds are over
   * (this process does nothing else meanwhile, so what it used since
   * ready is what the rounds cost it, give or take this read) */
  while (read(go_fd, &b, 1) > 0)
    ;
  usage_now(used);
  usage_sub(used, &u0);
  _exit(0); /* no teardown: the proxies would fire OWNER_LOST */
}

static void fanout(const char *label, const char *address, int clients,
                   int procs, int rounds) {
  if (procs > clients)
    procs = clients;
  ct_net_server *s;
  int r = ct_net_server_new(&s, address, NULL);
  if (r < 0)
    die("server", r);
  ct_token **tok = calloc((size_t)rounds, sizeof *tok);
  for (int k = 0; k < rounds; k++) {
    char name[32];
    snprintf(name, sizeof name, "fan%d", k);
    ct_token_new(&tok[k], name);
    ct_net_server_add(s, name, tok[k]);
  }
  char addr[300];
  ct_net_server_address(s, addr, sizeof addr);
  size_t nslots = (size_t)clients * (size_t)rounds;
  size_t shbytes =
      nslots * sizeof(int64_t) + (size_t)procs * sizeof(struct usage);
  int64_t *shared = mmap(NULL, shbytes, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED)
    die("mmap", -errno);
  struct usage *used = (struct usage *)(shared + nslots);
  int ready[2], go[2], done[2];
  if (pipe(ready) < 0 || pipe(go) < 0 || pipe(done) < 0)
    die("pipe", -errno);
  /* fork before the server thread exists; the children only connect */
  pid_t *pids = calloc((size_t)procs, sizeof *pids);
  int base = 0;
  for (int p = 0; p < procs; p++) {
    int n = clients / procs + (p < clients % procs);
    pid_t pid = fork();
    if (pid == 0) {
      close(ready[0]);
      close(go[1]);
      close(done[0]);
      /* each child has its own region of `shared`: n * rounds slots,
       * round k of its clients at offset k * n */
      fanout_child(addr, n, rounds, shared + (size_t)base * (size_t)rounds,
                   ready[1], go[0], done[1], &used[p]);
    }
    pids[p] = pid;
    base += n;
  }
  close(ready[1]);
  close(go[0]);
  close(done[1]);
  if ((r = ct_net_server_start(s)) < 0)
    die("start", r);
  for (int p = 0; p < procs; p++) {
    char b;
    if (read(ready[0], &b, 1) != 1)
      die("a client process failed", -EPROTO);
  }
  ct_net_server_stats st;
  ct_net_server_get_stats(s, &st);
  int64_t *last = calloc((size_t)rounds, sizeof *last);
  int64_t *med = calloc((size_t)rounds, sizeof *med);
  int64_t *first = calloc((size_t)rounds, sizeof *first);
  int64_t *lat = calloc((size_t)clients, sizeof *lat);
  struct usage su0, su;
  perf_ctl("enable\n");
  usage_now(&su0);
  for (int k = 0; k < rounds; k++) {
    int64_t t0 = ct_now();
    ct_token_trigger(tok[k]);
    /* sleep until every client process says its proxies of round k all
     * fired (a byte each), then collect the stamps: child p's region
     * holds, for round k, its n clients at offset k * n */
    for (int p = 0; p < procs; p++) {
      char b;
      ssize_t rd;
      do
        rd = read(done[0], &b, 1);
      while (rd < 0 && errno == EINTR);
      if (rd != 1)
        die("a client process failed", -EPROTO);
    }
    int got = 0, b2 = 0;
    for (int p = 0; p < procs; p++) {
      int n = clients / procs + (p < clients % procs);
      int64_t *region =
          shared + (size_t)b2 * (size_t)rounds + (size_t)k * (size_t)n;
      for (int i = 0; i < n; i++) {
        int64_t v = __atomic_load_n(&region[i], __ATOMIC_ACQUIRE);
        if (!v)
          die("a proxy fired without its stamp", -EPROTO);
        lat[got++] = v - t0;
      }
      b2 += n;
    }
    qsort(lat, (size_t)clients, sizeof *lat, cmp_i64);
    last[k] = lat[clients - 1];
    med[k] = lat[clients / 2];
    first[k] = lat[0];
  }
  usage_now(&su);
  perf_ctl("disable\n");
  usage_sub(&su, &su0);
  qsort(last, (size_t)rounds, sizeof *last, cmp_i64);
  qsort(med, (size_t)rounds, sizeof *med, cmp_i64);
  qsort(first, (size_t)rounds, sizeof *first, cmp_i64);
  printf("net_fanout_%s%d_last,ms,%.2f,%.2f,%.2f,trigger to the last of %d "
         "proxies (%s; %d client processes; %llu connections; %d rounds)\n",
         label, clients, last[rounds / 2] / 1e6, last[0] / 1e6,
         last[rounds - 1] / 1e6, clients, *label ? "Unix socket" : "TCP",
         procs, (unsigned long long)st.ready, rounds);
  printf("net_fanout_%s%d_median,ms,%.2f,%.2f,%.2f,trigger to the median "
         "proxy\n",
         label, clients, med[rounds / 2] / 1e6, med[0] / 1e6,
         med[rounds - 1] / 1e6);
  fflush(stdout);
  close(go[1]);
  close(done[0]);
  struct usage cu = {0};
  for (int p = 0; p < procs; p++) {
    waitpid(pids[p], NULL, 0);
    cu.csw += used[p].csw, cu.icsw += used[p].icsw;
    cu.cpu_us += used[p].cpu_us;
  }
  if (g_stats) {
    /* The server's figures include this thread, which sleeps in read()
     * while a round runs: one switch per client process per round. */
    double nn = (double)clients * rounds;
    printf("# %s%d per notice: server process %.2f+%.2f switches "
           "(vol+invol), %.2f us CPU; clients %.2f+%.2f switches, %.2f us "
           "CPU\n",
           label, clients, su.csw / nn, su.icsw / nn, su.cpu_us / nn,
           cu.csw / nn, cu.icsw / nn, cu.cpu_us / nn);
    /* Is the round CPU-bound?  The CPU both sides spent per notice, times
     * the clients, spread over every CPU, against the measured time to
     * the last proxy: near 100% means the CPUs were busy with the
     * benchmark for the whole round (what a notice costs is then the
     * figure to cut, not a wait); well under it, time went to waiting
     * (wake-ups, idle CPUs, other processes).  The first proxy is the
     * fixed start: the trigger, the server's loop thread waking, the
     * grouping sort, the first send and the first client's wake-up. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
      cpus = 1;
    double busy_ms = (su.cpu_us + cu.cpu_us) / nn * clients / 1e3 / cpus;
    printf("# %s%d CPU-bound estimate: (server + clients) CPU per notice x "
           "%d / %ld CPUs = %.2f ms, %.0f%% of the median to the last proxy "
           "(%.2f ms); trigger to the first proxy %.3f ms (median)\n",
           label, clients, clients, cpus, busy_ms,
           100.0 * busy_ms / (last[rounds / 2] / 1e6), last[rounds / 2] / 1e6,
           first[rounds / 2] / 1e6);
    fflush(stdout);
  }
  ct_net_server_free(s);
  for (int k = 0; k < rounds; k++)
    ct_token_unref(tok[k]);
  munmap(shared, shbytes);
  free(tok), free(pids), free(last), free(med), free(first), free(lat);
}

int main(int argc, char **argv) {
  int samples = 2000, clients = 1000, procs = 10, rounds = 5;
  const char *only = "";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--samples"))
      samples = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--clients"))
      clients = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--procs"))
      procs = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--rounds"))
      rounds = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--stats"))
      g_stats = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--only"))
      only = argv[i + 1];
    else
      samples = 0; /* unknown option: usage */
  }
  bool lat = !*only || !strcmp(only, "latency");
  bool ftcp = !*only || !strcmp(only, "fanout") || !strcmp(only, "fanout_tcp");
  bool funix = !*only || !strcmp(only, "fanout") ||
               !strcmp(only, "fanout_unix");
  if (samples < 1 || clients < 1 || procs < 1 || rounds < 1 ||
      (argc % 2) == 0 || !(lat || ftcp || funix)) {
    fprintf(stderr, "usage: net_bench [--samples N] [--clients C] "
                    "[--procs P] [--rounds R] [--stats 1] [--only latency|"
                    "fanout|fanout_tcp|fanout_unix]\n");
    return 64;
  }
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { /* the server needs C fds */
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  printf("# key,unit,median,min,max,note\n");
  char path[64];
  snprintf(path, sizeof path, "/tmp/ct-net-bench-%d.sock", (int)getpid());
  if (lat) {
    latency("unix", path, samples);
    latency("tcp", "127.0.0.1:0", samples);
  }
  if (ftcp)
    fanout("", "127.0.0.1:0", clients, procs, rounds);
  snprintf(path, sizeof path, "/tmp/ct-net-fanout-%d.sock", (int)getpid());
  if (funix)
    fanout("unix_", path, clients, procs, rounds);
  return 0;
}
