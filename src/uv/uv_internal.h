/* SPDX-License-Identifier: MIT
 *
 * uv_internal.h -- what the libuv adapter's files share: the binding that
 * ties a token (and a deadline) to one libuv operation.  Only canceltoken.h's
 * public API and libuv's are used here, as an application would.
 *
 * Design notes (bind.c implements them; the operations in threadpool.c,
 * stream.c and process.c follow them):
 *
 *  Waker.  A binding watches one token -- the caller's, or a child of it
 *  that carries the operation's deadline -- with a ct_callback whose only
 *  action, on whatever thread triggers the token, is uv_async_send() on the
 *  binding's own uv_async_t.  The async callback then "fires" the binding on
 *  the loop thread.  The uv_async_t and the ct_callback live in a small heap
 *  block, the waker, not in the operation: ending a binding unregisters the
 *  callback (std::stop_callback's guarantee: no uv_async_send() can follow),
 *  detaches the waker from the operation and starts closing the waker's
 *  handle, whose close callback frees the block.  So ending is synchronous
 *  for the operation: once ct_uv__bind_end() returns nothing refers to it,
 *  the final user callback can run at once and free it.  (Had the handle been
 *  embedded in the operation, the final callback would have had to wait for
 *  the handle's close, and libuv closes handles in LIFO order: a stream
 *  closed by the user in that callback would finish closing first and its
 *  close callback could free the operation under our pending handle.)
 *
 *  States (loop thread only, no atomics): ENDED (0) -> ARMED -> FIRED ->
 *  ENDED, or ARMED -> ENDED when the operation completes first.  fire() runs
 *  at most once, only from ARMED; every final user callback is preceded by
 *  ct__bind_end(), which is idempotent, so exactly one final callback is
 *  delivered per operation.
 *
 *  Liveness.  The waker's handle is unref'd: the libuv request or handle
 *  being bound keeps the loop alive, not the binding (a sleep, which has
 *  nothing else, asks for CT_UV__KEEP_ALIVE).  A closing waker still keeps
 *  uv_run() going until it is closed, so uv_loop_close() succeeds after the
 *  run.
 */
#ifndef CT_UV_INTERNAL_H
#define CT_UV_INTERNAL_H

#include "canceltoken_uv.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define CT_UV_HIDDEN __attribute__((visibility("hidden")))

#define CT_UV_CONTAINER_OF(ptr, type, member)                                 \
  ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Binding states. */
enum { CT_UV__ENDED = 0, CT_UV__ARMED = 1, CT_UV__FIRED = 2 };

/* Binding flags. */
enum {
  CT_UV__KEEP_ALIVE = 1u,   /* the waker keeps the loop alive */
  CT_UV__DEADLINE_OK = 2u,  /* own deadline passing is success (status 0) */
  CT_UV__HAS_DEADLINE = 4u  /* token is our child carrying the deadline */
};

/* Arm b: watch t (through a child carrying `deadline` unless it is
 * CT_FOREVER).  Returns 0 (armed), 1 (armed, and the watched token is
 * already triggered: fire() will run on the next loop iteration, so the
 * caller should not start the libuv operation), or a negative error with
 * nothing to undo.  Loop thread. */
CT_UV_HIDDEN int ct_uv__bind_init(ct_uv_bind_t_ *b, uv_loop_t *loop,
                                  ct_token *t, int64_t deadline,
                                  ct_uv_fire_fn_ fire, unsigned flags);

/* End b (idempotent): after it returns, fire() never runs and nothing of
 * the adapter refers to the operation.  Loop thread; may wait for a
 * concurrent trigger's uv_async_send() to return. */
CT_UV_HIDDEN void ct_uv__bind_end(ct_uv_bind_t_ *b);

/* The status of a binding whose token is triggered: its own deadline gives
 * UV_ETIMEDOUT (0 with CT_UV__DEADLINE_OK), otherwise ct_uv_status(). */
CT_UV_HIDDEN int ct_uv__bind_status(const ct_uv_bind_t_ *b);

/* The status to report for a libuv completion `status`: the binding's
 * status if it fired and libuv reports the cancellation it caused
 * (UV_ECANCELED, or UV_EAI_CANCELED for getaddrinfo), else `status`. */
static inline int ct_uv__bind_result(const ct_uv_bind_t_ *b, int status) {
  if (b->state == CT_UV__FIRED &&
      (status == UV_ECANCELED || status == UV_EAI_CANCELED))
    return b->status;
  return status;
}

static inline int ct_uv__bind_active(const ct_uv_bind_t_ *b) {
  return b->state != CT_UV__ENDED;
}

/* Deadline argument check shared by every operation. */
static inline int ct_uv__bad_deadline(int64_t deadline) {
  return deadline < CT_FOREVER;
}

#endif
