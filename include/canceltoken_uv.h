/* SPDX-License-Identifier: MIT
 *
 * canceltoken_uv.h -- libcanceltoken meets libuv.  A watcher handle that
 * runs a callback on the loop thread when a token is triggered (from any
 * thread), and cancellable forms of the libuv operations that can hang:
 * thread-pool requests, stream reads, connects, child processes and sleeps.
 * A separate library, canceltoken_uv, built only on canceltoken.h's public
 * API and libuv's; the core stays free of dependencies.
 *
 * Conventions, in addition to those of canceltoken.h:
 *
 *  - Errors are libuv's: UV_EINVAL, UV_ENOMEM, UV_ECANCELED, UV_ETIMEDOUT,
 *    ...  On Unix they are the same negative errno values as the core's
 *    (UV_ECANCELED == -ECANCELED), so uv_strerror() and ct_strerror() both
 *    describe them.  A call that fails has no effect and never invokes a
 *    callback.
 *  - Thread-safety: every function here is LOOP THREAD ONLY, like libuv's
 *    own (the thread that runs uv_run() on the loop concerned).  The tokens
 *    may be triggered from any thread, a deadline's thread or a signal's
 *    library thread: that is the point.  Nothing here is async-signal-safe.
 *  - Ownership: the structures (ct_uv_watch_t, ct_uv_work_t, ...) belong to
 *    the caller, who must keep them valid and unmoved for as long as the
 *    libuv object they wrap would have to be: a watcher until its close
 *    callback, an operation until its final callback (or its stop call).
 *    Every token argument is borrowed: the watcher or operation takes a
 *    reference of its own and drops it when it ends.
 *  - Callbacks: libuv calls them from uv_run() on the loop thread, never
 *    from inside the call that starts an operation.  Every function here
 *    may be called from a libuv callback; none may be called from a
 *    ct_callback function (which may run on any thread).  None blocks,
 *    except that ending a binding (stop, close, or the final callback)
 *    waits for a trigger that is running in another thread to finish
 *    notifying the loop -- one uv_async_send(), a few microseconds.
 *
 * Time: a `deadline` argument is an absolute time on CLOCK_MONOTONIC in
 * nanoseconds, ct_now()'s clock, as everywhere else in libcanceltoken:
 * CT_FOREVER for none, ct_deadline_after(ms * 1000000) for a relative
 * timeout, and any other negative value is UV_EINVAL.  One deadline can so
 * bound a sequence of operations ("connect, send and read the reply within
 * five seconds").
 *
 * Results.  An operation bound to a token ends with exactly one final
 * callback.  When the binding, not the operation, ended it, the status is
 *   UV_ETIMEDOUT  if the operation's own deadline passed, or the token was
 *                 triggered by a deadline (ct_token_reason() is
 *                 CT_REASON_DEADLINE: see ct_token_new_deadline());
 *   UV_ECANCELED  if the token was triggered for any other reason.
 * ct_uv_status() makes the same distinction for any token.  A token that is
 * already triggered when the operation is started gives the same status,
 * delivered asynchronously from the loop, never from inside the starting
 * call; the libuv operation is then not started at all (the one exception,
 * ct_uv_spawn(), is explained there).
 */
#ifndef CANCELTOKEN_UV_H
#define CANCELTOKEN_UV_H

#include "canceltoken.h"

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CT_UV_BUILDING_LIBRARY) && defined(__GNUC__)
#define CT_UV_EXTERN __attribute__((visibility("default")))
#else
#define CT_UV_EXTERN
#endif

/* The status an operation bound to t reports when t ends it: 0 if t is
 * not triggered, UV_ETIMEDOUT if t was triggered by a deadline (its own or
 * an ancestor's), UV_ECANCELED otherwise; UV_EINVAL for NULL.  Ownership:
 * borrowed.  Any thread; callbacks: yes; never blocks. */
CT_UV_EXTERN int ct_uv_status(const ct_token *t);

/* ------------------------------------------------------------------------ */
/* Watching a token from a loop                                             */

typedef struct ct_uv_watch_s ct_uv_watch_t;

/* Runs on the loop thread, once per start, after the token is triggered.
 * `token` is the watched token (borrowed, alive at least until the
 * watcher's close callback). */
typedef void (*ct_uv_watch_cb)(ct_uv_watch_t *watch, ct_token *token);
typedef void (*ct_uv_watch_close_cb)(ct_uv_watch_t *watch);

