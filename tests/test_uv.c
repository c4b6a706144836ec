/* SPDX-License-Identifier: MIT
 *
 * test_uv.c -- the libuv adapter (canceltoken_uv.h) on real loops: watchers
 * triggered from other threads, a TCP echo over loopback cancelled in the
 * middle of a read, a read stopped from its own callback, and bad input.
 * The thread pool, connect timeouts, child processes, sleeps and requests
 * made with a token already triggered are in test_uv_ops.c.  Every test
 * ends with uv_loop_close() returning 0: no handle is left open.
 *
 *   test_uv                              run every test
 *   test_uv --example SERVER EXPECTED    drive examples/uv_server: connect,
 *                                        echo, SIGINT, compare its output
 *
 * Nothing here waits for time to pass to be correct: threads that must be
 * running announce it through tokens, and the only deadlines are either the
 * subject of the test or safety nets that fail the test.
 */
#include "uv_util.h"

/* ------------------------------------------------------------------------ */
/* ct_uv_status, bad input                                                  */

static void test_status(void **state) {
  (void)state;
  ct_token *t = token("t"), *d;
  ASSERT_ERR(ct_uv_status(NULL), UV_EINVAL);
  ASSERT_OK(ct_uv_status(t));
  ct_token_trigger(t);
  ASSERT_ERR(ct_uv_status(t), UV_ECANCELED);
  ASSERT_OK(ct_token_new_deadline(&d, "d", 0)); /* passed: triggered */
  ASSERT_ERR(ct_uv_status(d), UV_ETIMEDOUT);
  assert_int_equal(UV_ECANCELED, -ECANCELED); /* the header's promise */
  assert_int_equal(UV_ETIMEDOUT, -ETIMEDOUT);
  ct_token_unref(t);
  ct_token_unref(d);
}

static int start_sync_fs(uv_loop_t *loop, uv_fs_t *req, uv_fs_cb cb,
                         void *arg) {
  (void)cb;
  (void)arg;
  /* Breaks the rule: the synchronous form. */
  return uv_fs_stat(loop, req, "/", NULL);
}

