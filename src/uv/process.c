/* SPDX-License-Identifier: MIT
 *
 * process.c -- a child process bound to a token and a deadline (killed when
 * the binding fires), and the loop's cancellable sleep.
 *
 * Design notes:
 *  - Spawn.  The exit callback is libuv's, run once when the child has been
 *    reaped; fire() only sends the signal, so a child that ignores it keeps
 *    running and the exit callback waits for it (send SIGKILL yourself if
 *    you must).  status says whether the binding fired before the exit was
 *    reported; exit_status and term_signal say how the child really ended
 *    (it may have exited by itself a moment before the signal).
 *  - A token already triggered at spawn time refuses the spawn
 *    synchronously instead of the usual asynchronous report: an exit
 *    callback needs a process handle, libuv makes one only by starting a
 *    process, and a program started only to be killed may act before the
 *    signal arrives.  The handle is then left untouched.
 *  - Sleep.  No uv_timer_t: the deadline is carried by the binding's child
 *    token and served by the core's deadline thread; "own deadline passed"
 *    is the success status (CT_UV__DEADLINE_OK).  The waker keeps the loop
 *    alive (CT_UV__KEEP_ALIVE) since nothing else does.
 */
#include "uv_internal.h"

#include <signal.h>

/* ---- spawn -------------------------------------------------------------- */

static void spawn_exit(uv_process_t *p, int64_t exit_status, int term_signal) {
  ct_uv_process_t *op = CT_UV_CONTAINER_OF(p, ct_uv_process_t, process);
  int status = op->bind_.state == CT_UV__FIRED ? op->bind_.status : 0;
  ct_uv__bind_end(&op->bind_);
  op->exit_(p, status, exit_status, term_signal);
}

static void spawn_fire(ct_uv_bind_t_ *b, int status) {
  ct_uv_process_t *op = CT_UV_CONTAINER_OF(b, ct_uv_process_t, bind_);
  (void)status; /* kept in b->status for spawn_exit() */
  /* UV_ESRCH: it has exited and not been reaped yet; spawn_exit() follows
   * all the same. */
  (void)uv_process_kill(&op->process, op->signum_);
}

int ct_uv_spawn(uv_loop_t *loop, ct_uv_process_t *op,
                const uv_process_options_t *options, ct_token *t,
                int64_t deadline, int signum, ct_uv_exit_cb exit_cb) {
  uv_process_options_t opts;
  int rc;
  if (loop == NULL || op == NULL || options == NULL || t == NULL ||
      exit_cb == NULL || signum < 0 || signum >= NSIG)
    return UV_EINVAL;
  if (signum == 0)
    signum = SIGTERM;
  rc = ct_uv__bind_init(&op->bind_, loop, t, deadline, spawn_fire, 0);
  if (rc < 0)
    return rc;
  if (ct_token_triggered(op->bind_.token)) {
    /* Already triggered (or the deadline already passed): refuse. */
    rc = ct_uv__bind_status(&op->bind_);
    ct_uv__bind_end(&op->bind_);
    return rc;
  }
  op->exit_ = exit_cb;
  op->signum_ = signum;
  opts = *options;
  opts.exit_cb = spawn_exit;
  rc = uv_spawn(loop, &op->process, &opts);
  if (rc < 0) {
    ct_uv__bind_end(&op->bind_);
    return rc;
  }
  return 0;
}

/* ---- sleep -------------------------------------------------------------- */

static void sleep_fire(ct_uv_bind_t_ *b, int status) {
  ct_uv_sleep_t *op = CT_UV_CONTAINER_OF(b, ct_uv_sleep_t, bind_);
  ct_uv__bind_end(b);
  op->cb_(op, status);
}

int ct_uv_sleep(uv_loop_t *loop, ct_uv_sleep_t *op, ct_token *t,
                int64_t deadline, ct_uv_sleep_cb cb) {
  int rc;
  if (loop == NULL || op == NULL || t == NULL || cb == NULL)
    return UV_EINVAL;
  rc = ct_uv__bind_init(&op->bind_, loop, t, deadline, sleep_fire,
                        CT_UV__KEEP_ALIVE | CT_UV__DEADLINE_OK);
  if (rc < 0)
    return rc;
  op->cb_ = cb;
  return 0;
}

int ct_uv_sleep_stop(ct_uv_sleep_t *op) {
  if (op == NULL || !ct_uv__bind_active(&op->bind_))
    return UV_EINVAL;
  ct_uv__bind_end(&op->bind_);
  return 0;
}
