/* SPDX-License-Identifier: MIT
 *
 * net_floor.c -- what the kernel alone costs for net_bench's fan-out: one
 * small frame to each of C connections, spread over P client processes,
 * with no cancel-token code at all (plain sockets, epoll and io_uring).
 * It measures the time from "the server decides to notify" (the stamp
 * just before its sending threads start) to "the last client has read
 * its frame", over a Unix socket and loopback TCP (TCP_NODELAY on both
 * ends, as our server and client set it).
 *
 * Design notes:
 *
 *  Topology, as bench/net_bench.c's fan-out: one server process whose
 *  sending threads are the "loop thread" (the one that stamps and sends)
 *  and S-1 helpers woken by a condition variable (S = our server's count
 *  on this machine for 64 or more subscribers, src/remote/server_fanout.c:
 *  min(CPUs, 4)); the connections are cut into S contiguous shares at
 *  process boundaries, so one process's connections are sent to one after
 *  the other, as the HELLO groups make our server do; one connection per
 *  client; the frame
 *  is our NOTIFY for net_bench's tokens (docs/PROTOCOL.md: u32 length 11,
 *  type 0x14, handle u32, reason, detail, cause "fan0": 15 bytes).
 *
 *  Variants, interleaved round by round (a b c, b c a, c a b ...) over
 *  the SAME connections, so that the machine's drift hits them alike:
 *   a  what our library does: send(MSG_NOSIGNAL | MSG_DONTWAIT) per
 *      connection from S threads; each client process has one thread in
 *      epoll_wait(64 events, level-triggered) over its connections, one
 *      recv(16388 bytes, MSG_DONTWAIT) per ready event, and our client's
 *      burst policy (src/remote/client_io.c: after a wait that returned 2
 *      or more events, poll with a zero timeout and sched_yield() for 30
 *      us after the last batch).
 *   b  plain system calls tuned (options --b-*; defaults: edge-triggered,
 *      1,024 events, no polling, as many senders as a): still one send()
 *      and one recv() per connection.  None of the settings tried beat a
 *      beyond the noise (bench/README.md, net_floor).
 *   c  io_uring (bench/net_floor_uring.c, built only with liburing;
 *      without it the program says so if asked for c): each sending thread has
 *      its own ring with its share's descriptors registered and submits
 *      its sends as batched SQEs (a few io_uring_enter calls); each client
 *      process arms one multishot recv per connection with a provided-
 *      buffer ring and waits with io_uring_submit_and_wait(1) on a ring
 *      set up SINGLE_ISSUER | DEFER_TASKRUN (the receives run in its own
 *      task when it waits, no wake-up per frame once it runs).
 *  A client process sets up its waiting for the round before it says it
 *  is ready (a fresh epoll set for a and b, closed after the round; for c
 *  the recvs are armed, and cancelled after the round), so no variant
 *  pays for another's registrations on the sockets.
 *
 *  Clocks and CPU.  Stamps are CLOCK_MONOTONIC, one clock for every
 *  process.  Each round's CPU is getrusage(): the server process over the
 *  send (its helpers included), and each client process from "ready" to
 *  its last read (it sleeps before the sends start, so that is what the
 *  round costs it).  CPU share = that CPU / (time to the last read x
 *  CPUs): near 100% means the round is CPU-bound.
 *
 * usage: net_floor [--clients C] [--procs P] [--rounds R] [--variants abc]
 *                  [--transport unix|tcp|both] [--senders S] [--pause-us U]
 *                  [--b-events N] [--b-et 0|1] [--b-spin-us U]
 *                  [--b-senders S] [--c-wait N] [--c-batch N] [--pin 0|1]
 *                  [--raw 0|1]
 *        --c-wait N: variant c's clients sleep for N completions (1, as a
 *        library must; 0: all they expect, an ideal); --c-batch N: its
 *        senders submit N sends an io_uring_enter (4096); --pin 1: sender k
 *        and client process p on CPU k and p mod CPUs; --raw 1: also a
 *        "# raw,..." line a round (transport+size, variant, round, last,
 *        first, CPU, server CPU in ms, switches per 1,000 notices).
 *        defaults: 1000 clients in 10 processes, 7 rounds of each
 *        variant, abc (ab without liburing), both transports.
 * Output: bench/bench_util.h's lines  key,unit,median,min,max,note
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net_floor.h"

#define RECV_BUF (4 + 16384) /* our client's read: NET_HDR + NET_MAX_FRAME */
#define MAX_SENDERS 8

