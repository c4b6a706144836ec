/* SPDX-License-Identifier: MIT
 *
 * zk_bench.c -- how fast a trigger crosses machines through a ZooKeeper
 * ensemble (here: a real 3-member ensemble on loopback,
 * scripts/zk-ensemble.sh), and what that costs next to ZooKeeper itself.
 *
 *   fanout  1,000 proxies of one token spread over 20 processes (50 each,
 *           one session per process): time from ct_zk_trigger() on the
 *           owner's token to the last proxy's callback (and the median
 *           one), over several rounds.
 *   one     one proxy in another process: ct_zk_trigger() to the proxy's
 *           callback, against a bare ZooKeeper round trip with the same C
 *           client: zoo_create() in this process to the exists-watch event
 *           in the other.  Interleaved sample by sample, so both see the
 *           same machine.
 *   lost    the owner's process SIGKILLed: time to the last of 1,000
 *           proxies reporting "owner lost", beside the negotiated session
 *           timeout.
 *
 * Children are this program again (posix_spawn + exec: a process with a
 * ZooKeeper client must not fork without exec).  They write CLOCK_MONOTONIC
 * stamps into a shared memfd; CLOCK_MONOTONIC is one clock for every
 * process on the machine.  Output lines: key,unit,median,min,max,note.
 *
 * usage: zk_bench HOSTS [--rounds R] [--samples N]
 *        HOSTS: "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
 *        (cmake --build <dir> --target zk_bench_run starts an ensemble)
 */
#define THREADED
#include <zookeeper/zookeeper.h>

#include "canceltoken_zk.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define PROCS 20
#define PER_PROC 50