static void test_bad_input(void **state) {
  (void)state;
  uv_loop_t *loop = loop_new();
  ct_token *t = token("t");
  ct_uv_watch_t w;
  ct_uv_sleep_t sl;
  ct_uv_work_t wk;
  ct_uv_fs_t fs;
  ct_uv_getaddrinfo_t gai;
  ct_uv_read_t rd;
  ct_uv_connect_t cn;
  ct_uv_process_t pr;
  uv_tcp_t tcp;
  struct sockaddr_in addr;
  int closed = 0;
  char *args[] = {"true", NULL};
  uv_process_options_t opts = {.file = "true", .args = args};

  /* NULL everywhere. */
  ASSERT_ERR(ct_uv_watch_init(NULL, &w, t), UV_EINVAL);
  ASSERT_ERR(ct_uv_watch_init(loop, NULL, t), UV_EINVAL);
  ASSERT_ERR(ct_uv_watch_init(loop, &w, NULL), UV_EINVAL);
  ASSERT_ERR(ct_uv_watch_start(NULL, never_watch), UV_EINVAL);
  ASSERT_ERR(ct_uv_watch_stop(NULL), UV_EINVAL);
  ct_uv_watch_close(NULL, NULL);
  ct_uv_watch_ref(NULL);
  ct_uv_watch_unref(NULL);
  assert_false(ct_uv_watch_is_active(NULL));
  assert_null(ct_uv_watch_token(NULL));
  ASSERT_ERR(ct_uv_sleep(loop, &sl, NULL, CT_FOREVER, never_sleep_cb),
             UV_EINVAL);
  ASSERT_ERR(ct_uv_sleep(NULL, &sl, t, CT_FOREVER, never_sleep_cb),
             UV_EINVAL);
  ASSERT_ERR(ct_uv_sleep(loop, &sl, t, CT_FOREVER, NULL), UV_EINVAL);
  ASSERT_ERR(ct_uv_sleep_stop(NULL), UV_EINVAL);
  ASSERT_ERR(ct_uv_queue_work(loop, &wk, NULL, CT_FOREVER, never_work, NULL),
             UV_EINVAL);
  ASSERT_ERR(ct_uv_queue_work(loop, &wk, t, CT_FOREVER, NULL, NULL),
             UV_EINVAL);
  assert_null(ct_uv_work_token(NULL));
  ASSERT_ERR(ct_uv_fs_open(loop, &fs, NULL, CT_FOREVER, "/", 0, 0,
                           never_fs_cb),
             UV_EINVAL);
  ASSERT_ERR(ct_uv_fs_open(loop, &fs, t, CT_FOREVER, NULL, 0, 0, never_fs_cb),
             UV_EINVAL);
  ASSERT_ERR(ct_uv_fs_read(loop, &fs, t, CT_FOREVER, 0, NULL, 0, 0,
                           never_fs_cb),
             UV_EINVAL);
  ASSERT_ERR(ct_uv_getaddrinfo(loop, &gai, NULL, CT_FOREVER, NULL, "localhost",
                               NULL, NULL),
             UV_EINVAL);
  ASSERT_ERR(ct_uv_read_start(&rd, NULL, t, CT_FOREVER, never_alloc,
                              never_read),
             UV_EINVAL);
  ASSERT_ERR(ct_uv_read_stop(NULL), UV_EINVAL);
  ASSERT_ERR(ct_uv_spawn(loop, &pr, &opts, NULL, CT_FOREVER, 0, never_exit),
             UV_EINVAL);

  /* Bad deadlines: negative other than CT_FOREVER. */
  ASSERT_ERR(ct_uv_sleep(loop, &sl, t, -2, never_sleep_cb), UV_EINVAL);
  ASSERT_ERR(ct_uv_queue_work(loop, &wk, t, INT64_MIN, never_work, NULL),
             UV_EINVAL);
  ASSERT_ERR(ct_uv_spawn(loop, &pr, &opts, t, -5, 0, never_exit), UV_EINVAL);
  /* Bad signal number. */
  ASSERT_ERR(ct_uv_spawn(loop, &pr, &opts, t, CT_FOREVER, -1, never_exit),
             UV_EINVAL);
  ASSERT_ERR(ct_uv_spawn(loop, &pr, &opts, t, CT_FOREVER, 100000, never_exit),
             UV_EINVAL);

  /* A start function that does not submit an asynchronous request. */
  ASSERT_ERR(ct_uv_fs(loop, &fs, t, CT_FOREVER, start_sync_fs, NULL,
                      never_fs_cb),
             UV_EINVAL);
  uv_fs_req_cleanup(&fs.req);

  /* A closing handle. */
  ASSERT_OK(uv_tcp_init(loop, &tcp));
  tcp.data = &closed;
  ASSERT_OK(uv_ip4_addr("127.0.0.1", 9, &addr));
  uv_close((uv_handle_t *)&tcp, count_close);
  ASSERT_ERR(ct_uv_read_start(&rd, (uv_stream_t *)&tcp, t, CT_FOREVER,
                              never_alloc, never_read),
             UV_EINVAL);
  ASSERT_ERR(ct_uv_tcp_connect(&cn, &tcp, (struct sockaddr *)&addr, t,
                               CT_FOREVER, never_connect_cb, NULL),
             UV_EINVAL);

  /* A closing watcher: start refuses, a second close is ignored. */
  ASSERT_OK(ct_uv_watch_init(loop, &w, t));
  ct_uv_watch_close(&w, NULL);
  ASSERT_ERR(ct_uv_watch_start(&w, never_watch), UV_EINVAL);
  ct_uv_watch_close(&w, NULL);

  /* A stream that is not readable: libuv's error, nothing bound. */
  {
    uv_tcp_t idle;
    ASSERT_OK(uv_tcp_init(loop, &idle));
    idle.data = &closed;
    ASSERT_ERR(ct_uv_read_start(&rd, (uv_stream_t *)&idle, t, CT_FOREVER,
                                never_alloc, never_read),
               UV_ENOTCONN);
    assert_ptr_equal(idle.data, &closed); /* given back */
    ASSERT_ERR(ct_uv_read_stop(&rd), UV_EINVAL); /* never bound */
    uv_close((uv_handle_t *)&idle, count_close);
    loop_finish(loop);
  }
  assert_int_equal(closed, 2);
  ct_token_unref(t);
}