const uint8_t nf_frame[FRAME_LEN] = {0,    0,   0,   11,  0x14, 0,  0, 0,
                                           1,    1,   0,   'f', 'a',  'n', '0'};

void nf_die(const char *what) {
  fprintf(stderr, "net_floor: %s: %s\n", what, strerror(errno));
  exit(2);
}

void nf_fail(const char *what) {
  fprintf(stderr, "net_floor: %s\n", what);
  exit(2);
}

int64_t nf_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* ---- options ---- */

struct opts {
  int clients, procs, rounds, senders, pause_us;
  const char *variants, *transport;
  int b_events, b_et, b_spin_us, b_senders, c_wait, c_batch, pin, raw;
};
static struct opts g_o = {1000, 10, 7, 0, 2000, NULL, "both",
                          1024, 1,  0, 0, 1,    4096, 0, 0};

/* --pin 1: sending thread k and client process p on CPU k and p (mod
 * CPUs), which net_bench does not do: it shows what the scheduler's
 * placement costs (idle CPUs while work waits on the other one). */
static void pin_to(int i) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (!g_o.pin || cpus < 2)
    return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET((int)(i % cpus), &set);
  if (sched_setaffinity(0, sizeof set, &set) < 0)
    nf_die("sched_setaffinity");
}

/* ---- what a process spent ---- */

struct usage {
  int64_t cpu_us, csw;
};

static struct usage usage_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (struct usage){
      (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
          ru.ru_utime.tv_usec + ru.ru_stime.tv_usec,
      ru.ru_nvcsw + ru.ru_nivcsw};
}

/* Shared between the server and its client processes (MAP_SHARED). */
struct shared {
  int variant; /* of the round the go byte starts; written before it */
  struct proc_slot p[];
};

/* ---- sockets ---- */

struct endpoint {
  bool tcp;
  struct sockaddr_storage sa;
  socklen_t len;
};

static void set_nodelay(int fd) {
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
    nf_die("TCP_NODELAY");
}