/* A handle, in libuv's manner: init, start, stop, close.  `data` is
 * yours; the other members are private. */
struct ct_uv_watch_s {
  void *data;
  /* private */
  uv_async_t async_;
  ct_callback reg_;
  ct_token *token_;
  ct_uv_watch_cb cb_;
  ct_uv_watch_close_cb close_cb_;
  unsigned flags_;
};

/* Initialise a watcher of token t on loop.  The watcher takes a reference
 * on t, dropped just before its close callback runs, so the caller may
 * drop its own at once.  Like every libuv handle it must be closed with
 * ct_uv_watch_close() (and the loop run) before the loop can be closed.
 * An initialised watcher that is not started does not keep the loop alive.
 * Returns 0, UV_EINVAL (NULL loop, watch or t), or the error of
 * uv_async_init().  Loop thread; never blocks. */
CT_UV_EXTERN int ct_uv_watch_init(uv_loop_t *loop, ct_uv_watch_t *watch,
                                  ct_token *t);

/* Start watching: cb runs once on the loop thread when the token is
 * triggered, from whichever thread it is triggered (if it already is, cb
 * runs during the next loop iteration -- never inside this call).  After
 * cb the watcher is stopped again; cb may restart it (it then runs again
 * at the next iteration, since a token stays triggered), stop it or close
 * it.  A started watcher keeps the loop alive unless ct_uv_watch_unref()
 * was called.  Starting a started watcher only replaces cb.  Returns 0,
 * UV_EINVAL (NULL watch or cb, watcher closing), or UV_ENOMEM (the token's
 * first callback registration allocates; the watcher is then not started).
 * Loop thread; never blocks. */
CT_UV_EXTERN int ct_uv_watch_start(ct_uv_watch_t *watch, ct_uv_watch_cb cb);

/* Stop watching.  When it returns, cb will not run (until the next
 * start), even if the token was triggered in another thread a moment ago:
 * the trigger's notification is discarded.  Stopping a stopped watcher
 * does nothing.  Returns 0 or UV_EINVAL (NULL).  Loop thread; may wait a
 * few microseconds for a trigger running in another thread. */
CT_UV_EXTERN int ct_uv_watch_stop(ct_uv_watch_t *watch);

/* Close the watcher: stop it, then close its handle; close_cb (may be
 * NULL) runs on a later loop iteration, after which the memory may be
 * freed.  Safe while the token is being triggered in another thread: the
 * stop cannot lose that race (see canceltoken.h's
 * ct_callback_unregister()).  The token reference is dropped just before
 * close_cb.  Closing a closing watcher is ignored (the first close_cb is
 * the one that runs); NULL is ignored.  Loop thread; may wait as stop. */
CT_UV_EXTERN void ct_uv_watch_close(ct_uv_watch_t *watch,
                                    ct_uv_watch_close_cb close_cb);

/* Whether the watcher is started (and not closing).  NULL gives 0.
 * Ownership: borrowed.  Loop thread; callbacks: yes; never blocks. */
CT_UV_EXTERN int ct_uv_watch_is_active(const ct_uv_watch_t *watch);

/* As uv_unref()/uv_ref(): an unref'd watcher does not keep the loop alive
 * even when started.  Idempotent; NULL is ignored.  Loop thread. */
CT_UV_EXTERN void ct_uv_watch_unref(ct_uv_watch_t *watch);
CT_UV_EXTERN void ct_uv_watch_ref(ct_uv_watch_t *watch);

/* The watched token, borrowed (alive until the close callback); NULL for
 * NULL.  Loop thread; callbacks: yes; never blocks. */
CT_UV_EXTERN ct_token *ct_uv_watch_token(const ct_uv_watch_t *watch);

/* ------------------------------------------------------------------------ */
/* Binding a token to an operation                                          */

/* Private: the part every cancellable operation shares.  It watches the
 * token (or a child of it that carries the deadline) through a small
 * uv_async_t of its own, allocated on the heap so that ending a binding is
 * synchronous for the caller: the async handle closes on its own, later,
 * without touching the operation's memory. */
struct ct_uv_bind_s;
typedef void (*ct_uv_fire_fn_)(struct ct_uv_bind_s *b, int status);
typedef struct ct_uv_bind_s {
  struct ct_uv_waker_s *waker;
  ct_token *token;
  ct_uv_fire_fn_ fire;
  int state;
  int status;
  unsigned flags;
} ct_uv_bind_t_;