/* ------------------------------------------------------------------------ */
/* Watchers                                                                 */

struct wstate {
  int fired;
  int restarts; /* restart from the callback this many times */
  int closed;
  ct_token *seen;
};

static void w_closed(ct_uv_watch_t *w) { ((struct wstate *)w->data)->closed++; }

static void w_fired(ct_uv_watch_t *w, ct_token *t) {
  struct wstate *s = w->data;
  assert_true(pthread_equal(pthread_self(), loop_thread));
  assert_true(ct_token_triggered(t));
  assert_ptr_equal(t, ct_uv_watch_token(w));
  assert_false(ct_uv_watch_is_active(w));
  s->seen = t;
  s->fired++;
  if (s->restarts > 0) {
    s->restarts--;
    ASSERT_OK(ct_uv_watch_start(w, w_fired));
    return;
  }
  ct_uv_watch_close(w, w_closed);
}

static void ready_cb(ct_uv_sleep_t *op, int status) {
  ASSERT_OK(status);
  ct_token_trigger(op->data); /* the loop is running */
}

/* Two watchers of one token (impossible with uv_poll_t on one descriptor),
 * one restarted from its callback, triggered from another thread while the
 * loop runs; the callbacks run on the loop thread. */
static void test_watch_trigger_from_thread(void **state) {
  (void)state;
  uv_loop_t *loop = loop_new();
  ct_token *stop = token("stop"), *ready = token("ready"),
           *never = token("never");
  struct wstate s1 = {0, 1, 0, NULL}, s2 = {0, 0, 0, NULL};
  ct_uv_watch_t w1, w2;
  ct_uv_sleep_t sl;
  struct trigger tr;

  ASSERT_OK(ct_uv_watch_init(loop, &w1, stop));
  ASSERT_OK(ct_uv_watch_init(loop, &w2, stop));
  w1.data = &s1;
  w2.data = &s2;
  ASSERT_OK(ct_uv_watch_start(&w1, w_fired));
  ASSERT_OK(ct_uv_watch_start(&w2, w_fired));
  assert_true(ct_uv_watch_is_active(&w1));
  /* The thread triggers once the loop runs: the first iteration's sleep
   * (deadline 0 has passed) says so. */
  sl.data = ready;
  ASSERT_OK(ct_uv_sleep(loop, &sl, never, 0, ready_cb));
  trigger_start(&tr, ready, stop);
  ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
  trigger_join(&tr);
  assert_int_equal(s1.fired, 2); /* once, then once more after restart */
  assert_int_equal(s2.fired, 1);
  assert_int_equal(s1.closed, 1);
  assert_int_equal(s2.closed, 1);
  assert_ptr_equal(s1.seen, stop);
  loop_finish(loop);
  ct_token_unref(stop);
  ct_token_unref(ready);
  ct_token_unref(never);
}

/* Already triggered: the callback runs from the loop, never from start. */
static void test_watch_already_triggered(void **state) {
  (void)state;
  uv_loop_t *loop = loop_new();
  ct_token *t = token("t");
  struct wstate s = {0, 0, 0, NULL};
  ct_uv_watch_t w;

  ct_token_trigger(t);
  ASSERT_OK(ct_uv_watch_init(loop, &w, t));
  ct_token_unref(t); /* the watcher holds its own reference */
  w.data = &s;
  ASSERT_OK(ct_uv_watch_start(&w, w_fired));
  assert_int_equal(s.fired, 0);
  ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
  assert_int_equal(s.fired, 1);
  assert_int_equal(s.closed, 1);
  loop_finish(loop);
}

/* Stopped and unref'd watchers do not keep the loop alive; a stopped
 * watcher's callback does not run even though its token was triggered. */
