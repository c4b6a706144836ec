/* SPDX-License-Identifier: MIT
 *
 * threadpool.c -- thread-pool requests (uv_queue_work, uv_fs_*,
 * uv_getaddrinfo) bound to a token and a deadline, cancelled with
 * uv_cancel().
 *
 * Design notes:
 *  - uv_cancel() succeeds only for a request no pool thread has picked up;
 *    libuv then completes it with UV_ECANCELED (UV_EAI_CANCELED for
 *    getaddrinfo) on the loop thread, never inside uv_cancel().  If a thread
 *    has it, uv_cancel() fails with UV_EBUSY and we do nothing more: the
 *    request finishes and its real result is reported.  Either way libuv's
 *    completion is the one and only final callback; we translate a
 *    cancellation we caused into the binding's status.
 *  - A token already triggered at start: the request is not submitted at
 *    all (submitting then cancelling would race a pool thread), and fire()
 *    -- on the next loop iteration -- delivers the status.  The request
 *    structure is filled in just enough for the user's callback and for
 *    uv_fs_req_cleanup(): its public fields are set and the rest zeroed,
 *    keeping `data`.
 *  - Exactly once: the completion callback and fire() both end the binding
 *    before calling the user; fire() only calls the user when the request
 *    was never submitted, in which case libuv has no completion to make.
 */
#include "uv_internal.h"

/* Zero a request the caller never submitted, keeping its data pointer. */
#define CT_UV_RESET_REQ(req)                                                  \
  do {                                                                        \
    void *data_ = (req)->data;                                                \
    memset((req), 0, sizeof *(req));                                          \
    (req)->data = data_;                                                      \
  } while (0)

/* ---- work ---------------------------------------------------------------- */

static void work_done(uv_work_t *req, int status) {
  ct_uv_work_t *op = CT_UV_CONTAINER_OF(req, ct_uv_work_t, req);
  status = ct_uv__bind_result(&op->bind_, status);
  ct_uv__bind_end(&op->bind_);
  if (op->after_ != NULL)
    op->after_(req, status);
}

static void work_fire(ct_uv_bind_t_ *b, int status) {
  ct_uv_work_t *op = CT_UV_CONTAINER_OF(b, ct_uv_work_t, bind_);
  if (op->started_) {
    /* 0: work_done() gets UV_ECANCELED later; UV_EBUSY: it is running or
     * done, and work_done() reports its result. */
    (void)uv_cancel((uv_req_t *)&op->req);
    return;
  }
  ct_uv__bind_end(b);
  if (op->after_ != NULL)
    op->after_(&op->req, status);
}

int ct_uv_queue_work(uv_loop_t *loop, ct_uv_work_t *op, ct_token *t,
                     int64_t deadline, uv_work_cb work_cb,
                     uv_after_work_cb after_work_cb) {
  int rc;
  if (loop == NULL || op == NULL || t == NULL || work_cb == NULL)
    return UV_EINVAL;
  rc = ct_uv__bind_init(&op->bind_, loop, t, deadline, work_fire, 0);
  if (rc < 0)
    return rc;
  op->after_ = after_work_cb;
  op->started_ = 0;
  if (rc == 1) { /* already triggered: do not submit */
    CT_UV_RESET_REQ(&op->req);
    op->req.type = UV_WORK;
    op->req.loop = loop;
    op->req.work_cb = work_cb;
    op->req.after_work_cb = work_done;
    return 0;
  }
  rc = uv_queue_work(loop, &op->req, work_cb, work_done);
  if (rc < 0) {
    ct_uv__bind_end(&op->bind_);
    return rc;
  }
  op->started_ = 1;
  return 0;
}

ct_token *ct_uv_work_token(const uv_work_t *req) {
  const ct_uv_work_t *op;
  if (req == NULL || req->after_work_cb != work_done)
    return NULL;
  op = CT_UV_CONTAINER_OF(req, const ct_uv_work_t, req);
  /* Written on the loop thread before uv_queue_work() handed the request
   * to a pool thread (libuv's queue mutex orders the two), and not
   * changed until work_done(), which runs after work_cb returned. */
  return op->bind_.token;
}

/* ---- fs ------------------------------------------------------------------ */

static void fs_done(uv_fs_t *req) {
  ct_uv_fs_t *op = CT_UV_CONTAINER_OF(req, ct_uv_fs_t, req);
  /* result is an ssize_t (a byte count may exceed INT_MAX): compare it
   * whole rather than narrowing it. */
  if (req->result == UV_ECANCELED)
    req->result = ct_uv__bind_result(&op->bind_, UV_ECANCELED);
  ct_uv__bind_end(&op->bind_);
  op->cb_(req);
}

static void fs_fire(ct_uv_bind_t_ *b, int status) {
  ct_uv_fs_t *op = CT_UV_CONTAINER_OF(b, ct_uv_fs_t, bind_);
  if (op->started_) {
    (void)uv_cancel((uv_req_t *)&op->req); /* as work_fire() */
    return;
  }
  ct_uv__bind_end(b);
  op->req.result = status;
  op->cb_(&op->req);
}

