/* SPDX-License-Identifier: MIT
 *
 * stream.c -- stream operations bound to a token and a deadline: a read
 * that is stopped, and a TCP connect that is aborted by closing its handle
 * (the only way libuv offers).
 *
 * Design notes:
 *  - Read.  libuv's read and alloc callbacks receive only the stream, so
 *    while a read is bound the adapter keeps its operation in stream->data
 *    and hands the user the operation instead (op->data is the user's).
 *    The user's stream->data is saved at start and put back when the read
 *    ends, before the final callback.  Exactly one final callback (nread <
 *    0): from libuv (EOF or error), or from fire(); both end the binding
 *    first, and the binding ends at most once.  ct_uv_read_stop() ends it
 *    with no final callback, like uv_read_stop().  The stream is never
 *    closed by the adapter: the final callback is where the user closes
 *    it, as after any read error -- or writes a last message first.
 *  - Connect.  fire() closes the handle with the user's close callback;
 *    libuv then completes the connect with UV_ECANCELED from inside the
 *    close, which we translate.  If the token was already triggered at
 *    start, nothing is connected: fire() closes the handle and reports, in
 *    that order, so that in both paths the handle is closing when the
 *    callback sees the status and close_cb runs after it.
 */
#include "uv_internal.h"

/* ---- read ----------------------------------------------------------------- */

/* End the read: stop reading, give stream->data back, end the binding. */
static void read_end(ct_uv_read_t *op) {
  if (op->started_)
    (void)uv_read_stop(op->stream);
  op->started_ = 0;
  op->stream->data = op->saved_data_;
  ct_uv__bind_end(&op->bind_);
}

static void read_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  ct_uv_read_t *op = h->data;
  op->alloc_(op, size, buf);
}

static void read_data(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  ct_uv_read_t *op = s->data;
  if (nread < 0)
    read_end(op); /* libuv's EOF or error: the final call */
  /* The user may stop, or end and free, op here: touch nothing after. */
  op->read_(op, nread, buf);
}

static void read_fire(ct_uv_bind_t_ *b, int status) {
  ct_uv_read_t *op = CT_UV_CONTAINER_OF(b, ct_uv_read_t, bind_);
  uv_buf_t none = uv_buf_init(NULL, 0);
  read_end(op);
  op->read_(op, status, &none);
}

int ct_uv_read_start(ct_uv_read_t *op, uv_stream_t *stream, ct_token *t,
                     int64_t deadline, ct_uv_alloc_cb alloc_cb,
                     ct_uv_read_cb read_cb) {
  int rc;
  if (op == NULL || stream == NULL || t == NULL || alloc_cb == NULL ||
      read_cb == NULL || ct_uv__bad_deadline(deadline) ||
      uv_is_closing((uv_handle_t *)stream))
    return UV_EINVAL;
  rc = ct_uv__bind_init(&op->bind_, stream->loop, t, deadline, read_fire, 0);
  if (rc < 0)
    return rc;
  op->stream = stream;
  op->alloc_ = alloc_cb;
  op->read_ = read_cb;
  op->saved_data_ = stream->data;
  stream->data = op;
  /* Started even when the token is already triggered, so that libuv's own
   * checks (not readable, already reading) give the same errors in both
   * cases; it is stopped again below before any callback can run. */
  rc = uv_read_start(stream, read_alloc, read_data);
  if (rc < 0) {
    stream->data = op->saved_data_;
    ct_uv__bind_end(&op->bind_);
    return rc;
  }
  op->started_ = 1;
  if (ct_uv__bind_active(&op->bind_) && ct_token_triggered(op->bind_.token)) {
    /* Already triggered: read nothing; fire() reports on the next
     * iteration. */
    (void)uv_read_stop(stream);
    op->started_ = 0;
  }
  return 0;
}

int ct_uv_read_stop(ct_uv_read_t *op) {
  if (op == NULL || !ct_uv__bind_active(&op->bind_))
    return UV_EINVAL;
  read_end(op);
  return 0;
}

/* ---- connect ------------------------------------------------------------ */

static void connect_done(uv_connect_t *req, int status) {
  ct_uv_connect_t *op = CT_UV_CONTAINER_OF(req, ct_uv_connect_t, req);
  status = ct_uv__bind_result(&op->bind_, status);
  ct_uv__bind_end(&op->bind_);
  op->cb_(req, status);
}

static void connect_fire(ct_uv_bind_t_ *b, int status) {
  ct_uv_connect_t *op = CT_UV_CONTAINER_OF(b, ct_uv_connect_t, bind_);
  uv_handle_t *h = (uv_handle_t *)op->handle_;
  /* The user may have closed it already; libuv then reports UV_ECANCELED
   * itself. */
  if (!uv_is_closing(h))
    uv_close(h, op->close_cb_);
  if (op->started_)
    return; /* connect_done() follows, from inside the close */
  ct_uv__bind_end(b);
  op->cb_(&op->req, status);
}

int ct_uv_tcp_connect(ct_uv_connect_t *op, uv_tcp_t *handle,
                      const struct sockaddr *addr, ct_token *t,
                      int64_t deadline, uv_connect_cb cb,
                      uv_close_cb close_cb) {
  int rc;
  if (op == NULL || handle == NULL || addr == NULL || t == NULL ||
      cb == NULL || ct_uv__bad_deadline(deadline) ||
      uv_is_closing((uv_handle_t *)handle))
    return UV_EINVAL;
  rc = ct_uv__bind_init(&op->bind_, handle->loop, t, deadline, connect_fire,
                        0);
  if (rc < 0)
    return rc;
  op->cb_ = cb;
  op->close_cb_ = close_cb;
  op->handle_ = handle;
  op->started_ = 0;
  if (rc == 1) { /* already triggered: do not connect */
    void *data = op->req.data;
    memset(&op->req, 0, sizeof op->req);
    op->req.data = data;
    op->req.type = UV_CONNECT;
    op->req.handle = (uv_stream_t *)handle;
    return 0;
  }
  rc = uv_tcp_connect(&op->req, handle, addr, connect_done);
  if (rc < 0) {
    ct_uv__bind_end(&op->bind_);
    return rc;
  }
  op->started_ = 1;
  return 0;
}