static void test_watch_stop_unref(void **state) {
  (void)state;
  uv_loop_t *loop = loop_new();
  ct_token *t = token("t");
  struct wstate s = {0, 0, 0, NULL};
  ct_uv_watch_t w;

  ASSERT_OK(ct_uv_watch_init(loop, &w, t));
  w.data = &s;
  ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT)); /* init'd only: returns */
  ASSERT_OK(ct_uv_watch_start(&w, never_watch));
  ASSERT_OK(ct_uv_watch_start(&w, w_fired)); /* replaces the callback */
  ct_uv_watch_unref(&w);
  ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT)); /* unref'd: returns */
  ct_uv_watch_ref(&w);
  assert_true(uv_loop_alive(loop));
  trigger_from_thread(t); /* async sent ... */
  ASSERT_OK(ct_uv_watch_stop(&w)); /* ... and dropped */
  ASSERT_OK(ct_uv_watch_stop(&w));
  assert_false(uv_loop_alive(loop));
  ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
  assert_int_equal(s.fired, 0);
  ASSERT_OK(ct_uv_watch_start(&w, w_fired)); /* fires: t stays triggered */
  ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
  assert_int_equal(s.fired, 1);
  assert_int_equal(s.closed, 1);
  loop_finish(loop);
  ct_token_unref(t);
}

/* Close races a trigger in another thread: the callback never runs after
 * close, the close callback runs once, nothing leaks. */
static void test_watch_close_races_trigger(void **state) {
  (void)state;
  uv_loop_t *loop = loop_new();
  for (int i = 0; i < 200; i++) {
    ct_token *t = token("race");
    struct wstate s = {0, 0, 0, NULL};
    ct_uv_watch_t w;
    struct trigger tr;
    ASSERT_OK(ct_uv_watch_init(loop, &w, t));
    w.data = &s;
    ASSERT_OK(ct_uv_watch_start(&w, never_watch));
    trigger_start(&tr, NULL, t);
    if (i & 1)
      sched_yield();
    ct_uv_watch_close(&w, w_closed);
    ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
    trigger_join(&tr);
    assert_int_equal(s.closed, 1);
    ct_token_unref(t);
  }
  loop_finish(loop);
}

/* ------------------------------------------------------------------------ */
/* TCP echo over loopback, cancelled in the middle of a read                */

struct echo {
  uv_loop_t *loop;
  uv_tcp_t server, sconn, client;
  ct_uv_read_t sread, cread;
  ct_uv_connect_t connect;
  uv_write_t cwrite;
  ct_token *stok, *ctok;
  bool cancel_server; /* which side the test cancels */
  char got[64];
  size_t ngot;
  int sfinal, cfinal;   /* the final statuses */
  int nsfinal, ncfinal; /* how many final calls */
  int closed;
  int smarker, cmarker; /* the streams' own data, borrowed and given back */
};

static const char echo_msg[] = "hello, loop";

static void e_alloc(ct_uv_read_t *op, size_t n, uv_buf_t *buf) {
  (void)op;
  *buf = uv_buf_init(malloc(n), (unsigned)n);
  assert_non_null(buf->base);
}

struct echo_write {
  uv_write_t req;
  char data[];
};

static void e_written(uv_write_t *req, int status) {
  /* UV_ECANCELED if the connection was closed under a pending write. */
  assert_true(status == 0 || status == UV_ECANCELED);
  free((struct echo_write *)(void *)req); /* req is the first member */
}

static void e_server_read(ct_uv_read_t *op, ssize_t n, const uv_buf_t *buf) {
  struct echo *e = op->data;
  if (n > 0) {
    struct echo_write *w = malloc(sizeof *w + (size_t)n);
    uv_buf_t out;
    assert_non_null(w);
    memcpy(w->data, buf->base, (size_t)n);
    out = uv_buf_init(w->data, (unsigned)n);
    ASSERT_OK(uv_write(&w->req, op->stream, &out, 1, e_written));
  } else if (n < 0) {
    e->sfinal = (int)n;
    e->nsfinal++;
    /* stream->data is ours again for the final call. */
    assert_ptr_equal(e->sconn.data, &e->smarker);
    e->sconn.data = &e->closed;
    uv_close((uv_handle_t *)&e->sconn, count_close);
  }
  free(buf->base);
}

