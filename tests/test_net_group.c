/* SPDX-License-Identifier: MIT
 *
 * test_net_group.c -- the I/O group a client names in its HELLO
 * (docs/PROTOCOL.md, HELLO): the server sends a notice to the connections
 * of one group one after the other (src/remote/server_proto.c), over TCP
 * as over Unix sockets, and the client library names one group per
 * process (src/remote/client_io.c, client_group()); and where a notice's
 * sends are cut between the server's sending threads (server_fanout.c,
 * net_fanout_cut(): at a change of group); and the sort that puts a
 * notice's subscribers in group order (net_group_sort(), a radix sort,
 * against qsort()).
 *
 * How the order is seen.  The test holds raw connections that speak the
 * protocol by hand, each with the group it is told to name, all in one
 * epoll set (edge-triggered) that nobody waits on while the notice goes
 * out.  epoll's ready list is kept in the order in which the sockets
 * became readable, so one epoll_wait() once every socket is readable
 * (checked with poll(), which leaves that list alone) returns them in the
 * order the server's sends arrived.  A Unix socket's send() queues the
 * data on the receiver in the sender's call, so there the order is the
 * send order exactly.  Loopback TCP runs the receiver in the sender's
 * call too, unless the kernel defers it to ksoftirqd under load, when two
 * sends made on different CPUs could be seen swapped: the TCP case tries
 * up to twenty notices (stopping at the first) and needs one that is seen
 * in group order, where a server that ignores the group sends every
 * notice in subscription order (groups interleaved) and fails all twenty.
 * Fewer than 64 subscribers, so the server's loop thread sends alone
 * (server_fanout.c: helpers from 64 on) and the send order is one
 * thread's.  No timing: waits are
 * unbounded and the ctest TIMEOUT turns a hang into a failure.
 */
#include "net_test_util.h"

#include "net_internal.h" /* net_fanout_cut(), net_group_sort(): hooks */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <sys/epoll.h>

#define GROUPS 3
#define PER_GROUP 8
#define NCONN (GROUPS * PER_GROUP) /* < 64: the loop thread sends alone */
#define TRIALS 20

/* Distinct 64-bit groups that differ in both halves. */
static const uint64_t group_of[GROUPS] = {
    UINT64_C(0x0123456789abcdef), UINT64_C(0xfedcba9876543210),
    UINT64_C(0x00000001ffffffff)};

/* A blocking socket connected to a Unix path or "127.0.0.1:port". */
static int raw_connect(const char *addr) {
  if (addr[0] == '/')
    return t_raw_connect(addr);
  const char *colon = strrchr(addr, ':');
  assert_non_null(colon);
  struct sockaddr_in in = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)atoi(colon + 1))};
  assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &in.sin_addr), 1);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  assert_int_equal(connect(fd, (struct sockaddr *)&in, sizeof in), 0);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct timeval tv = {30, 0}; /* a hang becomes a failure */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

/* Handshake with a server without a secret; HELLO carries `group` when
 * with_group, else it is the 40-byte HELLO of an older client. */
static void handshake(int fd, bool with_group, uint64_t group) {
  uint8_t b[512];
  size_t n;
  uint8_t h[48] = {'C', 'T', 'N', 'T', 0, 1, 0, 1};
  t_put32(h + 40, (uint32_t)(group >> 32));
  t_put32(h + 44, (uint32_t)group);
  t_raw_send(fd, 0x01, h, with_group ? 48 : 40);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x02); /* WELCOME */
  uint8_t proof[32] = {0};
  t_raw_send(fd, 0x03, proof, sizeof proof);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x04); /* READY */
}

/* GET name (request id 1): the TOKEN reply, not triggered. */
static void get(int fd, const char *name) {
  uint8_t b[512];
  size_t n, len = strlen(name);
  uint8_t q[64];
  t_put32(q, 1);
  memcpy(q + 4, name, len);
  t_raw_send(fd, 0x10, q, 4 + len);
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x11); /* TOKEN */
  assert_int_equal(t_get32(b), 1);
  assert_int_equal(b[8], 0); /* not triggered yet: subscribed */
}

/* Block until every fd is readable (poll(): epoll's list is left as it
 * is). */