static int listen_on(struct endpoint *ep) {
  int fd = socket(ep->tcp ? AF_INET : AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    nf_die("socket");
  if (bind(fd, (struct sockaddr *)&ep->sa, ep->len) < 0 ||
      listen(fd, 4096) < 0)
    nf_die("bind/listen");
  ep->len = sizeof ep->sa;
  if (getsockname(fd, (struct sockaddr *)&ep->sa, &ep->len) < 0)
    nf_die("getsockname");
  return fd;
}

/* ---- client processes ---- */

struct client {
  int n, id, *fd, *got, go, ready, done;
  struct proc_slot *slot;
  const struct shared *sh;
  char *buf;
  struct nf_uring_client *u; /* variant c, made on its first round */
};

/* One read done: the connection's frame may be whole now. */
void nf_got(struct client *c, int i, int r, int *left, struct proc_slot *s) {
  if (r <= 0)
    nf_fail(r == 0 ? "the server closed a connection" : "recv failed");
  int before = c->got[i];
  c->got[i] += r;
  if (before < FRAME_LEN && c->got[i] >= FRAME_LEN) {
    int64_t t = nf_now();
    if (*left == c->n)
      s->first = t;
    if (--*left == 0)
      s->last = t;
  }
}

/* Variants a and b: an epoll set made for the round. */
static void wait_epoll(struct client *c, int epfd, bool lib,
                       struct proc_slot *s, int *left) {
  int maxev = lib ? 64 : g_o.b_events;
  bool et = !lib && g_o.b_et;
  int64_t spin_ns = lib ? 30000 : (int64_t)g_o.b_spin_us * 1000;
  struct epoll_event *ev = calloc((size_t)maxev, sizeof *ev);
  int64_t spin_until = 0;
  while (*left > 0) {
    bool spinning = spin_until > 0 && nf_now() < spin_until;
    int n = epoll_wait(epfd, ev, maxev, spinning ? 0 : -1);
    if (n < 0 && errno != EINTR)
      nf_die("epoll_wait");
    if (spin_ns > 0 && (n >= 2 || (n > 0 && spinning)))
      spin_until = nf_now() + spin_ns;
    else if (spinning)
      sched_yield();
    for (int k = 0; k < n; k++) {
      int i = (int)ev[k].data.u32;
      ssize_t r = recv(c->fd[i], c->buf, RECV_BUF, MSG_DONTWAIT);
      if (r < 0 && errno == EAGAIN)
        continue;
      nf_got(c, i, (int)r, left, s);
      /* Edge-triggered: a read that filled the buffer may have left more
       * (a shorter one took all there was: the next byte is a new edge). */
      while (et && r == RECV_BUF &&
             (r = recv(c->fd[i], c->buf, RECV_BUF, MSG_DONTWAIT)) > 0)
        nf_got(c, i, (int)r, left, s);
    }
  }
  free(ev);
}

static void client_main(struct client *c, const struct endpoint *ep) {
  pin_to(c->id);
  c->fd = calloc((size_t)c->n, sizeof *c->fd);
  c->got = calloc((size_t)c->n, sizeof *c->got);
  c->buf = malloc(RECV_BUF);
  for (int i = 0; i < c->n; i++) {
    int fd = socket(ep->tcp ? AF_INET : AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)&ep->sa, ep->len) < 0)
      nf_die("connect");
    if (ep->tcp)
      set_nodelay(fd);
    uint32_t id = (uint32_t)c->id;
    if (write(fd, &id, sizeof id) != sizeof id)
      nf_die("write id");
    c->fd[i] = fd;
  }
  int go = c->go;
  char b = 1;
  for (;;) {
    ssize_t rd = read(go, &b, 1);
    if (rd <= 0)
      _exit(rd == 0 ? 0 : 2); /* EOF: the rounds are over */
    /* acquire, pairing with the server's release store before the go
     * byte (the pipe orders them too; the atomic says it is shared) */
    int v = __atomic_load_n(&c->sh->variant, __ATOMIC_ACQUIRE);
    memset(c->got, 0, (size_t)c->n * sizeof *c->got);
    int ep_fd = -1;
    if (v != 'c') {
      if ((ep_fd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        nf_die("epoll_create1");
      for (int i = 0; i < c->n; i++) {
        struct epoll_event ev = {
            .events = EPOLLIN | (v == 'b' && g_o.b_et ? EPOLLET : 0),
            .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep_fd, EPOLL_CTL_ADD, c->fd[i], &ev) < 0)
          nf_die("epoll_ctl");
      }
    }
#ifdef NET_FLOOR_URING
    else {
      if (!c->u) /* the first io_uring round */
        c->u = nf_uring_client_new(c->fd, c->n, g_o.c_wait);
      nf_uring_arm(c->u);
    }
#endif
    struct proc_slot s = {0};
    int left = c->n;
    struct usage u0 = usage_now();
    if (write(c->ready, &b, 1) != 1)
      _exit(2);
    if (v != 'c')
      wait_epoll(c, ep_fd, v == 'a', &s, &left);
#ifdef NET_FLOOR_URING
    else
      nf_uring_round(c->u, c, &s, &left);
#endif
    struct usage u1 = usage_now();
    s.cpu_us = u1.cpu_us - u0.cpu_us;
    s.csw = u1.csw - u0.csw;
    *c->slot = s;
    if (ep_fd >= 0)
      close(ep_fd);
#ifdef NET_FLOOR_URING
    else
      nf_uring_disarm(c->u);
#endif
    if (write(c->done, &b, 1) != 1)
      _exit(2);
  }
}

/* ---- the server's sending threads ---- */

struct sender {
  size_t from, to; /* its share of the connections */
  pthread_t th;
  struct nf_uring_sender *u; /* variant c; NULL without io_uring */
};

/* Fork-join, as server_fanout.c: the loop thread writes cut[] and the
 * job under mu, wakes the helpers and waits under mu until each is done;
 * a helper reads them after taking mu.  The mutex hand-off orders both
 * ways, so nothing here needs an atomic.  One lock, no order to keep. */
struct server {
  int *fd;
  size_t n;
  int nsenders; /* threads: the loop thread and nsenders - 1 helpers */
  struct sender snd[MAX_SENDERS];
  pthread_mutex_t mu;
  pthread_cond_t go, done;
  uint64_t gen;   /* job number, under mu */
  int busy, job;  /* helpers still on the job; its variant; under mu */
  int parts;      /* shares of the job, under mu */
  size_t cut[MAX_SENDERS + 1]; /* share k is [cut[k], cut[k + 1]) */
  bool stop;                   /* under mu */
};

