/* SPDX-License-Identifier: MIT
 *
 * zk_test_util.h -- what the ZooKeeper tests share: the ensemble started
 * by the ctest fixture (its directory in $CT_ZK_ENSEMBLE_DIR, else
 * $CT_ZK_ENSEMBLE_DEFAULT, set by tests/zk.cmake), a chroot of
 * their own per run, peer processes (zk_peer, spawned with posix_spawn:
 * this process holds a ZooKeeper client, so it never forks without exec)
 * and a line protocol with them.
 */
#ifndef CT_ZK_TEST_UTIL_H
#define CT_ZK_TEST_UTIL_H

#include "../test_util.h"

#include "canceltoken_zk.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* The deadline of one request that must succeed (or fail for a reason
 * other than time): failure-only, never a timing claim.  Generous, since
 * a loaded machine runs three JVMs beside the test (it was 5 or 10 s);
 * 30 s fits in the ctest time limits. */
#define ZT_OP_DEADLINE() ct_deadline_after(INT64_C(30) * 1000000000)

static char zt_dir[512];      /* the ensemble's directory */
static char zt_addr[2048];    /* zk://members/ct-test-PID */
static char zt_hosts[1024];   /* members only */

/* Read the ensemble's connect string; build this run's address. */
static inline void zt_setup(void) {
  const char *d = getenv("CT_ZK_ENSEMBLE_DIR");
  if (!d || !*d)
    d = getenv("CT_ZK_ENSEMBLE_DEFAULT"); /* ctest's, in the build tree */
  if (!d || !*d)
    fail_msg("CT_ZK_ENSEMBLE_DIR is not set (run through ctest or "
             "scripts/test-zk.sh, which start the ensemble)");
  snprintf(zt_dir, sizeof zt_dir, "%s", d);
  char path[600];
  snprintf(path, sizeof path, "%s/connect", d);
  FILE *f = fopen(path, "r");
  if (!f || !fgets(zt_hosts, sizeof zt_hosts, f))
    fail_msg("no ensemble in %s", d);
  fclose(f);
  zt_hosts[strcspn(zt_hosts, "\n")] = '\0';
  snprintf(zt_addr, sizeof zt_addr, "zk://%s/ct-test-%d-%ld", zt_hosts,
           (int)getpid(), (long)ct_now() % 1000000);
}

static inline void zt_quiet(void *arg, const char *msg) {
  (void)arg;
  if (getenv("ZK_TEST_VERBOSE"))
    fprintf(stderr, "client: %s\n", msg);
}

static inline ct_zk_client *zt_connect(int64_t session_ms) {
  ct_zk_options o = {0};
  o.session_timeout_ns = session_ms * 1000000LL;
  o.log = zt_quiet;
  ct_zk_client *c = NULL;
  char err[256];
  int rc = ct_zk_connect(&c, zt_addr, &o, err, sizeof err,
                         ct_deadline_after(30000000000LL));
  if (rc < 0)
    fail_msg("connect %s: %s (%s)", zt_addr, ct_err_name(rc), err);
  return c;
}

/* Run scripts/zk-ensemble.sh VERB DIR [ARG] and return its exit status. */
static inline int zt_ensemble(const char *verb, const char *arg) {
  char *argv[] = {(char *)"bash", (char *)ZK_ENSEMBLE_SH, (char *)verb,
                  zt_dir, (char *)arg, NULL};
  pid_t pid;
  if (posix_spawnp(&pid, "bash", NULL, NULL, argv, environ) != 0)
    return -1;
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The leader's member number (1..3), waiting for an election to end. */
static inline int zt_leader(void) {
  for (int i = 0; i < 300; i++) {
    char *argv[] = {(char *)"bash", (char *)ZK_ENSEMBLE_SH, (char *)"leader",
                    zt_dir, NULL};
    int fds[2];
    if (pipe(fds) < 0)
      return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    pid_t pid;
    int rc = posix_spawnp(&pid, "bash", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    char b[16] = {0};
    ssize_t n = rc == 0 ? read(fds[0], b, sizeof b - 1) : -1;
    close(fds[0]);
    int st = 0;
    if (rc == 0)
      waitpid(pid, &st, 0);
    if (n > 0 && b[0] >= '1' && b[0] <= '3')
      return b[0] - '0';
    usleep(100000);
  }
  return -1;
}

struct zt_peer {
  pid_t pid;
  int in, out;
  char buf[8192];
  size_t len;
};

/* Start zk_peer ADDR ROLE NAME [ARG]. */
static inline void zt_peer_start(struct zt_peer *p, const char *role,
                                 const char *name, const char *arg) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
    fail_msg("pipe: %s", strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  char *argv[] = {(char *)ZK_PEER, zt_addr, (char *)role, (char *)name,
                  (char *)arg, NULL};
  int rc = posix_spawn(&p->pid, ZK_PEER, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  close(out[1]);
  if (rc != 0)
    fail_msg("spawn %s: %s", ZK_PEER, strerror(rc));
  p->in = in[1];
  p->out = out[0];
  p->len = 0;
}

/* Next line from the peer (without '\n'), waiting up to timeout_ms (a
 * guard against a hang, not a timing assertion).  Fails the test on EOF
 * or timeout. */
static inline void zt_peer_line(struct zt_peer *p, char *line, size_t cap,
                                int timeout_ms) {
  int64_t dl = ct_deadline_after((int64_t)timeout_ms * 1000000);
  for (;;) {
    char *nl = memchr(p->buf, '\n', p->len);
    if (nl) {
      size_t n = (size_t)(nl - p->buf);
      if (n >= cap)
        n = cap - 1;
      memcpy(line, p->buf, n);
      line[n] = '\0';
      size_t used = (size_t)(nl - p->buf) + 1;
      memmove(p->buf, p->buf + used, p->len - used);
      p->len -= used;
      if (strncmp(line, "error", 5) == 0)
        fail_msg("peer %d: %s", (int)p->pid, line);
      return;
    }
    int64_t left = (dl - ct_now()) / 1000000;
    if (left <= 0)
      fail_msg("peer %d said nothing in %d ms", (int)p->pid, timeout_ms);
    struct pollfd pf = {p->out, POLLIN, 0};
    int r = poll(&pf, 1, (int)left);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      continue;
    ssize_t n = read(p->out, p->buf + p->len, sizeof p->buf - 1 - p->len);
    if (n <= 0)
      fail_msg("peer %d ended (read %zd)", (int)p->pid, n);
    p->len += (size_t)n;
  }
}

static inline void zt_peer_send(struct zt_peer *p, const char *s) {
  size_t n = strlen(s);
  if (write(p->in, s, n) != (ssize_t)n)
    fail_msg("write to peer %d: %s", (int)p->pid, strerror(errno));
}

/* Close its stdin and reap it; returns its exit status (or 128+signal). */
static inline int zt_peer_end(struct zt_peer *p) {
  if (p->in >= 0)
    close(p->in);
  p->in = -1;
  int st = 0;
  while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR) {
  }
  close(p->out);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static inline void zt_peer_kill(struct zt_peer *p, int sig) {
  kill(p->pid, sig);
}

#endif /* CT_ZK_TEST_UTIL_H */