static void all_readable(const int *fd, int n) {
  struct pollfd p[NCONN];
  for (;;) {
    int ready = 0;
    for (int i = 0; i < n; i++)
      p[i] = (struct pollfd){.fd = fd[i], .events = POLLIN};
    assert_true(poll(p, (nfds_t)n, -1) >= 0);
    for (int i = 0; i < n; i++)
      ready += (p[i].revents & POLLIN) != 0;
    if (ready == n)
      return;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

/* Subscribe fd[0..n) to `name` (in index order) and have the owner
 * trigger it; return in order[] the connection indexes in the order their
 * NOTIFY arrived, after checking that each got one NOTIFY. */
static void notice_order(ct_token *tok, const char *name, const int *fd,
                         int n, int *order) {
  for (int i = 0; i < n; i++)
    get(fd[i], name);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  assert_true(ep >= 0);
  for (int i = 0; i < n; i++) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET,
                             .data.u32 = (uint32_t)i};
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &ev), 0);
  }
  assert_int_equal(ct_token_trigger(tok), 1);
  all_readable(fd, n);
  struct epoll_event ev[64];
  assert_int_equal(epoll_wait(ep, ev, 64, 0), n);
  for (int i = 0; i < n; i++)
    order[i] = (int)ev[i].data.u32;
  close(ep);
  for (int i = 0; i < n; i++) {
    uint8_t b[512];
    size_t len;
    assert_int_equal(t_raw_recv(fd[i], b, sizeof b, &len), 0x14); /* NOTIFY */
  }
}

/* How many runs of one group the order has (GROUPS when grouped). */
static int runs(const int *order, int n) {
  int r = 0;
  for (int i = 0; i < n; i++)
    if (i == 0 || order[i] % GROUPS != order[i - 1] % GROUPS)
      r++;
  return r;
}

/* NCONN raw connections, connection i in group i % GROUPS (so that the
 * subscription order interleaves the groups), and up to `trials` notices;
 * returns the fewest runs seen. */
static int grouped_runs(const char *address, bool with_group, int trials) {
  ct_net_server *s;
  ASSERT_OK(ct_net_server_new(&s, address, NULL));
  ct_token *tok[TRIALS];
  char names[TRIALS][16];
  for (int k = 0; k < trials; k++) {
    snprintf(names[k], sizeof names[k], "grp%d", k);
    ASSERT_OK(ct_token_new(&tok[k], names[k]));
    ASSERT_OK(ct_net_server_add(s, names[k], tok[k]));
  }
  ASSERT_OK(ct_net_server_start(s));
  char addr[300];
  assert_true(ct_net_server_address(s, addr, sizeof addr) > 0);
  int fd[NCONN];
  for (int i = 0; i < NCONN; i++) {
    fd[i] = raw_connect(addr);
    handshake(fd[i], with_group, group_of[i % GROUPS]);
  }
  int best = NCONN + 1;
  for (int k = 0; k < trials && best > GROUPS; k++) {
    int order[NCONN];
    notice_order(tok[k], names[k], fd, NCONN, order);
    int r = runs(order, NCONN);
    if (r < best)
      best = r;
    if (!with_group) /* the order of subscription, all one group */
      for (int i = 0; i < NCONN && address[0] == '/'; i++)
        assert_int_equal(order[i], i);
  }
  for (int i = 0; i < NCONN; i++)
    close(fd[i]);
  ct_net_server_free(s);
  for (int k = 0; k < trials; k++)
    ct_token_unref(tok[k]);
  return best;
}

static void test_tcp_notice_goes_to_each_hello_group_back_to_back(
    void **state) {
  (void)state;
  assert_int_equal(grouped_runs("127.0.0.1:0", true, TRIALS), GROUPS);
}

/* One process, one pid: only the HELLO's groups can order the sends. */
static void test_unix_socket_hello_group_orders_sends_within_one_pid(
    void **state) {
  (void)state;
  char dir[64], path[96];
  t_sock_path(dir, path);
  assert_int_equal(grouped_runs(path, true, 1), GROUPS);
  t_rmdir(dir, path);
}

/* An older client's 40-byte HELLO: still served; its notices go in the
 * order of subscription (asserted on the Unix socket, where the order
 * seen is the send order exactly; over TCP each still gets its NOTIFY). */
static void test_hello_without_group_is_served_in_subscription_order(
    void **state) {
  (void)state;
  char dir[64], path[96];
  t_sock_path(dir, path);
  assert_int_equal(grouped_runs(path, false, 1), NCONN);
  t_rmdir(dir, path);
  assert_true(grouped_runs("127.0.0.1:0", false, 1) >= 1);
}