static void send_share(struct server *sv, size_t k, int variant) {
#ifdef NET_FLOOR_URING
  if (variant == 'c') {
    nf_uring_send(sv->snd[k].u);
    return;
  }
#endif
  (void)variant;
  for (size_t i = sv->cut[k]; i < sv->cut[k + 1]; i++) {
    ssize_t w;
    do
      w = send(sv->fd[i], nf_frame, FRAME_LEN, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w < 0 && errno == EINTR);
    if (w != FRAME_LEN)
      nf_fail("a send() did not send the whole frame (EAGAIN on 15 bytes?)");
  }
}

struct helper_arg {
  struct server *sv;
  size_t k;
};

static void *helper_main(void *arg) {
  struct helper_arg *h = arg;
  struct server *sv = h->sv;
  size_t k = h->k;
  free(h);
  pin_to((int)k);
#ifdef NET_FLOOR_URING
  struct sender *me = &sv->snd[k];
  me->u = nf_uring_sender_new(sv->fd + me->from, me->to - me->from,
                              (unsigned)g_o.c_batch);
#endif
  pthread_mutex_lock(&sv->mu);
  uint64_t seen = 0;
  if (--sv->busy == 0) /* set up: tell the loop thread */
    pthread_cond_signal(&sv->done);
  for (;;) {
    while (!sv->stop && sv->gen == seen)
      pthread_cond_wait(&sv->go, &sv->mu);
    if (sv->stop)
      break;
    seen = sv->gen;
    int job = sv->job;
    bool mine = (int)k < sv->parts;
    pthread_mutex_unlock(&sv->mu);
    if (mine)
      send_share(sv, k, job);
    pthread_mutex_lock(&sv->mu);
    if (--sv->busy == 0)
      pthread_cond_signal(&sv->done);
  }
  pthread_mutex_unlock(&sv->mu);
  return NULL;
}

/* Shares of n connections grouped by process (group[i] = process of i):
 * n * k / parts, moved on to the next change of process. */
static void cut_shares(struct server *sv, const int *group, int parts) {
  sv->cut[0] = 0;
  sv->cut[parts] = sv->n;
  for (int k = 1; k < parts; k++) {
    size_t at = sv->n * (size_t)k / (size_t)parts;
    if (at < sv->cut[k - 1])
      at = sv->cut[k - 1];
    while (at > 0 && at < sv->n && group[at] == group[at - 1])
      at++;
    sv->cut[k] = at;
  }
}

/* One round's sends: the loop thread's share and the helpers'. */
static void fan_out(struct server *sv, int variant, int parts) {
  pthread_mutex_lock(&sv->mu);
  sv->job = variant;
  sv->parts = parts;
  sv->busy = sv->nsenders - 1;
  sv->gen++;
  pthread_cond_broadcast(&sv->go);
  pthread_mutex_unlock(&sv->mu);
  send_share(sv, 0, variant);
  pthread_mutex_lock(&sv->mu);
  while (sv->busy > 0)
    pthread_cond_wait(&sv->done, &sv->mu);
  pthread_mutex_unlock(&sv->mu);
}

/* ---- one transport, one size ---- */

static void summary(const char *key, const char *unit, int64_t *v, int n,
                    double scale, const char *note) {
  qsort(v, (size_t)n, sizeof *v, cmp_i64);
  int prec = scale == 1.0 ? 0 : unit[0] == '%' ? 1 : 3;
  printf("%s,%s,%.*f,%.*f,%.*f,%s\n", key, unit, prec, v[n / 2] / scale,
         prec, v[0] / scale, prec, v[n - 1] / scale, note);
}

