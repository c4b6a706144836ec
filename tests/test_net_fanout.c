/* SPDX-License-Identifier: MIT
 *
 * test_net_fanout.c -- one notice to many connections held by several
 * processes (src/remote/server_proto.c groups a notice's sends by peer
 * process on Unix sockets; server_fanout.c sends to contiguous runs of
 * subscribers from more than one thread).  Child processes each hold many
 * clients, the test process holds more (subscribed last, so that on a
 * Unix socket the subscribers are not already in process order and the
 * server really reorders them), and three tokens fire one after the other
 * while connections come and go:
 *   - every proxy still connected gets its notice, with the trigger's
 *     reason, detail and cause, and no proxy of a token that has not
 *     fired is triggered;
 *   - connections closed after a token fired (its subscriber array
 *     reordered) and before the next one fires are unsubscribed
 *     correctly: the server's proxy count follows, the later notices still
 *     reach everyone left, and the server frees what it must (ASan; the
 *     server checks each subscription's index in debug builds);
 *   - a client's TRIGGER reaches every other process's proxies.
 * Over a Unix socket and over TCP (where nothing is reordered, but the
 * helpers take their runs).  No timing: waits are unbounded and the ctest
 * TIMEOUT turns a hang into a failure.
 */
#include "net_test_util.h"

#include <errno.h>
#include <stdbool.h>

#define PROCS 4
#define PER_PROC 30 /* with the parent's: > 64 subscribers, helpers on */
#define MINE 10
#define NTOK 3

static const char *const names[NTOK] = {"fan-a", "fan-b", "fan-c"};

/* ---- child processes: plain checks, the exit status reports ---- */

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "child %d: check failed at line %d: %s\n",             \
              (int)getpid(), __LINE__, #cond);                                \
      _exit(1);                                                               \
    }                                                                         \
  } while (0)

static void put(int fd, char b) { CHECK(write(fd, &b, 1) == 1); }

static char take(int fd) {
  char b;
  ssize_t r;
  do
    r = read(fd, &b, 1);
  while (r < 0 && errno == EINTR);
  return r == 1 ? b : 0;
}

/* The proxy fired with this reason and detail, and names the served token
 * that fired as its cause. */
static bool fired_as(ct_token *px, ct_reason reason, int detail,
                     const char *cause) {
  int d = -1;
  ct_reason r = ct_token_reason(px, &d);
  ct_token *by = ct_token_triggered_token(px);
  const char *name = by ? ct_token_name(by) : NULL;
  if (r == reason && d == detail && name && strcmp(name, cause) == 0)
    return true;
  fprintf(stderr, "%d: proxy fired with %s/%d by %s, expected %s/%d by %s\n",
          (int)getpid(), ct_reason_name(r), d, name ? name : "(none)",
          ct_reason_name(reason), detail, cause);
  return false;
}

struct holder {
  int n;
  ct_net_client *c[PER_PROC > MINE ? PER_PROC : MINE];
  ct_token *px[PER_PROC > MINE ? PER_PROC : MINE][NTOK];
  bool live[PER_PROC > MINE ? PER_PROC : MINE];
};

static void hold(struct holder *h, const char *addr, int n) {
  h->n = n;
  for (int i = 0; i < n; i++) {
    CHECK(ct_net_client_connect(&h->c[i], addr, NULL, NULL, 0,
                                CT_FOREVER) == 0);
    for (int k = 0; k < NTOK; k++)
      CHECK(ct_net_client_get(h->c[i], &h->px[i][k], names[k],
                              CT_FOREVER) == 0);
    h->live[i] = true;
  }
}

static void drop(struct holder *h, int i) {
  for (int k = 0; k < NTOK; k++)
    ct_token_unref(h->px[i][k]);
  ct_net_client_free(h->c[i]);
  h->live[i] = false;
}

/* Every live proxy of token k fired as said; none of a later token. */
static bool all_fired(struct holder *h, int k, ct_reason reason,
                      int detail) {
  for (int i = 0; i < h->n; i++) {
    if (!h->live[i])
      continue;
    if (ct_token_wait(h->px[i][k], CT_FOREVER) != 0 ||
        !fired_as(h->px[i][k], reason, detail, names[k]))
      return false;
    for (int j = k + 1; j < NTOK; j++)
      if (ct_token_triggered(h->px[i][j]))
        return false;
  }
  return true;
}

static int live_count(const struct holder *h) {
  int n = 0;
  for (int i = 0; i < h->n; i++)
    n += h->live[i];
  return n;
}

/* Child `idx`: PER_PROC clients, minus the first, closed at once; then
 * the parent's commands on go_fd, an answer on ack_fd for each. */
static void child_main(const char *addr, int idx, int go_fd, int ack_fd) {
  static struct holder h;
  hold(&h, addr, PER_PROC);
  drop(&h, 0); /* closed before anything fires */
  put(ack_fd, 'r');
  for (;;) {
    char cmd = take(go_fd);
    switch (cmd) {
    case '1': /* the owner fired fan-a; close every other client */
      CHECK(all_fired(&h, 0, CT_REASON_USER, 5));
      for (int i = 1; i < h.n; i += 2)
        drop(&h, i);
      put(ack_fd, 'a');
      break;
    case '2': /* the owner fired fan-b */
      CHECK(all_fired(&h, 1, CT_REASON_DEADLINE, 0));
      put(ack_fd, 'a');
      break;
    case '3': { /* trigger fan-c through a proxy of ours */
      int i = 0;
      while (!h.live[i])
        i++;
      CHECK(ct_net_client_trigger(h.c[i], h.px[i][2], CT_REASON_TRIGGER, 7,
                                  CT_FOREVER) == 1);
      put(ack_fd, 'a');
      break;
    }
    case '4': /* fan-c fired */
      CHECK(all_fired(&h, 2, CT_REASON_TRIGGER, 7));
      put(ack_fd, (char)('0' + live_count(&h)));
      break;
    case 'q':
      for (int i = 0; i < h.n; i++)
        if (h.live[i])
          drop(&h, i);
      _exit(0);
    default:
      fprintf(stderr, "child %d (%d): unexpected command %d\n",
              (int)getpid(), idx, cmd);
      _exit(1);
    }
  }
}