static void e_client_read(ct_uv_read_t *op, ssize_t n, const uv_buf_t *buf) {
  struct echo *e = op->data;
  if (n > 0) {
    assert_true(e->ngot + (size_t)n <= sizeof echo_msg - 1);
    memcpy(e->got + e->ngot, buf->base, (size_t)n);
    e->ngot += (size_t)n;
    if (e->ngot == sizeof echo_msg - 1) {
      /* The whole echo is in and the read goes on, waiting for more:
       * cancel it now, from another thread. */
      assert_int_equal(e->ncfinal + e->nsfinal, 0);
      trigger_from_thread(e->cancel_server ? e->stok : e->ctok);
    }
  } else if (n < 0) {
    e->cfinal = (int)n;
    e->ncfinal++;
    assert_ptr_equal(e->client.data, &e->cmarker);
    e->client.data = &e->closed;
    uv_close((uv_handle_t *)&e->client, count_close);
  }
  free(buf->base);
}

static void e_client_wrote(uv_write_t *req, int status) {
  (void)req;
  ASSERT_OK(status);
}

static void e_connected(uv_connect_t *req, int status) {
  struct echo *e = req->data;
  uv_buf_t out = uv_buf_init((char *)echo_msg, sizeof echo_msg - 1);
  ASSERT_OK(status);
  ASSERT_OK(uv_write(&e->cwrite, (uv_stream_t *)&e->client, &out, 1,
                     e_client_wrote));
  e->client.data = &e->cmarker;
  e->cread.data = e;
  ASSERT_OK(ct_uv_read_start(&e->cread, (uv_stream_t *)&e->client, e->ctok,
                             CT_FOREVER, e_alloc, e_client_read));
  assert_ptr_equal(e->client.data, &e->cread); /* borrowed */
}

static void e_accepted(uv_stream_t *server, int status) {
  struct echo *e = server->data;
  ASSERT_OK(status);
  ASSERT_OK(uv_tcp_init(e->loop, &e->sconn));
  ASSERT_OK(uv_accept(server, (uv_stream_t *)&e->sconn));
  e->sconn.data = &e->smarker;
  e->sread.data = e;
  ASSERT_OK(ct_uv_read_start(&e->sread, (uv_stream_t *)&e->sconn, e->stok,
                             CT_FOREVER, e_alloc, e_server_read));
  /* One connection only. */
  e->server.data = &e->closed;
  uv_close((uv_handle_t *)&e->server, count_close);
}

static void run_echo(bool cancel_server) {
  struct echo *e = calloc(1, sizeof *e);
  struct sockaddr_in addr;
  int len = sizeof addr;
  assert_non_null(e);
  e->loop = loop_new();
  e->cancel_server = cancel_server;
  e->stok = token("server");
  e->ctok = token("client");

  ASSERT_OK(uv_tcp_init(e->loop, &e->server));
  e->server.data = e;
  ASSERT_OK(uv_ip4_addr("127.0.0.1", 0, &addr));
  ASSERT_OK(uv_tcp_bind(&e->server, (struct sockaddr *)&addr, 0));
  ASSERT_OK(uv_listen((uv_stream_t *)&e->server, 8, e_accepted));
  ASSERT_OK(uv_tcp_getsockname(&e->server, (struct sockaddr *)&addr, &len));
  assert_int_not_equal(ntohs(addr.sin_port), 0);

  ASSERT_OK(uv_tcp_init(e->loop, &e->client));
  e->connect.req.data = e;
  ASSERT_OK(ct_uv_tcp_connect(&e->connect, &e->client,
                              (struct sockaddr *)&addr, e->ctok,
                              ct_deadline_after(SAFETY), e_connected, NULL));
  ASSERT_OK(uv_run(e->loop, UV_RUN_DEFAULT));

  assert_int_equal(e->ngot, sizeof echo_msg - 1);
  assert_memory_equal(e->got, echo_msg, e->ngot);
  assert_int_equal(e->nsfinal, 1);
  assert_int_equal(e->ncfinal, 1);
  if (cancel_server) {
    /* Shutdown: the server's read is cancelled, it closes, the client
     * reads the end of the stream. */
    ASSERT_ERR(e->sfinal, UV_ECANCELED);
    ASSERT_ERR(e->cfinal, UV_EOF);
  } else {
    ASSERT_ERR(e->cfinal, UV_ECANCELED);
    ASSERT_ERR(e->sfinal, UV_EOF);
  }
  assert_int_equal(e->closed, 3);
  loop_finish(e->loop);
  ct_token_unref(e->stok);
  ct_token_unref(e->ctok);
  free(e);
}