static void run(bool tcp) {
  int C = g_o.clients, P = g_o.procs < C ? g_o.procs : C;
  struct endpoint ep = {.tcp = tcp};
  char path[108] = "";
  if (tcp) {
    struct sockaddr_in *in = (struct sockaddr_in *)&ep.sa;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ep.len = sizeof *in;
  } else {
    struct sockaddr_un *un = (struct sockaddr_un *)&ep.sa;
    un->sun_family = AF_UNIX;
    snprintf(path, sizeof path, "/tmp/net-floor-%d.sock", (int)getpid());
    unlink(path);
    memcpy(un->sun_path, path, strlen(path) + 1);
    ep.len = sizeof *un;
  }
  int lfd = listen_on(&ep);
  size_t shb = sizeof(struct shared) + (size_t)P * sizeof(struct proc_slot);
  struct shared *sh = mmap(NULL, shb, PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED)
    nf_die("mmap");
  int go[2], ready[2], done[2];
  if (pipe(go) < 0 || pipe(ready) < 0 || pipe(done) < 0)
    nf_die("pipe");
  pid_t *pids = calloc((size_t)P, sizeof *pids);
  fflush(stdout);
  for (int p = 0; p < P; p++) {
    struct client c = {.n = C / P + (p < C % P), .id = p, .go = go[0],
                       .ready = ready[1], .done = done[1], .slot = &sh->p[p],
                       .sh = sh};
    if ((pids[p] = fork()) == 0) {
      close(lfd), close(go[1]), close(ready[0]), close(done[0]);
      client_main(&c, &ep);
    }
    if (pids[p] < 0)
      nf_die("fork");
  }
  close(go[0]), close(ready[1]), close(done[1]);
  /* Accept every connection; group them by process, in process order. */
  struct server sv = {.n = (size_t)C};
  sv.fd = calloc((size_t)C, sizeof *sv.fd);
  int *pfd = calloc((size_t)C, sizeof *pfd), *pid_of = calloc((size_t)C, 4);
  int *count = calloc((size_t)P + 1, sizeof *count);
  for (int i = 0; i < C; i++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    uint32_t id;
    if (fd < 0)
      nf_die("accept");
    if (read(fd, &id, sizeof id) != sizeof id || id >= (uint32_t)P)
      nf_fail("a client sent no process number");
    if (tcp)
      set_nodelay(fd);
    pfd[i] = fd, pid_of[i] = (int)id;
    count[id + 1]++;
  }
  close(lfd);
  if (!tcp)
    unlink(path);
  for (int p = 0; p < P; p++)
    count[p + 1] += count[p];
  int *group = calloc((size_t)C, sizeof *group);
  for (int i = 0; i < C; i++) {
    int at = count[pid_of[i]]++;
    sv.fd[at] = pfd[i];
    group[at] = pid_of[i];
  }
  /* Sending threads: the loop thread (this one) and the helpers. */
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus < 1)
    cpus = 1;
  int lib_senders = g_o.senders ? g_o.senders : (int)(cpus > 4 ? 4 : cpus);
  int b_senders = g_o.b_senders ? g_o.b_senders : lib_senders;
  sv.nsenders = lib_senders > b_senders ? lib_senders : b_senders;
  if (sv.nsenders > MAX_SENDERS)
    sv.nsenders = MAX_SENDERS;
  /* the io_uring rings are made per share of the library's cut */
  cut_shares(&sv, group, lib_senders);
  for (int k = 0; k < lib_senders; k++)
    sv.snd[k].from = sv.cut[k], sv.snd[k].to = sv.cut[k + 1];
  pthread_mutex_init(&sv.mu, NULL);
  pthread_cond_init(&sv.go, NULL);
  pthread_cond_init(&sv.done, NULL);
  sv.busy = sv.nsenders - 1;
  for (int k = 1; k < sv.nsenders; k++) {
    struct helper_arg *h = malloc(sizeof *h);
    if (!h)
      nf_fail("out of memory");
    *h = (struct helper_arg){&sv, (size_t)k};
    if (pthread_create(&sv.snd[k].th, NULL, helper_main, h) != 0)
      nf_fail("pthread_create");
  }
  pin_to(0);
#ifdef NET_FLOOR_URING
  sv.snd[0].u = nf_uring_sender_new(sv.fd, sv.snd[0].to, (unsigned)g_o.c_batch);