/* ---- the parent: server, its own clients, the commands ---- */

/* Wait (no deadline) until the server counts `proxies` subscriptions:
 * closes are handled on its loop thread, after the client returned. */
static void wait_proxies(ct_net_server *s, uint64_t proxies) {
  ct_net_server_stats st;
  for (;;) {
    ct_net_server_get_stats(s, &st);
    if (st.proxies == proxies)
      return;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

static void all_acked(int ack_fd, int n, char *got) {
  for (int p = 0; p < n; p++) {
    char b = take(ack_fd);
    assert_true(b != 0); /* a child died (see its message above) */
    if (got)
      got[p] = b;
  }
}

static void command(int go[PROCS], char cmd) {
  for (int p = 0; p < PROCS; p++)
    assert_int_equal(write(go[p], &cmd, 1), 1);
}

static void scenario(const char *address) {
  ct_net_server *s;
  ASSERT_OK(ct_net_server_new(&s, address, NULL));
  ct_token *tok[NTOK];
  for (int k = 0; k < NTOK; k++) {
    ASSERT_OK(ct_token_new(&tok[k], names[k]));
    ASSERT_OK(ct_net_server_add(s, names[k], tok[k]));
  }
  char addr[300];
  assert_true(ct_net_server_address(s, addr, sizeof addr) > 0);
  int ack[2], go[PROCS];
  assert_int_equal(pipe(ack), 0);
  pid_t pid[PROCS];
  /* Fork before the server (or any client) has a thread: the children
   * connect, and their handshakes complete once the server runs. */
  for (int p = 0; p < PROCS; p++) {
    int g[2];
    assert_int_equal(pipe(g), 0);
    pid[p] = fork();
    assert_true(pid[p] >= 0);
    if (pid[p] == 0) {
      close(g[1]);
      close(ack[0]);
      for (int q = 0; q < p; q++)
        close(go[q]);
      child_main(addr, p, g[0], ack[1]);
    }
    close(g[0]);
    go[p] = g[1];
  }
  close(ack[1]);
  ASSERT_OK(ct_net_server_start(s));
  all_acked(ack[0], PROCS, NULL);
  static struct holder mine;
  memset(&mine, 0, sizeof mine);
  hold(&mine, addr, MINE); /* subscribed after every child's clients */
  int conns = PROCS * (PER_PROC - 1) + MINE;
  wait_proxies(s, (uint64_t)(NTOK * conns));

  /* fan-a by its owner; then half the children's clients go */
  assert_int_equal(ct_token_trigger_reason(tok[0], CT_REASON_USER, 5), 1);
  command(go, '1');
  all_acked(ack[0], PROCS, NULL);
  assert_true(all_fired(&mine, 0, CT_REASON_USER, 5));
  drop(&mine, 0);
  /* the children keep their even clients but the first; we lose one */
  conns = PROCS * (PER_PROC / 2 - 1) + MINE - 1;
  wait_proxies(s, (uint64_t)(NTOK * conns));

  /* fan-b by its owner, to those left */
  assert_int_equal(ct_token_trigger_reason(tok[1], CT_REASON_DEADLINE, 0), 1);
  command(go, '2');
  all_acked(ack[0], PROCS, NULL);
  assert_true(all_fired(&mine, 1, CT_REASON_DEADLINE, 0));

  /* fan-c by a client of the first child, to every process */
  char b = '3';
  assert_int_equal(write(go[0], &b, 1), 1);
  all_acked(ack[0], 1, NULL);
  assert_int_equal(ct_token_wait(tok[2], CT_FOREVER), 0);
  command(go, '4');
  char live[PROCS];
  all_acked(ack[0], PROCS, live);
  for (int p = 0; p < PROCS; p++)
    assert_int_equal(live[p] - '0', PER_PROC / 2 - 1);
  assert_true(all_fired(&mine, 2, CT_REASON_TRIGGER, 7));

  /* The children go: only our subscriptions are left. */
  command(go, 'q');
  for (int p = 0; p < PROCS; p++) {
    int st = 0;
    assert_int_equal(waitpid(pid[p], &st, 0), pid[p]);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    close(go[p]);
  }
  close(ack[0]);
  wait_proxies(s, (uint64_t)(NTOK * (MINE - 1)));
  for (int i = 0; i < MINE; i++)
    if (mine.live[i])
      drop(&mine, i);
  wait_proxies(s, 0);
  ct_net_server_free(s);
  for (int k = 0; k < NTOK; k++)
    ct_token_unref(tok[k]);
}

static void test_unix_socket_notices_reach_every_process(void **state) {
  (void)state;
  char dir[64], path[96];
  t_sock_path(dir, path);
  scenario(path);
  t_rmdir(dir, path);
}

static void test_tcp_notices_reach_every_process(void **state) {
  (void)state;
  scenario("127.0.0.1:0");
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unix_socket_notices_reach_every_process),
      cmocka_unit_test(test_tcp_notices_reach_every_process),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