/* Which group is sent to first is the server's choice (server.h,
 * group_set_key(): keys mixed with a random salt per server): a client
 * cannot name a group that always goes first.  Without the salt the key
 * is the group times a constant, which can be inverted: 0x9937733d << 32
 * has key 1 and went first on every server, whoever subscribed first.
 * With it, that group is first on one server in GROUPS, so it is first on
 * all SALT_SERVERS servers with probability (1/3)^12, about 2e-6. */
#define SALT_SERVERS 12
static void test_a_client_cannot_name_a_group_that_goes_first(void **state) {
  (void)state;
  const uint64_t liar = UINT64_C(0x9937733d00000000);
  int first = 0;
  for (int k = 0; k < SALT_SERVERS; k++) {
    char dir[64], path[96];
    t_sock_path(dir, path);
    ct_net_server *s;
    ct_token *tok;
    ASSERT_OK(ct_net_server_new(&s, path, NULL));
    ASSERT_OK(ct_token_new(&tok, "salt"));
    ASSERT_OK(ct_net_server_add(s, "salt", tok));
    ASSERT_OK(ct_net_server_start(s));
    int fd[NCONN];
    for (int i = 0; i < NCONN; i++) {
      fd[i] = raw_connect(path);
      /* the liar's group is the last to subscribe */
      handshake(fd[i], true,
                i % GROUPS == GROUPS - 1 ? liar : group_of[i % GROUPS]);
    }
    int order[NCONN];
    notice_order(tok, "salt", fd, NCONN, order);
    assert_int_equal(runs(order, NCONN), GROUPS); /* still grouped */
    first += order[0] % GROUPS == GROUPS - 1;
    for (int i = 0; i < NCONN; i++)
      close(fd[i]);
    ct_net_server_free(s);
    ct_token_unref(tok);
    t_rmdir(dir, path);
  }
  assert_true(first < SALT_SERVERS);
}

/* ---- how the sends are cut between threads ---- */

static bool same_key(const void *arg, size_t i) {
  const uint32_t *key = arg;
  return key[i] == key[i - 1];
}

/* Share boundaries move on to the next change of group when it is less
 * than half a share away, else stay at n * k / parts. */
static void test_sends_are_cut_between_threads_where_the_group_changes(
    void **state) {
  (void)state;
  enum { N = 100 };
  uint32_t key[N];
  size_t cut[5]; /* parts + 1, up to 4 parts */
  /* 10 groups of 10: the even split (50) is a boundary already. */
  for (int i = 0; i < N; i++)
    key[i] = (uint32_t)(i / 10);
  net_fanout_cut(N, 2, same_key, key, cut);
  assert_int_equal(cut[0], 0);
  assert_int_equal(cut[1], 50);
  assert_int_equal(cut[2], N);
  /* groups of 15 (0..14, 15..29, ...): 50 is inside 45..59, so the cut
   * moves to 60; thirds: 33 inside 30..44 -> 45, 66 inside 60..74 -> 75 */
  for (int i = 0; i < N; i++)
    key[i] = (uint32_t)(i / 15);
  net_fanout_cut(N, 2, same_key, key, cut);
  assert_int_equal(cut[1], 60);
  net_fanout_cut(N, 3, same_key, key, cut);
  assert_int_equal(cut[1], 45);
  assert_int_equal(cut[2], 75);
  assert_int_equal(cut[3], N);
  /* one group of 70 then one of 30: the change at 70 is less than half a
   * share (25) past 50; with 80 and 20 it is not, and 50 stands */
  for (int i = 0; i < N; i++)
    key[i] = i < 70 ? 1u : 2u;
  net_fanout_cut(N, 2, same_key, key, cut);
  assert_int_equal(cut[1], 70);
  for (int i = 0; i < N; i++)
    key[i] = i < 80 ? 1u : 2u;
  net_fanout_cut(N, 2, same_key, key, cut);
  assert_int_equal(cut[1], 50);
  /* all one group: even split; one part: the whole array */
  for (int i = 0; i < N; i++)
    key[i] = 7;
  net_fanout_cut(N, 4, same_key, key, cut);
  assert_int_equal(cut[1], 25);
  assert_int_equal(cut[2], 50);
  assert_int_equal(cut[3], 75);
  net_fanout_cut(N, 1, same_key, key, cut);
  assert_int_equal(cut[0], 0);
  assert_int_equal(cut[1], N);
}

/* ---- what the client library sends ---- */

/* Accept one connection on lfd, read its HELLO body, close it.  Returns
 * the body length; the group (0 if none) in *group. */