static void test_tcp_echo_client_cancelled_mid_read(void **state) {
  (void)state;
  run_echo(false);
}

static void test_tcp_echo_server_shutdown_mid_read(void **state) {
  (void)state;
  run_echo(true);
}

/* A read stopped from its own data callback: no final call, the stream's
 * data is given back, and the token fired later has no effect. */
struct stopper {
  uv_tcp_t server, conn, client;
  uv_connect_t creq;
  uv_write_t wreq;
  ct_uv_read_t rd;
  ct_token *t;
  int ndata, closed;
};

static void s_read(ct_uv_read_t *op, ssize_t n, const uv_buf_t *buf) {
  struct stopper *s = op->data;
  assert_true(n >= 0); /* never a final call */
  free(buf->base);
  if (n == 0)
    return;
  s->ndata++;
  ASSERT_OK(ct_uv_read_stop(op));
  ASSERT_ERR(ct_uv_read_stop(op), UV_EINVAL);
  assert_ptr_equal(s->conn.data, &s->closed);
  ct_token_trigger(s->t); /* nobody listens any more */
  uv_close((uv_handle_t *)&s->conn, count_close);
  uv_close((uv_handle_t *)&s->client, count_close);
}

static void s_accepted(uv_stream_t *server, int status) {
  struct stopper *s = server->data;
  ASSERT_OK(status);
  ASSERT_OK(uv_tcp_init(server->loop, &s->conn));
  ASSERT_OK(uv_accept(server, (uv_stream_t *)&s->conn));
  s->conn.data = &s->closed;
  s->rd.data = s;
  ASSERT_OK(ct_uv_read_start(&s->rd, (uv_stream_t *)&s->conn, s->t,
                             CT_FOREVER, e_alloc, s_read));
  s->server.data = &s->closed;
  uv_close((uv_handle_t *)&s->server, count_close);
}

static void s_connected(uv_connect_t *req, int status) {
  struct stopper *s = req->data;
  uv_buf_t out = uv_buf_init((char *)"x", 1);
  ASSERT_OK(status);
  ASSERT_OK(uv_write(&s->wreq, (uv_stream_t *)&s->client, &out, 1,
                     e_client_wrote));
}

static void test_read_stop_from_callback(void **state) {
  (void)state;
  uv_loop_t *loop = loop_new();
  struct stopper s;
  struct sockaddr_in addr;
  int len = sizeof addr;
  memset(&s, 0, sizeof s);
  s.t = token("t");
  ASSERT_OK(uv_tcp_init(loop, &s.server));
  s.server.data = &s;
  ASSERT_OK(uv_ip4_addr("127.0.0.1", 0, &addr));
  ASSERT_OK(uv_tcp_bind(&s.server, (struct sockaddr *)&addr, 0));
  ASSERT_OK(uv_listen((uv_stream_t *)&s.server, 8, s_accepted));
  ASSERT_OK(uv_tcp_getsockname(&s.server, (struct sockaddr *)&addr, &len));
  ASSERT_OK(uv_tcp_init(loop, &s.client));
  s.client.data = &s.closed;
  s.creq.data = &s;
  ASSERT_OK(uv_tcp_connect(&s.creq, &s.client, (struct sockaddr *)&addr,
                           s_connected));
  ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
  assert_int_equal(s.ndata, 1);
  assert_int_equal(s.closed, 3);
  loop_finish(loop);
  ct_token_unref(s.t);
}

/* ------------------------------------------------------------------------ */
/* The example server, driven from outside                                  */

static const char *example_server, *example_expected;

/* Read from fd into buf (NUL-terminated) until `until` appears in it, EOF,
 * or the safety deadline.  Returns the length. */
static size_t read_until(int fd, char *buf, size_t cap, size_t len,
                         const char *until, int64_t deadline) {
  ct_token *never = token("never");
  for (;;) {
    buf[len] = '\0';
    if (until != NULL && strstr(buf, until) != NULL)
      break;
    int rc = ct_wait_fd(never, fd, POLLIN, deadline);
    if (rc < 0)
      fail_msg("read_until(%s): %s; so far: [%s]", until ? until : "EOF",
               ct_err_name(rc), buf);
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    assert_true(n >= 0);
    if (n == 0)
      break;
    len += (size_t)n;
  }
  ct_token_unref(never);
  return len;
}

