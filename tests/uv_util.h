/* SPDX-License-Identifier: MIT
 *
 * uv_util.h -- what the libuv adapter's test programs (test_uv.c,
 * test_uv_ops.c) share: a loop that must end with no handle open, tokens,
 * and a thread that triggers a token.  Header-only, static inline, so each
 * program gets its own copy.
 */
#ifndef CT_TESTS_UV_UTIL_H
#define CT_TESTS_UV_UTIL_H

#include "test_util.h"

#include "canceltoken_uv.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define NPOOL 4 /* UV_THREADPOOL_SIZE, set by main() before any pool use */
#define SAFETY (INT64_C(30) * 1000 * MS) /* a deadline that fails a test */

/* The thread that runs every loop here; each test program sets it first. */
static pthread_t loop_thread __attribute__((unused));

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

static inline uv_loop_t *loop_new(void) {
  uv_loop_t *loop = malloc(sizeof *loop);
  assert_non_null(loop);
  ASSERT_OK(uv_loop_init(loop));
  return loop;
}

/* Run what is left, then the assertion every test ends with. */
static inline void loop_finish(uv_loop_t *loop) {
  int rc;
  ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
  rc = uv_loop_close(loop);
  if (rc != 0)
    uv_print_all_handles(loop, stderr);
  ASSERT_OK(rc);
  free(loop);
}

static inline ct_token *token(const char *name) {
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, name));
  return t;
}

/* A thread that waits for `ready` (if any), then triggers `t`. */
struct trigger {
  pthread_t thread;
  ct_token *ready;
  ct_token *t;
};

static inline void *trigger_main(void *arg) {
  struct trigger *tr = arg;
  if (tr->ready != NULL)
    assert_int_equal(ct_token_wait(tr->ready, ct_deadline_after(SAFETY)), 0);
  ct_token_trigger(tr->t);
  return NULL;
}

static inline void trigger_start(struct trigger *tr, ct_token *ready, ct_token *t) {
  tr->ready = ready;
  tr->t = t;
  assert_int_equal(pthread_create(&tr->thread, NULL, trigger_main, tr), 0);
}

static inline void trigger_join(struct trigger *tr) {
  assert_int_equal(pthread_join(tr->thread, NULL), 0);
}

/* Trigger t from another thread and wait until that thread is done. */
static inline void trigger_from_thread(ct_token *t) {
  struct trigger tr;
  trigger_start(&tr, NULL, t);
  trigger_join(&tr);
}

static inline void count_close(uv_handle_t *h) { (*(int *)h->data)++; }


/* Callbacks that must never run: each fails the test if it does. */
static inline void never_sleep_cb(ct_uv_sleep_t *op, int status) {
  (void)op;
  fail_msg("sleep callback ran (status %d)", status);
}
static inline void never_work(uv_work_t *req) { (void)req; }
static inline void never_fs_cb(uv_fs_t *req) { (void)req; fail_msg("fs cb ran"); }
static inline void never_connect_cb(uv_connect_t *req, int status) {
  (void)req;
  fail_msg("connect cb ran (%d)", status);
}
static inline void never_alloc(ct_uv_read_t *op, size_t n, uv_buf_t *buf) {
  (void)op;
  (void)n;
  *buf = uv_buf_init(NULL, 0);
}
static inline void never_read(ct_uv_read_t *op, ssize_t n, const uv_buf_t *buf) {
  (void)op;
  (void)buf;
  fail_msg("read cb ran (%zd)", n);
}
static inline void never_exit(uv_process_t *p, int status, int64_t es, int sig) {
  (void)p;
  fail_msg("exit cb ran (%d %lld %d)", status, (long long)es, sig);
}
static inline void never_watch(ct_uv_watch_t *w, ct_token *t) {
  (void)w;
  (void)t;
  fail_msg("watch cb ran");
}

#endif
