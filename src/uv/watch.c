/* SPDX-License-Identifier: MIT
 *
 * watch.c -- ct_uv_watch_t, a libuv-style handle whose callback runs on the
 * loop thread when a token is triggered, whichever thread triggered it.
 *
 * Design notes:
 *  - Why a uv_async_t fed by a ct_callback, not a uv_poll_t on
 *    ct_token_fd():
 *     * libuv forbids two poll handles on one descriptor in a loop, and the
 *       token's descriptor is one per token: two watchers of one token (a
 *       shutdown token watched by every connection) would break.  Async
 *       handles share the loop's single wakeup descriptor instead.
 *     * The descriptor stays readable for ever after the trigger (we may
 *       not read it), so a level-triggered poll would have to be stopped
 *       from its own callback; a callback registration fires once.
 *     * The closing race is decided by the core, not by us: close (and
 *       stop) unregister the callback first, and ct_callback_unregister()
 *       returns only when the callback is not running and never will, so
 *       no uv_async_send() can reach a handle that uv_close() was called on.
 *     * Tokens that are never watched through a descriptor keep costing
 *       none.
 *  - Flags are touched on the loop thread only.  The one thing the trigger
 *    thread does is uv_async_send() (libuv's thread-safe call).
 *  - The async handle is always active in libuv's eyes (from init to
 *    close), so "keeps the loop alive" is done with uv_ref()/uv_unref():
 *    ref'd exactly when started and not unref'd by the user.
 *  - A notification that arrives after a stop (the trigger raced the stop)
 *    is dropped by the async callback, which checks STARTED; one that
 *    arrives after a restart is a genuine trigger (a token stays
 *    triggered), so it may fire the restarted watcher.
 */
#include "uv_internal.h"

enum {
  W_STARTED = 1u,    /* between start and (stop | fire | close) */
  W_REGISTERED = 2u, /* reg_ is registered (maybe already run) */
  W_UNREF = 4u,      /* the user asked for uv_unref() */
  W_CLOSING = 8u     /* ct_uv_watch_close() was called */
};

static void watch_apply_ref(ct_uv_watch_t *w) {
  uv_handle_t *h = (uv_handle_t *)&w->async_;
  if ((w->flags_ & W_STARTED) && !(w->flags_ & W_UNREF))
    uv_ref(h);
  else
    uv_unref(h);
}

/* Any thread: the token was triggered. */
static void watch_on_trigger(ct_token *t, void *arg) {
  ct_uv_watch_t *w = arg;
  (void)t;
  (void)uv_async_send(&w->async_);
}

static void watch_unregister(ct_uv_watch_t *w) {
  if (w->flags_ & W_REGISTERED) {
    /* When this returns watch_on_trigger() is not running and never will
     * (it may wait for one running in another thread). */
    (void)ct_callback_unregister(&w->reg_);
    w->flags_ &= ~W_REGISTERED;
  }
}

/* Loop thread. */
static void watch_async_cb(uv_async_t *async) {
  ct_uv_watch_t *w = CT_UV_CONTAINER_OF(async, ct_uv_watch_t, async_);
  if (!(w->flags_ & W_STARTED) || !ct_token_triggered(w->token_))
    return;
  watch_unregister(w);
  w->flags_ &= ~W_STARTED;
  watch_apply_ref(w);
  /* cb may restart, stop, close or free (after close) the watcher. */
  w->cb_(w, w->token_);
}

int ct_uv_watch_init(uv_loop_t *loop, ct_uv_watch_t *w, ct_token *t) {
  int rc;
  if (loop == NULL || w == NULL || t == NULL)
    return UV_EINVAL;
  rc = uv_async_init(loop, &w->async_, watch_async_cb);
  if (rc < 0)
    return rc;
  memset(&w->reg_, 0, sizeof w->reg_);
  w->token_ = ct_token_ref(t);
  w->cb_ = NULL;
  w->close_cb_ = NULL;
  w->flags_ = 0;
  watch_apply_ref(w);
  return 0;
}

int ct_uv_watch_start(ct_uv_watch_t *w, ct_uv_watch_cb cb) {
  int rc;
  if (w == NULL || cb == NULL || (w->flags_ & W_CLOSING))
    return UV_EINVAL;
  w->cb_ = cb;
  if (w->flags_ & W_STARTED)
    return 0;
  /* 1: already triggered; the callback ran here and sent the async, so cb
   * runs on the next iteration, not now.  -ENOMEM: a token's first
   * registration allocates; nothing is started then. */
  rc = ct_callback_register(&w->reg_, w->token_, watch_on_trigger, w);
  if (rc < 0)
    return rc;
  w->flags_ |= W_STARTED | W_REGISTERED;
  watch_apply_ref(w);
  return 0;
}

int ct_uv_watch_stop(ct_uv_watch_t *w) {
  if (w == NULL)
    return UV_EINVAL;
  if (!(w->flags_ & W_STARTED))
    return 0;
  watch_unregister(w);
  w->flags_ &= ~W_STARTED;
  watch_apply_ref(w);
  return 0;
}

static void watch_closed(uv_handle_t *h) {
  ct_uv_watch_t *w = CT_UV_CONTAINER_OF(h, ct_uv_watch_t, async_);
  ct_uv_watch_close_cb close_cb = w->close_cb_;
  ct_token_unref(w->token_);
  w->token_ = NULL;
  if (close_cb != NULL)
    close_cb(w);
}

void ct_uv_watch_close(ct_uv_watch_t *w, ct_uv_watch_close_cb close_cb) {
  if (w == NULL || (w->flags_ & W_CLOSING))
    return;
  (void)ct_uv_watch_stop(w);
  w->flags_ |= W_CLOSING;
  w->close_cb_ = close_cb;
  uv_close((uv_handle_t *)&w->async_, watch_closed);
}

int ct_uv_watch_is_active(const ct_uv_watch_t *w) {
  return w != NULL && (w->flags_ & W_STARTED) && !(w->flags_ & W_CLOSING);
}

void ct_uv_watch_unref(ct_uv_watch_t *w) {
  if (w == NULL || (w->flags_ & W_CLOSING))
    return;
  w->flags_ |= W_UNREF;
  watch_apply_ref(w);
}

void ct_uv_watch_ref(ct_uv_watch_t *w) {
  if (w == NULL || (w->flags_ & W_CLOSING))
    return;
  w->flags_ &= ~W_UNREF;
  watch_apply_ref(w);
}

ct_token *ct_uv_watch_token(const ct_uv_watch_t *w) {
  return w == NULL ? NULL : w->token_;
}