static size_t hello_of_next(int lfd, uint64_t *group) {
  int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  assert_true(fd >= 0);
  struct timeval tv = {30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  uint8_t b[512];
  size_t n;
  assert_int_equal(t_raw_recv(fd, b, sizeof b, &n), 0x01);
  assert_memory_equal(b, "CTNT", 4);
  *group = n >= 48 ? (uint64_t)t_get32(b + 40) << 32 | t_get32(b + 44) : 0;
  close(fd); /* the client's connect fails: we only wanted its HELLO */
  return n;
}

static void connect_and_fail(const char *path) {
  ct_net_client *c = NULL;
  int r = ct_net_client_connect(&c, path, NULL, NULL, 0, CT_FOREVER);
  if (r == 0 || c) /* the fake server closes: connect must fail */
    _exit(3);
}

static void test_client_names_one_group_per_process(void **state) {
  (void)state;
  char dir[64], path[96];
  t_sock_path(dir, path);
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
  assert_int_equal(bind(lfd, (struct sockaddr *)&un, sizeof un), 0);
  assert_int_equal(listen(lfd, 8), 0);
  /* A child connects twice, then its own child once: the connects are
   * one after the other, each fails when we close. */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(lfd);
    connect_and_fail(path);
    connect_and_fail(path);
    pid_t g = fork();
    if (g < 0)
      _exit(4);
    if (g == 0) {
      connect_and_fail(path);
      _exit(0);
    }
    int st = 0;
    if (waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
      _exit(5);
    _exit(0);
  }
  uint64_t g1, g2, g3;
  assert_int_equal(hello_of_next(lfd, &g1), 48);
  assert_int_equal(hello_of_next(lfd, &g2), 48);
  assert_int_equal(hello_of_next(lfd, &g3), 48);
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_true(g1 != 0);
  assert_true(g1 == g2); /* one process: one group */
  assert_true(g3 != 0);
  assert_true(g3 != g1); /* after fork(): a group of its own */
  close(lfd);
  t_rmdir(dir, path);
}

/* The reference order: keys are group << 32 | index with the index
 * rising in input order, so sorting whole keys is the stable sort by
 * group that net_group_sort() must produce. */
static int by_whole_key(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static uint64_t rnd_state = UINT64_C(0x9e3779b97f4a7c15);
static uint32_t rnd32(void) { /* xorshift64: reproducible */
  rnd_state ^= rnd_state << 13;
  rnd_state ^= rnd_state >> 7;
  rnd_state ^= rnd_state << 17;
  return (uint32_t)(rnd_state >> 32);
}

/* Sort n keys whose groups are drawn from `groups` values (each masked
 * with `mask`, which picks the bytes that may differ) and check the result
 * against qsort(). */
static void check_group_sort(size_t n, size_t groups, uint32_t mask) {
  uint32_t *g = calloc(groups, sizeof *g);
  uint64_t *key = calloc(n + 1, sizeof *key);
  uint64_t *tmp = calloc(n + 1, sizeof *tmp);
  uint64_t *want = calloc(n + 1, sizeof *want);
  assert_non_null(g);
  assert_non_null(key);
  assert_non_null(tmp);
  assert_non_null(want);
  for (size_t i = 0; i < groups; i++)
    g[i] = rnd32() & mask;
  for (size_t i = 0; i < n; i++)
    key[i] = want[i] = (uint64_t)g[rnd32() % groups] << 32 | i;
  qsort(want, n, sizeof *want, by_whole_key);
  net_group_sort(key, tmp, n);
  for (size_t i = 0; i < n; i++)
    if (key[i] != want[i])
      fail_msg("n %zu, %zu groups, mask %08x: key %zu is %016llx, not "
               "%016llx", n, groups, (unsigned)mask, i,
               (unsigned long long)key[i], (unsigned long long)want[i]);
  free(g), free(key), free(tmp), free(want);
}

/* The sort that groups a notice's subscribers (server_proto.c) is a radix
 * sort of the group half: stable (each group keeps its subscription
 * order), whichever of its four byte passes are skipped because every key
 * has the same byte there (an odd number of passes leaves the result in
 * the scratch array, from where it must be copied back). */
static void test_group_sort_is_a_stable_sort_by_group(void **state) {
  (void)state;
  check_group_sort(0, 1, 0);
  check_group_sort(1, 1, UINT32_MAX);
  check_group_sort(2, 2, UINT32_MAX);
  check_group_sort(1000, 10, UINT32_MAX); /* 10 processes of a bench */
  check_group_sort(10000, 20, UINT32_MAX);
  check_group_sort(10000, 10000, UINT32_MAX); /* every peer its own */
  check_group_sort(5000, 1, UINT32_MAX);      /* one group: no pass */
  check_group_sort(5000, 50, 0x000000ffu);    /* one pass */
  check_group_sort(5000, 50, 0x00ff00ffu);    /* two */
  check_group_sort(5000, 50, 0xff00ff00u | 0x0000ff00u); /* three */
  check_group_sort(70000, 300, UINT32_MAX); /* indices past 16 bits */
}

/* The index behind every per-frame lookup (net_map, net_internal.h) is
 * keyed by a secret of the process, so that a peer who picks which ids
 * it names cannot make them collide.  The keys here are the first 1,000
 * ids that the UNKEYED mixer (fmix64 alone) sends to slot 0 of a
 * 4,096-slot table -- an attacker's choice against a fixed hash: put in an
 * index grown to that size, with the old hash they formed one run of
 * 1,000 slots.  With the key they scatter; the longest run found is
 * printed, and asserted below 256 (at load 1/4 a run of even 64 has a
 * probability far below 1e-20).  The index must also find and delete
 * every one of them. */
static uint64_t unkeyed_fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= UINT64_C(0xff51afd7ed558ccd);
  k ^= k >> 33;
  k *= UINT64_C(0xc4ceb9fe1a85ec53);
  k ^= k >> 33;
  return k;
}

static void test_map_keys_chosen_to_collide_do_not(void **state) {
  (void)state;
  enum { N = 1000, CAP = 4096 };
  static uint64_t keys[N];
  size_t n = 0;
  for (uint64_t id = 0; n < N; id++)
    if ((unkeyed_fmix64(id) & (CAP - 1)) == 0)
      keys[n++] = id;
  struct net_map m = {0};
  static int vals[N];
  /* 1,000 keys, then grown to 4,096 slots by filler keys removed again. */
  for (size_t i = 0; i < N; i++)
    assert_int_equal(net_map_put(&m, keys[i], &vals[i]), 0);
  for (uint64_t f = 0; m.cap < CAP; f++)
    assert_int_equal(net_map_put(&m, UINT64_MAX - f, &vals[0]), 0);
  for (uint64_t f = 0; m.n > N; f++)
    assert_non_null(net_map_del(&m, UINT64_MAX - f));
  assert_int_equal(m.cap, CAP);
  assert_int_equal(m.n, N);
  size_t run = 0, longest = 0;
  for (size_t j = 0; j < 2 * m.cap; j++) { /* twice round: wrapped runs */
    run = m.slot[j & (m.cap - 1)].val ? run + 1 : 0;
    if (run > longest)
      longest = run;
  }
  print_message("net_map: 1,000 keys chosen to collide under the unkeyed "
                "mixer: longest run %zu slots of %zu\n", longest, m.cap);
  assert_true(longest < 256);
  for (size_t i = 0; i < N; i++)
    assert_ptr_equal(net_map_get(&m, keys[i]), &vals[i]);
  for (size_t i = 0; i < N; i++)
    assert_ptr_equal(net_map_del(&m, keys[i]), &vals[i]);
  assert_int_equal(m.n, 0);
  assert_null(net_map_get(&m, keys[0]));
  net_map_free(&m);
  /* Replacing a key of a half-full index does not grow it. */
  for (uint64_t k = 0; k < 4; k++)
    assert_int_equal(net_map_put(&m, k, &vals[k]), 0);
  assert_int_equal(m.cap, 8);
  assert_int_equal(net_map_put(&m, 2, &vals[9]), 0);
  assert_int_equal(m.cap, 8);
  assert_int_equal(m.n, 4);
  assert_ptr_equal(net_map_get(&m, 2), &vals[9]);
  net_map_free(&m);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tcp_notice_goes_to_each_hello_group_back_to_back),
      cmocka_unit_test(
          test_unix_socket_hello_group_orders_sends_within_one_pid),
      cmocka_unit_test(
          test_hello_without_group_is_served_in_subscription_order),
      cmocka_unit_test(test_client_names_one_group_per_process),
      cmocka_unit_test(test_a_client_cannot_name_a_group_that_goes_first),
      cmocka_unit_test(
          test_sends_are_cut_between_threads_where_the_group_changes),
      cmocka_unit_test(test_group_sort_is_a_stable_sort_by_group),
      cmocka_unit_test(test_map_keys_chosen_to_collide_do_not),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