#endif
  pthread_mutex_lock(&sv.mu);
  while (sv.busy > 0)
    pthread_cond_wait(&sv.done, &sv.mu);
  pthread_mutex_unlock(&sv.mu);
  const char *vars = g_o.variants;
  int V = (int)strlen(vars), R = g_o.rounds;
  /* per variant and round: [0] last, [1] first (ns), [2] CPU, [3] CPU /
   * CPUs, [4] server CPU (us), [5] CPU share (% x 1000), [6] switches per
   * 1,000 notices; each column copied out and sorted for its summary */
  int64_t(*st)[7] = calloc((size_t)(V * R), sizeof *st);
  for (int r = 0; r < R; r++) {
    /* The order rotates from round to round (abc, bca, cab, ...), so no
     * variant always runs first or right after the same other one. */
    for (int step = 0; step < V; step++) {
      int v = (step + r) % V, var = vars[v];
#ifdef NET_FLOOR_URING
      if (var == 'c')
        for (int k = 0; k < lib_senders; k++)
          if (!sv.snd[k].u)
            nf_fail("io_uring could not be set up in the server");
#endif
      /* release: read by the clients after the go byte (acquire there);
       * no client reads it while it changes, since all wait for go */
      __atomic_store_n(&sh->variant, var, __ATOMIC_RELEASE);
      char b = 1;
      for (int p = 0; p < P; p++)
        if (write(go[1], &b, 1) != 1)
          nf_die("go");
      for (int p = 0; p < P; p++)
        if (read(ready[0], &b, 1) != 1)
          nf_fail("a client process failed");
      struct timespec ts = {0, (long)g_o.pause_us * 1000};
      nanosleep(&ts, NULL);
      int parts = var == 'b' ? b_senders : lib_senders;
      cut_shares(&sv, group, parts);
      struct usage u0 = usage_now();
      int64_t t0 = nf_now();
      fan_out(&sv, var, parts);
      struct usage u1 = usage_now();
      for (int p = 0; p < P; p++)
        if (read(done[0], &b, 1) != 1)
          nf_fail("a client process failed");
      int64_t lst = 0, fst = INT64_MAX, c_us = 0, c_sw = 0;
      for (int p = 0; p < P; p++) {
        lst = sh->p[p].last > lst ? sh->p[p].last : lst;
        fst = sh->p[p].first < fst ? sh->p[p].first : fst;
        c_us += sh->p[p].cpu_us, c_sw += sh->p[p].csw;
      }
      int64_t *x = st[v * R + r], cpu = u1.cpu_us - u0.cpu_us + c_us;
      x[0] = lst - t0, x[1] = fst - t0, x[2] = cpu, x[3] = cpu / cpus;
      x[4] = u1.cpu_us - u0.cpu_us;
      x[5] = cpu * 1000 * 100 / (x[0] / 1000 * cpus + 1);
      x[6] = (u1.csw - u0.csw + c_sw) * 1000 / C;
      if (g_o.raw) /* one line a round, for pooling several runs */
        printf("# raw,%s%d,%c,%d,%.3f,%.3f,%.3f,%.3f,%lld\n",
               tcp ? "tcp" : "unix", C, var, r, x[0] / 1e6, x[1] / 1e6,
               x[2] / 1e3, x[4] / 1e3, (long long)x[6]);
    }
  }
  static const struct {
    const char *key, *unit, *note;
    double scale;
  } rows[7] = {
      {"last", "ms", NULL, 1e6},
      {"first", "ms", "to the first read", 1e6},
      {"cpu", "ms", "CPU of the round, server + client processes "
                    "(getrusage)", 1e3},
      {"cpu_over_cpus", "ms", "that CPU / the CPUs: the round if no CPU "
                              "were ever idle", 1e3},
      {"server_cpu", "ms", "of which the server process", 1e3},
      {"cpu_share", "%", "CPU of the round / (time to the last read x "
                         "CPUs)", 1e3},
      {"switches", "per 1k", "context switches (all processes) per 1,000 "
                             "notices", 1.0}};
  int64_t *col = calloc((size_t)R, sizeof *col);
  for (int v = 0; v < V; v++) {
    char key[96], note[256];
    snprintf(note, sizeof note,
             "kernel only: decide-to-notify to the last of %d reads (%s; %d "
             "client processes; %d senders; %d rounds interleaved %s, rotated)",
             C, tcp ? "loopback TCP" : "Unix socket", P,
             vars[v] == 'b' ? b_senders : lib_senders, R, vars);
    for (int q = 0; q < 7; q++) {
      for (int r = 0; r < R; r++)
        col[r] = st[v * R + r][q];
      snprintf(key, sizeof key, "net_floor_%s%d_%c_%s", tcp ? "tcp" : "unix",
               C, vars[v], rows[q].key);
      summary(key, rows[q].unit, col, R, rows[q].scale,
              rows[q].note ? rows[q].note : note);
    }
  }
  fflush(stdout);
  pthread_mutex_lock(&sv.mu);
  sv.stop = true;
  pthread_cond_broadcast(&sv.go);
  pthread_mutex_unlock(&sv.mu);
  for (int k = 1; k < sv.nsenders; k++)
    pthread_join(sv.snd[k].th, NULL);
  close(go[1]);
  for (int p = 0; p < P; p++)
    waitpid(pids[p], NULL, 0);
  for (int i = 0; i < C; i++)
    close(sv.fd[i]);
