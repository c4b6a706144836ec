/* SPDX-License-Identifier: MIT
 *
 * bind.c -- the binding shared by every cancellable libuv operation: a token
 * (or a child of it with the operation's deadline) watched through a heap
 * "waker" that turns a trigger on any thread into a call on the loop thread.
 * See the Design notes in uv_internal.h.
 *
 * Design notes (exactly once, and why the cross-thread part is race-free):
 *  - The only code that runs off the loop thread is waker_on_trigger(), run
 *    by ct_token_trigger() (or the deadline or signal thread) in whatever
 *    thread triggers the token.  It calls uv_async_send() and nothing else:
 *    it touches no binding state, so the binding needs no atomics.
 *    uv_async_send() is libuv's one thread-safe call.
 *  - ct_uv__bind_end() first unregisters that callback.  The core's
 *    guarantee (canceltoken.h, ct_callback_unregister) is that when it
 *    returns the callback is not running and never will, waiting if it is
 *    running in another thread; so no uv_async_send() can reach the waker
 *    once uv_close() is called on it, which libuv requires.
 *  - The async callback (loop thread) fires the binding only if it is still
 *    ARMED and still attached (waker->bind != NULL): a notification that
 *    arrives after the operation completed is dropped.
 */
#include "uv_internal.h"

struct ct_uv_waker_s {
  uv_async_t async;     /* closed by ct_uv__bind_end(); frees the waker */
  ct_callback reg;      /* on the watched token; sends `async` */
  ct_uv_bind_t_ *bind;  /* loop thread only; NULL once detached */
};

int ct_uv_status(const ct_token *t) {
  if (t == NULL)
    return UV_EINVAL;
  if (!ct_token_triggered(t))
    return 0;
  return ct_token_reason(t, NULL) == CT_REASON_DEADLINE ? UV_ETIMEDOUT
                                                         : UV_ECANCELED;
}

/* Any thread: the token was triggered.  Only wake the loop. */
static void waker_on_trigger(ct_token *t, void *arg) {
  struct ct_uv_waker_s *w = arg;
  (void)t;
  (void)uv_async_send(&w->async); /* cannot fail on an open handle */
}

static void waker_closed(uv_handle_t *h) {
  free(CT_UV_CONTAINER_OF(h, struct ct_uv_waker_s, async));
}

/* The status of a fired binding.  Its own deadline (the child was triggered
 * by itself, not by the caller's token) is UV_ETIMEDOUT, or success for a
 * sleep; otherwise the caller's token decides, as ct_uv_status(). */
int ct_uv__bind_status(const ct_uv_bind_t_ *b) {
  if ((b->flags & CT_UV__HAS_DEADLINE) &&
      ct_token_triggered_token(b->token) == b->token)
    return (b->flags & CT_UV__DEADLINE_OK) ? 0 : UV_ETIMEDOUT;
  return ct_uv_status(b->token);
}

/* Loop thread: the waker's async handle was sent. */
static void waker_async_cb(uv_async_t *async) {
  struct ct_uv_waker_s *w =
      CT_UV_CONTAINER_OF(async, struct ct_uv_waker_s, async);
  ct_uv_bind_t_ *b = w->bind;
  if (b == NULL || b->state != CT_UV__ARMED)
    return;
  /* Only a trigger sends the async, and a token stays triggered. */
  assert(ct_token_triggered(b->token));
  b->status = ct_uv__bind_status(b);
  b->state = CT_UV__FIRED;
  /* fire() may end the binding and free the operation: touch nothing
   * after it. */
  b->fire(b, b->status);
}

int ct_uv__bind_init(ct_uv_bind_t_ *b, uv_loop_t *loop, ct_token *t,
                     int64_t deadline, ct_uv_fire_fn_ fire, unsigned flags) {
  ct_token *watched;
  struct ct_uv_waker_s *w;
  int rc;

  if (loop == NULL || t == NULL || ct_uv__bad_deadline(deadline))
    return UV_EINVAL;
  flags &= CT_UV__KEEP_ALIVE | CT_UV__DEADLINE_OK;
  if (deadline == CT_FOREVER) {
    watched = ct_token_ref(t);
  } else {
    rc = ct_token_new_child(&watched, "ct_uv deadline", t);
    if (rc < 0)
      return rc;
    rc = ct_token_set_deadline(watched, deadline); /* 1: already passed */
    if (rc < 0) {
      ct_token_unref(watched);
      return rc;
    }
    flags |= CT_UV__HAS_DEADLINE;
  }

  w = malloc(sizeof *w);
  if (w == NULL) {
    ct_token_unref(watched);
    return UV_ENOMEM;
  }
  rc = uv_async_init(loop, &w->async, waker_async_cb);
  if (rc < 0) {
    free(w);
    ct_token_unref(watched);
    return rc;
  }
  if (!(flags & CT_UV__KEEP_ALIVE))
    uv_unref((uv_handle_t *)&w->async);

  w->bind = b;
  b->waker = w;
  b->token = watched;
  b->fire = fire;
  b->state = CT_UV__ARMED;
  b->status = 0;
  b->flags = flags;

  /* Last, once everything the callback may reach is in place.  Returns 1
   * when the token is already triggered: the callback then ran here and
   * sent the async, so fire() runs on the next loop iteration, never from
   * inside this call. */
  memset(&w->reg, 0, sizeof w->reg);
  rc = ct_callback_register(&w->reg, watched, waker_on_trigger, w);
  if (rc < 0) {
    /* -ENOMEM (a token's first registration allocates): undo it all; the
     * handle is closed, the caller's operation is not started. */
    w->bind = NULL;
    uv_close((uv_handle_t *)&w->async, waker_closed);
    ct_token_unref(watched);
    b->waker = NULL;
    b->token = NULL;
    b->state = CT_UV__ENDED;
    return rc;
  }
  return rc == 1 ? 1 : 0;
}

void ct_uv__bind_end(ct_uv_bind_t_ *b) {
  struct ct_uv_waker_s *w;

  if (b->state == CT_UV__ENDED)
    return;
  w = b->waker;
  /* Returns 0 (never ran), 1 (ran, or ran inline at registration).  When
   * it returns, waker_on_trigger() is not running and never will. */
  (void)ct_callback_unregister(&w->reg);
  w->bind = NULL;
  uv_close((uv_handle_t *)&w->async, waker_closed);
  ct_token_unref(b->token);
  b->waker = NULL;
  b->token = NULL;
  b->state = CT_UV__ENDED;
}