static void die(const char *what, int r) {
  fprintf(stderr, "zk_bench: %s: %s\n", what, ct_strerror(r));
  exit(2);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static void quiet(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

static void stamp(ct_token *t, void *arg) {
  (void)t;
  __atomic_store_n((int64_t *)arg, ct_now(), __ATOMIC_RELEASE);
}

static ct_zk_client *connect_to(const char *addr, int64_t session_ms) {
  ct_zk_options o = {0};
  o.log = quiet;
  o.session_timeout_ns = session_ms * 1000000LL;
  o.unreachable_ns = -1;
  ct_zk_client *c;
  char err[256];
  int r = ct_zk_connect(&c, addr, &o, err, sizeof err,
                        ct_deadline_after(30000000000LL));
  if (r < 0) {
    fprintf(stderr, "zk_bench: connect %s: %s\n", addr, err);
    exit(2);
  }
  return c;
}

static int64_t *map_slots(int fd, size_t n) {
  int64_t *p = mmap(NULL, n * sizeof(int64_t), PROT_READ | PROT_WRITE,
                    MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    die("mmap", -errno);
  return p;
}

/* ---- children ---- */

/* --fan ADDR NAMEFMT ROUNDS N MEMFD BASE READYFD: N proxies of each of
 * ROUNDS tokens; proxy i of round k stamps slot k * total + base + i. */
static int child_fan(char **a) {
  const char *addr = a[0], *prefix = a[1];
  int rounds = atoi(a[2]), n = atoi(a[3]), memfd = atoi(a[4]);
  int base = atoi(a[5]), ready = atoi(a[6]);
  int total = PROCS * PER_PROC;
  int64_t *slots = map_slots(memfd, (size_t)rounds * (size_t)total);
  ct_zk_client *c = connect_to(addr, 4000);
  ct_token **px = calloc((size_t)rounds * (size_t)n, sizeof *px);
  ct_callback *cb = calloc((size_t)rounds * (size_t)n, sizeof *cb);
  for (int k = 0; k < rounds; k++)
    for (int i = 0; i < n; i++) {
      char name[64];
      snprintf(name, sizeof name, "%s%d", prefix, k);
      size_t j = (size_t)k * (size_t)n + (size_t)i;
      int r = ct_zk_get(c, &px[j], name, ct_deadline_after(30000000000LL));
      if (r < 0)
        die("get (fan-out)", r);
      ct_callback_register(&cb[j], px[j], stamp,
                           &slots[(size_t)k * (size_t)total + (size_t)base +
                                  (size_t)i]);
    }
  char b = 1;
  if (write(ready, &b, 1) != 1)
    return 2;
  pause(); /* killed by the parent; no teardown */
  return 0;
}

/* The bare round trip's watcher: stamp the slot named by the context. */
static void bare_watch(zhandle_t *zh, int type, int state, const char *path,
                       void *ctx) {
  (void)zh, (void)state, (void)path;
  if (type == ZOO_CREATED_EVENT)
    __atomic_store_n((int64_t *)ctx, ct_now(), __ATOMIC_RELEASE);
}

/* --one ADDR HOSTS CHROOT MEMFD CMDFD ACKFD: commands "p K" (attach a proxy
 * to one/K, stamp slot 2K) and "b K" (bare exists-watch on CHROOT/bare/K,
 * stamp slot 2K+1); one byte back once armed. */
static int child_one(char **a) {
  const char *addr = a[0], *hosts = a[1], *chroot = a[2];
  int memfd = atoi(a[3]), cmd = atoi(a[4]), ack = atoi(a[5]);
  int64_t *slots = map_slots(memfd, 2 * 10000);
  ct_zk_client *c = connect_to(addr, 4000);
  zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
  zhandle_t *zh = zookeeper_init(hosts, NULL, 4000, NULL, NULL, 0);
  if (!zh)
    die("zookeeper_init", -errno);
  FILE *in = fdopen(cmd, "r");
  char line[128];
  while (in && fgets(line, sizeof line, in)) {
    char kind;
    int k;
    if (sscanf(line, "%c %d", &kind, &k) != 2 || k < 0 || k >= 10000)
      break;
    if (kind == 'p') {
      ct_token *p;
      char name[32];
      snprintf(name, sizeof name, "one/%d", k);
      int r = ct_zk_get(c, &p, name, ct_deadline_after(30000000000LL));
      if (r < 0)
        die("get (one)", r);
      ct_callback *cb = calloc(1, sizeof *cb);
      ct_callback_register(cb, p, stamp, &slots[2 * k]);
    } else {
      char path[256];
      snprintf(path, sizeof path, "%s/bare/%d", chroot, k);
      struct Stat st;
      int zrc;
      do /* retried only across a lost connection */
        zrc = zoo_wexists(zh, path, bare_watch, &slots[2 * k + 1], &st);
      while (zrc == ZCONNECTIONLOSS);
    }
    char b = 1;
    if (write(ack, &b, 1) != 1)
      break;
  }
  return 0;
}

/* --owner ADDR NAME SESSION_MS READYFD: publish NAME, then wait to die. */
static int child_owner(char **a) {
  ct_zk_client *c = connect_to(a[0], atoi(a[2]));
  ct_token *t;
  ct_token_new(&t, "doomed");
  int r = ct_zk_publish(c, a[1], t, ct_deadline_after(30000000000LL));
  if (r < 0)
    die("publish (owner)", r);
  long long ms = ct_zk_session_timeout(c) / 1000000;
  if (write(atoi(a[3]), &ms, sizeof ms) != sizeof ms)
    return 2;
  pause();
  return 0;
}

/* ---- parent ---- */

static const char *self;

static pid_t spawn(char **argv) {
  pid_t pid;
  int r = posix_spawn(&pid, self, NULL, NULL, argv, environ);
  if (r != 0)
    die("posix_spawn", -r);
  return pid;
}

static int memfd_slots(size_t n) {
  int fd = memfd_create("zk_bench", 0); /* inherited by the children */
  if (fd < 0 || ftruncate(fd, (off_t)(n * sizeof(int64_t))) < 0)
    die("memfd", -errno);
  return fd;
}

/* Spawn the 20 fan-out processes on tokens PREFIX0..; wait until ready. */
static void spawn_fan(const char *addr, const char *prefix, int rounds,
                      int memfd, pid_t *pids) {
  int rp[2];
  if (pipe(rp) < 0)
    die("pipe", -errno);
  for (int p = 0; p < PROCS; p++) {
    char s_rounds[16], s_n[16], s_fd[16], s_base[16], s_ready[16];
    snprintf(s_rounds, sizeof s_rounds, "%d", rounds);
    snprintf(s_n, sizeof s_n, "%d", PER_PROC);
    snprintf(s_fd, sizeof s_fd, "%d", memfd);
    snprintf(s_base, sizeof s_base, "%d", p * PER_PROC);
    snprintf(s_ready, sizeof s_ready, "%d", rp[1]);
    char *argv[] = {(char *)self, (char *)"--fan", (char *)addr,
                    (char *)prefix, s_rounds, s_n, s_fd, s_base, s_ready,
                    NULL};
    pids[p] = spawn(argv);
  }
  close(rp[1]);
  for (int p = 0; p < PROCS; p++) {
    char b;
    if (read(rp[0], &b, 1) != 1)
      die("a fan-out process failed", -EPROTO);
  }
  close(rp[0]);
}

static void reap(pid_t *pids, int n) {
  for (int p = 0; p < n; p++) {
    kill(pids[p], SIGKILL);
    waitpid(pids[p], NULL, 0);
  }
}

/* Wait until all `n` slots from `slots` are stamped; latencies from t0. */
static void collect(int64_t *slots, int n, int64_t t0, int64_t *lat) {
  int64_t guard = ct_deadline_after(120000000000LL);
  for (;;) {
    int got = 0;
    for (int i = 0; i < n; i++) {
      int64_t v = __atomic_load_n(&slots[i], __ATOMIC_ACQUIRE);
      if (v)
        lat[got++] = v - t0;
    }
    if (got == n)
      break;
    if (ct_now() > guard)
      die("proxies never triggered", -ETIMEDOUT);
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
  qsort(lat, (size_t)n, sizeof *lat, cmp_i64);
}

static void fanout(ct_zk_client *c, const char *addr, int rounds) {
  int total = PROCS * PER_PROC;
  ct_token **tok = calloc((size_t)rounds, sizeof *tok);
  for (int k = 0; k < rounds; k++) {
    char name[32];
    snprintf(name, sizeof name, "fan%d", k);
    ct_token_new(&tok[k], name);
    int r = ct_zk_publish(c, name, tok[k], ct_deadline_after(30000000000LL));
    if (r < 0)
      die("publish (fan-out)", r);
  }
  int memfd = memfd_slots((size_t)rounds * (size_t)total);
  int64_t *slots = map_slots(memfd, (size_t)rounds * (size_t)total);
  pid_t pids[PROCS];
  spawn_fan(addr, "fan", rounds, memfd, pids);
  int64_t *last = calloc((size_t)rounds, sizeof *last);
  int64_t *med = calloc((size_t)rounds, sizeof *med);
  int64_t *lat = calloc((size_t)total, sizeof *lat);
  for (int k = 0; k < rounds; k++) {
    usleep(200000); /* let the previous round's work settle */
    int64_t t0 = ct_now();
    int r = ct_zk_trigger(c, tok[k], CT_REASON_TRIGGER, 0,
                          ct_deadline_after(30000000000LL));
    if (r != 1)
      die("trigger (fan-out)", r < 0 ? r : -EPROTO);
    collect(slots + (size_t)k * (size_t)total, total, t0, lat);
    last[k] = lat[total - 1];
    med[k] = lat[total / 2];
  }
  qsort(last, (size_t)rounds, sizeof *last, cmp_i64);
  qsort(med, (size_t)rounds, sizeof *med, cmp_i64);
  printf("zk_fanout_%d_last,ms,%.2f,%.2f,%.2f,ct_zk_trigger to the last of %d "
         "proxies (%d processes x %d, one session each; %d rounds; target "
         "p50 <= 50 ms)\n",
         total, last[rounds / 2] / 1e6, last[0] / 1e6, last[rounds - 1] / 1e6,
         total, PROCS, PER_PROC, rounds);
  printf("zk_fanout_%d_median,ms,%.2f,%.2f,%.2f,trigger to the median proxy\n",
         total, med[rounds / 2] / 1e6, med[0] / 1e6, med[rounds - 1] / 1e6);
  fflush(stdout);
  reap(pids, PROCS);
  for (int k = 0; k < rounds; k++)
    ct_token_unref(tok[k]);
  munmap(slots, (size_t)rounds * (size_t)total * sizeof(int64_t));
  close(memfd);
  free(tok), free(last), free(med), free(lat);
}

static void one(ct_zk_client *c, const char *addr, const char *hosts,
                const char *chroot, int samples) {
  int memfd = memfd_slots(2 * 10000);
  int64_t *slots = map_slots(memfd, 2 * 10000);
  /* Only the child's ends are inherited: the child must see EOF on cmd
   * when this process closes its end. */
  int cmd[2], ack[2];
  if (pipe2(cmd, O_CLOEXEC) < 0 || pipe2(ack, O_CLOEXEC) < 0 ||
      fcntl(cmd[0], F_SETFD, 0) < 0 || fcntl(ack[1], F_SETFD, 0) < 0)
    die("pipe", -errno);
  char s_fd[16], s_cmd[16], s_ack[16];
  snprintf(s_fd, sizeof s_fd, "%d", memfd);
  snprintf(s_cmd, sizeof s_cmd, "%d", cmd[0]);
  snprintf(s_ack, sizeof s_ack, "%d", ack[1]);
  char *argv[] = {(char *)self, (char *)"--one", (char *)addr, (char *)hosts,
                  (char *)chroot, s_fd, s_cmd, s_ack, NULL};
  pid_t pid = spawn(argv);
  close(cmd[0]);
  close(ack[1]);
  zhandle_t *zh = zookeeper_init(hosts, NULL, 4000, NULL, NULL, 0);
  if (!zh)
    die("zookeeper_init", -errno);
  char path[256];
  snprintf(path, sizeof path, "%s/bare", chroot);
  int zrc;
  while ((zrc = zoo_create(zh, path, "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, NULL,
                           0)) == ZCONNECTIONLOSS)
    usleep(10000);
  int64_t *ours = calloc((size_t)samples, sizeof *ours);
  int64_t *bare = calloc((size_t)samples, sizeof *bare);
  for (int k = 0; k < samples; k++) {
    ct_token *t;
    char name[32], line[64], b;
    snprintf(name, sizeof name, "one/%d", k);
    ct_token_new(&t, "one");
    int r = ct_zk_publish(c, name, t, ct_deadline_after(30000000000LL));
    if (r < 0)
      die("publish (one)", r);
    snprintf(line, sizeof line, "p %d\nb %d\n", k, k);
    if (write(cmd[1], line, strlen(line)) != (ssize_t)strlen(line) ||
        read(ack[0], &b, 1) != 1 || read(ack[0], &b, 1) != 1)
      die("child (one)", -EPROTO);
    /* ours */
    int64_t t0 = ct_now();
    r = ct_zk_trigger(c, t, CT_REASON_TRIGGER, 0,
                      ct_deadline_after(30000000000LL));
    if (r != 1)
      die("trigger (one)", r < 0 ? r : -EPROTO);
    collect(&slots[2 * k], 1, t0, &ours[k]);
    /* bare: the same client library, create -> exists-watch event */
    snprintf(path, sizeof path, "%s/bare/%d", chroot, k);
    t0 = ct_now();
    zrc = zoo_create(zh, path, "x", 1, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
    if (zrc != ZOK)
      die("bare create", -EPROTO);
    collect(&slots[2 * k + 1], 1, t0, &bare[k]);
    ct_token_unref(t);
  }
  close(cmd[1]);
  waitpid(pid, NULL, 0);
  zookeeper_close(zh);
  qsort(ours, (size_t)samples, sizeof *ours, cmp_i64);
  qsort(bare, (size_t)samples, sizeof *bare, cmp_i64);
  double o50 = ours[samples / 2] / 1e6, b50 = bare[samples / 2] / 1e6;
  printf("zk_one_p50,ms,%.3f,%.3f,%.3f,ct_zk_trigger to one proxy in another "
         "process (%d samples; min/max = p10/p90)\n",
         o50, ours[samples / 10] / 1e6, ours[samples * 9 / 10] / 1e6,
         samples);
  printf("zk_bare_p50,ms,%.3f,%.3f,%.3f,bare zoo_create to exists-watch "
         "event in another process, same C client (min/max = p10/p90)\n",
         b50, bare[samples / 10] / 1e6, bare[samples * 9 / 10] / 1e6);
  printf("zk_one_vs_bare,x,%.2f,%.2f,%.2f,ours / bare at p50 (p10, p90); "
         "target <= 1.2\n",
         o50 / b50, (double)ours[samples / 10] / (double)bare[samples / 10],
         (double)ours[samples * 9 / 10] / (double)bare[samples * 9 / 10]);
  fflush(stdout);
  munmap(slots, 2 * 10000 * sizeof(int64_t));
  close(memfd);
  free(ours), free(bare);
}

static void lost(const char *addr, int rounds) {
  int total = PROCS * PER_PROC;
  int64_t *ex = calloc((size_t)rounds, sizeof *ex);
  long long sess = 0;
  for (int k = 0; k < rounds; k++) {
    /* spawn_fan() attaches to PREFIX + round number: one round, "0" */
    char prefix[32], name[40], s_ready[16];
    snprintf(prefix, sizeof prefix, "lost%d_", k);
    snprintf(name, sizeof name, "%s0", prefix);
    int rp[2];
    if (pipe(rp) < 0)
      die("pipe", -errno);
    snprintf(s_ready, sizeof s_ready, "%d", rp[1]);
    char *argv[] = {(char *)self, (char *)"--owner", (char *)addr, name,
                    (char *)"1000", s_ready, NULL};
    pid_t owner = spawn(argv);
    close(rp[1]);
    if (read(rp[0], &sess, sizeof sess) != sizeof sess)
      die("owner process failed", -EPROTO);
    close(rp[0]);
    int memfd = memfd_slots((size_t)total);
    int64_t *slots = map_slots(memfd, (size_t)total);
    pid_t pids[PROCS];
    spawn_fan(addr, prefix, 1, memfd, pids);
    usleep(300000);
    int64_t t0 = ct_now();
    kill(owner, SIGKILL);
    waitpid(owner, NULL, 0);
    int64_t *lat = calloc((size_t)total, sizeof *lat);
    collect(slots, total, t0, lat);
    ex[k] = lat[total - 1];
    free(lat);
    reap(pids, PROCS);
    munmap(slots, (size_t)total * sizeof(int64_t));
    close(memfd);
  }
  qsort(ex, (size_t)rounds, sizeof *ex, cmp_i64);
  printf("zk_owner_lost_%d_last,ms,%.1f,%.1f,%.1f,owner SIGKILLed to the last "
         "of %d proxies reporting owner lost (session timeout %lld ms; target "
         "<= session + 1000 ms; %d rounds)\n",
         total, ex[rounds / 2] / 1e6, ex[0] / 1e6, ex[rounds - 1] / 1e6, total,
         sess, rounds);
  printf("zk_owner_lost_excess,ms,%.1f,%.1f,%.1f,the same minus the session "
         "timeout (target <= 1000)\n",
         ex[rounds / 2] / 1e6 - (double)sess, ex[0] / 1e6 - (double)sess,
         ex[rounds - 1] / 1e6 - (double)sess);
  fflush(stdout);
  free(ex);
}

int main(int argc, char **argv) {
  self = "/proc/self/exe";
  static char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    self = exe;
  }
  if (argc >= 9 && !strcmp(argv[1], "--fan"))
    return child_fan(argv + 2);
  if (argc >= 8 && !strcmp(argv[1], "--one"))
    return child_one(argv + 2);
  if (argc >= 6 && !strcmp(argv[1], "--owner"))
    return child_owner(argv + 2);
  if (argc < 2) {
    fprintf(stderr, "usage: zk_bench HOSTS [--rounds R] [--samples N]\n");
    return 2;
  }
  const char *hosts = argv[1];
  int rounds = 5, samples = 200;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--rounds"))
      rounds = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--samples"))
      samples = atoi(argv[i + 1]);
  }
  if (rounds < 1 || samples < 10 || samples > 10000)
    die("bad --rounds/--samples", -EINVAL);
  char chroot[64], addr[2048];
  snprintf(chroot, sizeof chroot, "/ct-bench-%d", (int)getpid());
  snprintf(addr, sizeof addr, "zk://%s%s", hosts, chroot);
  zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
  ct_zk_client *c = connect_to(addr, 4000);
  printf("# zk_bench: 3-member ensemble on loopback (%s), session %lld ms\n",
         hosts, (long long)(ct_zk_session_timeout(c) / 1000000));
  fanout(c, addr, rounds);
  one(c, addr, hosts, chroot, samples);
  /* the owner-lost tokens are published by the owner processes */
  lost(addr, rounds < 3 ? rounds : 3);
  ct_zk_client_free(c);
  return 0;
}