int ct_uv_fs(uv_loop_t *loop, ct_uv_fs_t *op, ct_token *t, int64_t deadline,
             ct_uv_fs_start_cb start, void *arg, uv_fs_cb cb) {
  int rc;
  if (loop == NULL || op == NULL || t == NULL || start == NULL || cb == NULL)
    return UV_EINVAL;
  rc = ct_uv__bind_init(&op->bind_, loop, t, deadline, fs_fire, 0);
  if (rc < 0)
    return rc;
  op->cb_ = cb;
  op->started_ = 0;
  if (rc == 1) { /* already triggered: do not submit */
    CT_UV_RESET_REQ(&op->req);
    op->req.type = UV_FS;
    op->req.fs_type = UV_FS_UNKNOWN;
    op->req.loop = loop;
    return 0;
  }
  op->req.type = UV_UNKNOWN_REQ;
  op->req.cb = NULL;
  rc = start(loop, &op->req, fs_done, arg);
  if (rc < 0) {
    ct_uv__bind_end(&op->bind_);
    return rc;
  }
  if (op->req.type != UV_FS || op->req.cb != fs_done) {
    /* start() did not submit an asynchronous request with our callback:
     * there is nothing we could cancel or report. */
    ct_uv__bind_end(&op->bind_);
    return UV_EINVAL;
  }
  op->started_ = 1;
  return 0;
}

struct fs_open_args {
  const char *path;
  int flags;
  int mode;
};

static int fs_open_start(uv_loop_t *loop, uv_fs_t *req, uv_fs_cb cb,
                         void *arg) {
  const struct fs_open_args *a = arg;
  return uv_fs_open(loop, req, a->path, a->flags, a->mode, cb);
}

int ct_uv_fs_open(uv_loop_t *loop, ct_uv_fs_t *op, ct_token *t,
                  int64_t deadline, const char *path, int flags, int mode,
                  uv_fs_cb cb) {
  struct fs_open_args a = {path, flags, mode};
  if (path == NULL)
    return UV_EINVAL;
  return ct_uv_fs(loop, op, t, deadline, fs_open_start, &a, cb);
}

struct fs_read_args {
  uv_file file;
  const uv_buf_t *bufs;
  unsigned int nbufs;
  int64_t offset;
};

static int fs_read_start(uv_loop_t *loop, uv_fs_t *req, uv_fs_cb cb,
                         void *arg) {
  const struct fs_read_args *a = arg;
  return uv_fs_read(loop, req, a->file, a->bufs, a->nbufs, a->offset, cb);
}

int ct_uv_fs_read(uv_loop_t *loop, ct_uv_fs_t *op, ct_token *t,
                  int64_t deadline, uv_file file, const uv_buf_t bufs[],
                  unsigned int nbufs, int64_t offset, uv_fs_cb cb) {
  /* libuv copies the buffer descriptors (not the memory they point to). */
  struct fs_read_args a = {file, bufs, nbufs, offset};
  if (bufs == NULL || nbufs == 0)
    return UV_EINVAL;
  return ct_uv_fs(loop, op, t, deadline, fs_read_start, &a, cb);
}

/* ---- getaddrinfo ------------------------------------------------------- */

static void gai_done(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  ct_uv_getaddrinfo_t *op = CT_UV_CONTAINER_OF(req, ct_uv_getaddrinfo_t, req);
  status = ct_uv__bind_result(&op->bind_, status);
  ct_uv__bind_end(&op->bind_);
  op->cb_(req, status, res);
}

static void gai_fire(ct_uv_bind_t_ *b, int status) {
  ct_uv_getaddrinfo_t *op = CT_UV_CONTAINER_OF(b, ct_uv_getaddrinfo_t, bind_);
  if (op->started_) {
    (void)uv_cancel((uv_req_t *)&op->req); /* as work_fire() */
    return;
  }
  ct_uv__bind_end(b);
  op->cb_(&op->req, status, NULL);
}

int ct_uv_getaddrinfo(uv_loop_t *loop, ct_uv_getaddrinfo_t *op, ct_token *t,
                      int64_t deadline, uv_getaddrinfo_cb cb, const char *node,
                      const char *service, const struct addrinfo *hints) {
  int rc;
  if (loop == NULL || op == NULL || t == NULL || cb == NULL ||
      (node == NULL && service == NULL))
    return UV_EINVAL;
  rc = ct_uv__bind_init(&op->bind_, loop, t, deadline, gai_fire, 0);
  if (rc < 0)
    return rc;
  op->cb_ = cb;
  op->started_ = 0;
  if (rc == 1) { /* already triggered: do not submit */
    CT_UV_RESET_REQ(&op->req);
    op->req.type = UV_GETADDRINFO;
    op->req.loop = loop;
    return 0;
  }
  rc = uv_getaddrinfo(loop, &op->req, gai_done, node, service, hints);
  if (rc < 0) {
    ct_uv__bind_end(&op->bind_);
    return rc;
  }
  op->started_ = 1;
  return 0;
}