#ifdef NET_FLOOR_URING
  for (int k = 0; k < sv.nsenders; k++)
    nf_uring_sender_free(sv.snd[k].u);
#endif
  close(ready[0]), close(done[0]);
  munmap(sh, shb);
  free(pids), free(sv.fd), free(pfd), free(pid_of), free(count), free(group);
  free(st), free(col);
}

int main(int argc, char **argv) {
  static const struct {
    const char *name;
    int *v;
  } num[] = {{"--clients", &g_o.clients},     {"--procs", &g_o.procs},
             {"--rounds", &g_o.rounds},       {"--senders", &g_o.senders},
             {"--pause-us", &g_o.pause_us},   {"--b-events", &g_o.b_events},
             {"--b-et", &g_o.b_et},           {"--b-spin-us", &g_o.b_spin_us},
             {"--b-senders", &g_o.b_senders}, {"--c-wait", &g_o.c_wait},
             {"--c-batch", &g_o.c_batch},
             {"--pin", &g_o.pin},             {"--raw", &g_o.raw}};
  bool bad = argc % 2 == 0;
  for (int i = 1; i + 1 < argc && !bad; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--variants")) {
      g_o.variants = v;
      continue;
    }
    if (!strcmp(k, "--transport")) {
      g_o.transport = v;
      continue;
    }
    size_t j = 0;
    while (j < sizeof num / sizeof *num && strcmp(k, num[j].name))
      j++;
    char *end;
    long n = strtol(v, &end, 10);
    if (j == sizeof num / sizeof *num || end == v || *end || n < 0 ||
        n > 1000000) {
      fprintf(stderr, "net_floor: bad option or value: %s %s\n", k, v);
      bad = true;
    } else {
      *num[j].v = (int)n;
    }
  }
#ifdef NET_FLOOR_URING
  if (!g_o.variants)
    g_o.variants = "abc";
#else
  if (!g_o.variants)
    g_o.variants = "ab";
  if (strchr(g_o.variants, 'c')) {
    fprintf(stderr, "net_floor: variant c (io_uring) was not built: liburing "
                    "was not found at build time (apt-get install "
                    "liburing-dev, then reconfigure)\n");
    return 69;
  }
#endif
  bool tcp = !strcmp(g_o.transport, "tcp") || !strcmp(g_o.transport, "both");
  bool unx = !strcmp(g_o.transport, "unix") || !strcmp(g_o.transport, "both");
  for (const char *p = g_o.variants; *p; p++)
    bad |= !strchr("abc", *p);
  if (bad || !*g_o.variants || !(tcp || unx) || g_o.clients < 1 ||
      g_o.procs < 1 || g_o.rounds < 1 || g_o.senders > MAX_SENDERS ||
      g_o.b_senders > MAX_SENDERS || g_o.b_events < 1 || g_o.c_batch < 1) {
    fprintf(stderr,
            "usage: net_floor [--clients C] [--procs P] [--rounds R] "
            "[--variants abc] [--transport unix|tcp|both] [--senders S] "
            "[--pause-us U] [--b-events N] [--b-et 0|1] [--b-spin-us U] "
            "[--b-senders S] [--c-wait N] [--c-batch N] [--pin 0|1] "
            "[--raw 0|1]\n");
    return 64;
  }
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  printf("# key,unit,median,min,max,note\n");
  /* For bench/run.py (--extra-cmd): these figures are not the library's. */
  printf("# figures-of: kernel only (net_floor)\n");
  if (unx)
    run(false);
  if (tcp)
    run(true);
  return 0;
}