/* ---- thread-pool requests: uv_cancel() ---------------------------------- */
/* libuv can only cancel a thread-pool request that no thread has started.
 * When the token fires first, the adapter calls uv_cancel(); the callback
 * then gets UV_ECANCELED or UV_ETIMEDOUT (never libuv's own
 * UV_EAI_CANCELED).  If a thread is already running the request it runs to
 * the end and the callback gets its real result: exactly one callback
 * either way, and a cancelled status means the request never ran.  Running
 * work may poll ct_uv_work_token() to stop early. */

typedef struct ct_uv_work_s {
  uv_work_t req; /* req.data is yours */
  /* private */
  ct_uv_bind_t_ bind_;
  uv_after_work_cb after_;
  int started_;
} ct_uv_work_t;

/* uv_queue_work() bound to t and deadline.  after_work_cb(&op->req,
 * status) gets 0 (work_cb ran), UV_ECANCELED or UV_ETIMEDOUT (work_cb
 * never ran and never will), or libuv's error.  after_work_cb may be NULL.
 * Returns 0, UV_EINVAL (NULL loop, op, t or work_cb, bad deadline),
 * UV_ENOMEM, or the error of uv_queue_work()/uv_async_init().  Ownership:
 * t borrowed; op owned by the caller until after_work_cb (or, if that is
 * NULL, until the loop has run the completion).  Loop thread; work_cb runs
 * on a pool thread as with libuv. */
CT_UV_EXTERN int ct_uv_queue_work(uv_loop_t *loop, ct_uv_work_t *op,
                                  ct_token *t, int64_t deadline,
                                  uv_work_cb work_cb,
                                  uv_after_work_cb after_work_cb);

/* The token a running work_cb should poll (ct_token_triggered()) to stop
 * early: t, or a child of t that also carries the deadline.  Borrowed,
 * valid until after_work_cb.  Any thread (that is, work_cb too); NULL for
 * a request not started by ct_uv_queue_work(). */
CT_UV_EXTERN ct_token *ct_uv_work_token(const uv_work_t *req);

typedef struct ct_uv_fs_s {
  uv_fs_t req; /* req.data is yours; call uv_fs_req_cleanup() as usual */
  /* private */
  ct_uv_bind_t_ bind_;
  uv_fs_cb cb_;
  int started_;
} ct_uv_fs_t;

/* Issues one uv_fs_*() call: it must pass `req` and `cb` through, with a
 * non-NULL cb (asynchronous form), and return that call's result. */
typedef int (*ct_uv_fs_start_cb)(uv_loop_t *loop, uv_fs_t *req, uv_fs_cb cb,
                                 void *arg);

/* Any uv_fs_*() request bound to t and deadline: start(loop, &op->req,
 * <adapter's callback>, arg) is called once, inside this call, unless t is
 * already triggered.  cb(&op->req) then runs once with req->result the
 * request's result, or UV_ECANCELED/UV_ETIMEDOUT if it never ran.  Call
 * uv_fs_req_cleanup() in cb in every case (it is safe on a request that
 * never started).  Returns 0, UV_EINVAL (a NULL argument other than arg,
 * bad deadline, or start did not issue an asynchronous request on req with
 * the callback it was given), UV_ENOMEM, or start's error (then cb never
 * runs).  Ownership: op is the caller's until cb; t borrowed (the binding
 * takes a reference of its own); arg is passed to start only.  Loop
 * thread; callbacks: yes; never blocks. */
CT_UV_EXTERN int ct_uv_fs(uv_loop_t *loop, ct_uv_fs_t *op, ct_token *t,
                          int64_t deadline, ct_uv_fs_start_cb start, void *arg,
                          uv_fs_cb cb);

/* ct_uv_fs() for uv_fs_open() and uv_fs_read(), the two that most often
 * hang (a FIFO with no writer, a dead network file system).  Ownership and
 * threads as ct_uv_fs(); path is copied by libuv; bufs (the array and the
 * memory it points to) must stay valid until cb. */
CT_UV_EXTERN int ct_uv_fs_open(uv_loop_t *loop, ct_uv_fs_t *op, ct_token *t,
                               int64_t deadline, const char *path, int flags,
                               int mode, uv_fs_cb cb);