static void test_example_server(void **state) {
  (void)state;
  int out[2], err[2], sock, status, port = 0;
  char buf[4096], errbuf[4096], expected[4096], *p;
  size_t len = 0, elen;
  int64_t deadline = ct_deadline_after(SAFETY);
  posix_spawn_file_actions_t fa;
  pid_t pid;
  char *argv[] = {(char *)example_server, NULL};
  struct sockaddr_in addr;
  static const char msg[] = "hello, server\n";
  FILE *f;

  assert_int_equal(pipe2(out, O_CLOEXEC), 0);
  assert_int_equal(pipe2(err, O_CLOEXEC), 0);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  assert_int_equal(posix_spawn(&pid, example_server, &fa, NULL, argv, environ),
                   0);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  close(err[1]);

  /* "listening on 127.0.0.1:<port>" */
  len = read_until(out[0], buf, sizeof buf, len, "\n", deadline);
  p = strstr(buf, "127.0.0.1:");
  assert_non_null(p);
  port = atoi(p + strlen("127.0.0.1:"));
  assert_true(port > 0 && port < 65536);

  /* Connect, send, read the echo. */
  sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(sock >= 0);
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(sock, (struct sockaddr *)&addr, sizeof addr), 0);
  assert_int_equal(write(sock, msg, sizeof msg - 1), (ssize_t)(sizeof msg - 1));
  {
    char echo[64];
    size_t n = read_until(sock, echo, sizeof echo, 0, "\n", deadline);
    assert_int_equal(n, sizeof msg - 1);
    assert_memory_equal(echo, msg, n);
  }

  /* SIGINT: the server stops, closing our connection first. */
  assert_int_equal(kill(pid, SIGINT), 0);
  {
    char rest[64];
    size_t n = read_until(sock, rest, sizeof rest, 0, NULL, deadline);
    assert_int_equal(n, 0); /* end of stream */
  }
  close(sock);
  len = read_until(out[0], buf, sizeof buf, len, NULL, deadline);
  elen = read_until(err[0], errbuf, sizeof errbuf, 0, NULL, deadline);
  close(out[0]);
  close(err[0]);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (elen != 0)
    fail_msg("the server wrote to standard error:\n%s", errbuf);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);

  /* Compare, with the port replaced by PORT. */
  {
    char norm[4096];
    int n = snprintf(norm, sizeof norm, "%.*s127.0.0.1:PORT%s",
                     (int)(p - buf), buf, strchr(p, '\n'));
    assert_true(n > 0 && (size_t)n < sizeof norm);
    f = fopen(example_expected, "r");
    assert_non_null(f);
    elen = fread(expected, 1, sizeof expected - 1, f);
    fclose(f);
    expected[elen] = '\0';
    if (strcmp(norm, expected) != 0)
      fail_msg("output differs\n--- expected ---\n%s--- actual ---\n%s",
               expected, norm);
  }
}

int main(int argc, char **argv) {
  /* Before any libuv pool use: the pool's size is read once. */
  setenv("UV_THREADPOOL_SIZE", "4", 1);
  signal(SIGPIPE, SIG_IGN);
  loop_thread = pthread_self();

  if (argc == 4 && strcmp(argv[1], "--example") == 0) {
    example_server = argv[2];
    example_expected = argv[3];
    const struct CMUnitTest example[] = {
        cmocka_unit_test(test_example_server),
    };
    return cmocka_run_group_tests_name("uv_server example", example, NULL,
                                       NULL);
  }

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_watch_trigger_from_thread),
      cmocka_unit_test(test_watch_already_triggered),
      cmocka_unit_test(test_watch_stop_unref),
      cmocka_unit_test(test_watch_close_races_trigger),
      cmocka_unit_test(test_tcp_echo_client_cancelled_mid_read),
      cmocka_unit_test(test_tcp_echo_server_shutdown_mid_read),
      cmocka_unit_test(test_read_stop_from_callback),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