CT_UV_EXTERN int ct_uv_fs_read(uv_loop_t *loop, ct_uv_fs_t *op, ct_token *t,
                               int64_t deadline, uv_file file,
                               const uv_buf_t bufs[], unsigned int nbufs,
                               int64_t offset, uv_fs_cb cb);

typedef struct ct_uv_getaddrinfo_s {
  uv_getaddrinfo_t req; /* req.data is yours */
  /* private */
  ct_uv_bind_t_ bind_;
  uv_getaddrinfo_cb cb_;
  int started_;
} ct_uv_getaddrinfo_t;

/* uv_getaddrinfo() bound to t and deadline.  cb(&op->req, status, res)
 * runs once; on UV_ECANCELED/UV_ETIMEDOUT res is NULL.  Free res with
 * uv_freeaddrinfo() as usual.  Returns 0, UV_EINVAL (NULL loop, op, t or
 * cb, bad deadline), UV_ENOMEM, or uv_getaddrinfo()'s error.  node,
 * service and hints are copied by libuv.  Loop thread. */
CT_UV_EXTERN int ct_uv_getaddrinfo(uv_loop_t *loop, ct_uv_getaddrinfo_t *op,
                                   ct_token *t, int64_t deadline,
                                   uv_getaddrinfo_cb cb, const char *node,
                                   const char *service,
                                   const struct addrinfo *hints);

/* ---- streams: stop reading -------------------------------------------- */

typedef struct ct_uv_read_s ct_uv_read_t;
typedef void (*ct_uv_alloc_cb)(ct_uv_read_t *op, size_t suggested_size,
                               uv_buf_t *buf);
typedef void (*ct_uv_read_cb)(ct_uv_read_t *op, ssize_t nread,
                              const uv_buf_t *buf);

struct ct_uv_read_s {
  void *data;          /* yours */
  uv_stream_t *stream; /* read-only: the stream being read */
  /* private */
  ct_uv_bind_t_ bind_;
  ct_uv_alloc_cb alloc_;
  ct_uv_read_cb read_;
  void *saved_data_;
  int started_;
};

/* uv_read_start() bound to t and deadline.  The callbacks are libuv's,
 * but take the operation instead of the stream (op->stream, op->data).
 * read_cb gets data (nread >= 0) any number of times, then exactly one
 * final call with nread < 0: UV_EOF or a read error from libuv, or
 * UV_ECANCELED/UV_ETIMEDOUT (with buf->base NULL, buf->len 0) when the
 * binding stopped the read.  Reading is stopped before that final call and
 * the operation has ended; the stream is left open, so close it there as
 * for any read error in libuv (or write a last message first).
 * While the read is bound, stream->data belongs to the adapter (it points
 * to op); it is restored before the final call and by ct_uv_read_stop().
 * End the read before closing the stream in any other place.
 * Returns 0, UV_EINVAL (NULL argument, bad deadline, stream closing),
 * UV_ENOMEM, or uv_read_start()'s error.  Loop thread. */
CT_UV_EXTERN int ct_uv_read_start(ct_uv_read_t *op, uv_stream_t *stream,
                                  ct_token *t, int64_t deadline,
                                  ct_uv_alloc_cb alloc_cb,
                                  ct_uv_read_cb read_cb);

/* End a bound read now, without a final callback (as uv_read_stop()):
 * when it returns, no callback of op runs again and op may be freed.  May
 * be called from op's own read callback.  Returns 0, or UV_EINVAL (NULL,
 * or the read has already ended).  op must have been passed to
 * ct_uv_read_start() (or zeroed): the state of an uninitialised structure
 * cannot be told.  Loop thread; may wait as ct_uv_watch_stop(). */
CT_UV_EXTERN int ct_uv_read_stop(ct_uv_read_t *op);

/* ---- connect: close the handle ---------------------------------------- */

typedef struct ct_uv_connect_s {
  uv_connect_t req; /* req.data is yours */
  /* private */
  ct_uv_bind_t_ bind_;
  uv_connect_cb cb_;
  uv_close_cb close_cb_;
  uv_tcp_t *handle_;
  int started_;
} ct_uv_connect_t;

/* uv_tcp_connect() bound to t and deadline.  libuv aborts a connect only
 * by closing its handle, so when the binding fires the adapter calls
 * uv_close(handle, close_cb); cb(&op->req, UV_ECANCELED or UV_ETIMEDOUT)
 * then runs once, with the handle already closing (do not close it again:
 * free it in close_cb, which runs after cb).  Otherwise cb gets libuv's
 * status and the handle is yours as usual.  close_cb may be NULL.
 * Returns 0, UV_EINVAL (NULL op, handle, addr, t or cb, bad deadline,
 * handle closing), UV_ENOMEM, or uv_tcp_connect()'s error.  Ownership:
 * op and handle are the caller's; addr is copied; t borrowed.  Loop thread;
 * callbacks: yes; never blocks. */
CT_UV_EXTERN int ct_uv_tcp_connect(ct_uv_connect_t *op, uv_tcp_t *handle,
                                   const struct sockaddr *addr, ct_token *t,
                                   int64_t deadline, uv_connect_cb cb,
                                   uv_close_cb close_cb);

/* ---- child processes: kill -------------------------------------------- */

/* status: 0 if the process ended by itself, UV_ECANCELED/UV_ETIMEDOUT if
 * the binding sent it the kill signal first; exit_status and term_signal
 * as libuv's uv_exit_cb (they say how it actually ended). */
typedef void (*ct_uv_exit_cb)(uv_process_t *process, int status,
                              int64_t exit_status, int term_signal);

typedef struct ct_uv_process_s {
  uv_process_t process; /* process.data is yours */
  /* private */
  ct_uv_bind_t_ bind_;
  ct_uv_exit_cb exit_;
  int signum_;
} ct_uv_process_t;

/* uv_spawn() bound to t and deadline: when the binding fires, the adapter
 * sends the process `signum` (0 means SIGTERM) with uv_process_kill().
 * exit_cb runs once, when the process has ended; close &op->process there
 * as usual.  options->exit_cb is ignored (exit_cb replaces it).
 * The exception to "already triggered means an asynchronous callback": if
 * t is already triggered (or the deadline has passed), nothing is spawned
 * and the call returns UV_ECANCELED or UV_ETIMEDOUT at once, leaving
 * op->process untouched (do NOT close it) -- a process handle cannot exist
 * without a process, and starting a program only to kill it would let it
 * run for a moment.  Returns 0; UV_EINVAL (NULL argument, bad deadline or
 * signum), UV_ENOMEM or UV_ECANCELED/UV_ETIMEDOUT with op->process
 * untouched; or uv_spawn()'s error, after which (as with uv_spawn()) the
 * handle must be closed.  Ownership: options is read during the call only;
 * op is the caller's; t borrowed.  Loop thread; callbacks: yes; never
 * blocks. */
CT_UV_EXTERN int ct_uv_spawn(uv_loop_t *loop, ct_uv_process_t *op,
                             const uv_process_options_t *options, ct_token *t,
                             int64_t deadline, int signum,
                             ct_uv_exit_cb exit_cb);

/* ---- timers: a cancellable sleep -------------------------------------- */

typedef struct ct_uv_sleep_s ct_uv_sleep_t;
typedef void (*ct_uv_sleep_cb)(ct_uv_sleep_t *op, int status);

struct ct_uv_sleep_s {
  void *data; /* yours */
  /* private */
  ct_uv_bind_t_ bind_;
  ct_uv_sleep_cb cb_;
};

/* The loop's ct_sleep(): cb(op, status) runs once on the loop thread,
 * with status 0 when the deadline has passed, UV_ECANCELED/UV_ETIMEDOUT
 * when t was triggered first (as ct_uv_status(t)).  deadline may be
 * CT_FOREVER (wait for t only).  The deadline is served by the core's
 * deadline thread (about a millisecond of precision), not by a uv_timer_t.
 * A pending sleep keeps the loop alive.  Returns 0, UV_EINVAL (NULL loop,
 * op, t or cb, bad deadline), UV_ENOMEM or uv_async_init()'s error.  Loop
 * thread. */
CT_UV_EXTERN int ct_uv_sleep(uv_loop_t *loop, ct_uv_sleep_t *op, ct_token *t,
                             int64_t deadline, ct_uv_sleep_cb cb);

/* End a pending sleep without calling its callback; op may be freed when
 * it returns.  Returns 0, or UV_EINVAL (NULL, or not pending; as with
 * ct_uv_read_stop(), op must have been started or zeroed).  Loop thread;
 * may wait as ct_uv_watch_stop(). */
CT_UV_EXTERN int ct_uv_sleep_stop(ct_uv_sleep_t *op);

#ifdef __cplusplus
}
#endif
#endif /* CANCELTOKEN_UV_H */
