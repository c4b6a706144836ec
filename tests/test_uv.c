/* SPDX-License-Identifier: MIT
 *
 * test_uv.c -- the libuv adapter (canceltoken_uv.h) on real loops: watchers
 * triggered from other threads, a TCP echo over loopback cancelled in the
 * middle of a read, thread-pool requests cancelled before they start (the
 * pool is saturated on purpose), a connect that really hangs (the listener's
 * accept queue is full) ended by its deadline, child processes killed,
 * cancellable sleeps, and bad input.  Every test ends with uv_loop_close()
 * returning 0: no handle is left open.
 *
 *   test_uv                              run every test
 *   test_uv --example SERVER EXPECTED    drive examples/uv_server: connect,
 *                                        echo, SIGINT, compare its output
 *
 * Nothing here waits for time to pass to be correct: threads that must be
 * running announce it through tokens, and the only deadlines are either the
 * subject of the test or safety nets that fail the test.
 */
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

static pthread_t loop_thread; /* the thread that runs every loop here */

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

static uv_loop_t *loop_new(void) {
  uv_loop_t *loop = malloc(sizeof *loop);
  assert_non_null(loop);
  ASSERT_OK(uv_loop_init(loop));
  return loop;
}

/* Run what is left, then the assertion every test ends with. */
static void loop_finish(uv_loop_t *loop) {
  int rc;
  ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
  rc = uv_loop_close(loop);
  if (rc != 0)
    uv_print_all_handles(loop, stderr);
  ASSERT_OK(rc);
  free(loop);
}

static ct_token *token(const char *name) {
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

static void *trigger_main(void *arg) {
  struct trigger *tr = arg;
  if (tr->ready != NULL)
    assert_int_equal(ct_token_wait(tr->ready, ct_deadline_after(SAFETY)), 0);
  ct_token_trigger(tr->t);
  return NULL;
}

static void trigger_start(struct trigger *tr, ct_token *ready, ct_token *t) {
  tr->ready = ready;
  tr->t = t;
  assert_int_equal(pthread_create(&tr->thread, NULL, trigger_main, tr), 0);
}

static void trigger_join(struct trigger *tr) {
  assert_int_equal(pthread_join(tr->thread, NULL), 0);
}

/* Trigger t from another thread and wait until that thread is done. */
static void trigger_from_thread(ct_token *t) {
  struct trigger tr;
  trigger_start(&tr, NULL, t);
  trigger_join(&tr);
}

static void count_close(uv_handle_t *h) { (*(int *)h->data)++; }

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

static void never_sleep_cb(ct_uv_sleep_t *op, int status) {
  (void)op;
  fail_msg("sleep callback ran (status %d)", status);
}
static void never_work(uv_work_t *req) { (void)req; }
static void never_fs_cb(uv_fs_t *req) { (void)req; fail_msg("fs cb ran"); }
static void never_connect_cb(uv_connect_t *req, int status) {
  (void)req;
  fail_msg("connect cb ran (%d)", status);
}
static void never_alloc(ct_uv_read_t *op, size_t n, uv_buf_t *buf) {
  (void)op;
  (void)n;
  *buf = uv_buf_init(NULL, 0);
}
static void never_read(ct_uv_read_t *op, ssize_t n, const uv_buf_t *buf) {
  (void)op;
  (void)buf;
  fail_msg("read cb ran (%zd)", n);
}
static void never_exit(uv_process_t *p, int status, int64_t es, int sig) {
  (void)p;
  fail_msg("exit cb ran (%d %lld %d)", status, (long long)es, sig);
}
static void never_watch(ct_uv_watch_t *w, ct_token *t) {
  (void)w;
  (void)t;
  fail_msg("watch cb ran");
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
/* Thread pool: requests cancelled before they start                       */

struct pool {
  ct_token *started;   /* triggered when all NPOOL blockers run */
  _Atomic int running; /* blockers running */
  ct_uv_work_t blockers[NPOOL];
  int blocker_status[NPOOL];
  int nblocker_done;
  ct_token *blk; /* bound to the blockers, triggered while they run */
  /* the victims, queued behind the blockers */
  ct_uv_work_t work, work_late;
  ct_uv_fs_t fs;
  ct_uv_getaddrinfo_t gai;
  _Atomic int victim_ran;
  int work_status, late_status, nvictims;
  ssize_t fs_result;
  int gai_status;
};

static void blocker_work(uv_work_t *req) {
  struct pool *p = req->data;
  /* The token to poll is the one the request is bound to. */
  ct_token *t = ct_uv_work_token(req);
  assert_non_null(t);
  if (atomic_fetch_add(&p->running, 1) + 1 == NPOOL)
    ct_token_trigger(p->started);
  /* Cooperative: runs until its token is triggered (safety: fails). */
  assert_int_equal(ct_token_wait(t, ct_deadline_after(SAFETY)), 0);
}

static void blocker_done(uv_work_t *req, int status) {
  struct pool *p = req->data;
  ct_uv_work_t *op = (ct_uv_work_t *)req;
  p->blocker_status[op - p->blockers] = status;
  p->nblocker_done++;
}

static void victim_work(uv_work_t *req) {
  struct pool *p = req->data;
  atomic_store(&p->victim_ran, 1);
}

/* All four victims have reported: let the blockers go -- they are
 * running, so uv_cancel() fails for them and each reports 0, once. */
static void victim_reported(struct pool *p) {
  if (++p->nvictims == 4)
    trigger_from_thread(p->blk);
}

static void victim_done(uv_work_t *req, int status) {
  struct pool *p = req->data;
  p->work_status = status;
  victim_reported(p);
}

static void late_done(uv_work_t *req, int status) {
  struct pool *p = req->data;
  p->late_status = status;
  victim_reported(p);
}

static void fs_done_cb(uv_fs_t *req) {
  struct pool *p = req->data;
  p->fs_result = req->result;
  if (req->result >= 0) { /* it ran after all: do not leak the fd */
    uv_fs_t c;
    uv_fs_close(NULL, &c, (uv_file)req->result, NULL);
    uv_fs_req_cleanup(&c);
  }
  uv_fs_req_cleanup(req);
  victim_reported(p);
}

static void gai_done_cb(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  struct pool *p = req->data;
  p->gai_status = status;
  assert_null(res);
  uv_freeaddrinfo(res);
  victim_reported(p);
}

static void test_pool_cancel_before_start(void **state) {
  (void)state;
  uv_loop_t *loop = loop_new();
  struct pool *p = calloc(1, sizeof *p);
  ct_token *cancel = token("cancel"), *never = token("never");
  assert_non_null(p);
  p->started = token("started");
  p->blk = token("blockers");

  /* Occupy every pool thread, and wait until they all run. */
  for (int i = 0; i < NPOOL; i++) {
    p->blockers[i].req.data = p;
    ASSERT_OK(ct_uv_queue_work(loop, &p->blockers[i], p->blk, CT_FOREVER,
                               blocker_work, blocker_done));
  }
  ASSERT_OK(ct_token_wait(p->started, ct_deadline_after(SAFETY)));

  /* Queued behind them: none can start. */
  p->work.req.data = p;
  ASSERT_OK(ct_uv_queue_work(loop, &p->work, cancel, CT_FOREVER, victim_work,
                             victim_done));
  p->fs.req.data = p;
  ASSERT_OK(ct_uv_fs_open(loop, &p->fs, cancel, CT_FOREVER, "/dev/null",
                          O_RDONLY, 0, fs_done_cb));
  p->gai.req.data = p;
  ASSERT_OK(ct_uv_getaddrinfo(loop, &p->gai, cancel, CT_FOREVER, gai_done_cb,
                              "localhost", NULL, NULL));
  /* And one whose deadline passes while it waits (the token is never
   * triggered). */
  p->work_late.req.data = p;
  ASSERT_OK(ct_uv_queue_work(loop, &p->work_late, never,
                             ct_deadline_after(20 * MS), victim_work,
                             late_done));
  ct_token_trigger(cancel);
  ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));

  assert_int_equal(atomic_load(&p->victim_ran), 0);
  assert_int_equal(p->nvictims, 4);
  ASSERT_ERR(p->work_status, UV_ECANCELED);
  ASSERT_ERR(p->late_status, UV_ETIMEDOUT);
  ASSERT_ERR((int)p->fs_result, UV_ECANCELED);
  ASSERT_ERR(p->gai_status, UV_ECANCELED); /* not UV_EAI_CANCELED */
  assert_int_equal(p->nblocker_done, NPOOL);
  for (int i = 0; i < NPOOL; i++)
    ASSERT_OK(p->blocker_status[i]); /* they ran: their real result */
  loop_finish(loop);
  ct_token_unref(p->started);
  ct_token_unref(p->blk);
  ct_token_unref(cancel);
  ct_token_unref(never);
  free(p);
}

/* ------------------------------------------------------------------------ */
/* A connect that really hangs, ended by its deadline or its token         */

static int listener_full(int lfd) {
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  assert_int_equal(getsockopt(lfd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
  /* For a listener, Linux reports the accept queue's length in
   * tcpi_unacked and its limit in tcpi_sacked. */
  return ti.tcpi_unacked > ti.tcpi_sacked;
}

static int tcp_state(int fd) {
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
  return ti.tcpi_state;
}

/* A listener on 127.0.0.1 that never accepts, its accept queue full:
 * Linux drops further SYNs, so a connect to it stays in SYN-SENT. */
struct blackhole {
  int lfd;
  int fillers[16];
  int nfillers;
  struct sockaddr_in addr;
};

static int nb_connect(const struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0)
    assert_int_equal(errno, EINPROGRESS);
  return fd;
}

static void blackhole_open(struct blackhole *b) {
  socklen_t len = sizeof b->addr;
  ct_token *never = token("never");
  int64_t deadline = ct_deadline_after(SAFETY);
  b->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(b->lfd >= 0);
  memset(&b->addr, 0, sizeof b->addr);
  b->addr.sin_family = AF_INET;
  b->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(b->lfd, (struct sockaddr *)&b->addr, sizeof b->addr),
                   0);
  assert_int_equal(listen(b->lfd, 0), 0);
  assert_int_equal(getsockname(b->lfd, (struct sockaddr *)&b->addr, &len), 0);
  b->nfillers = 0;
  /* Connect fillers until the kernel says the queue is full.  A filler
   * completes (it is queued) or, if the queue filled meanwhile, hangs;
   * either way we look at the queue again. */
  while (!listener_full(b->lfd)) {
    assert_true(b->nfillers < 16);
    int fd = nb_connect(&b->addr);
    b->fillers[b->nfillers++] = fd;
    while (!listener_full(b->lfd)) {
      int rc = ct_wait_fd(never, fd, POLLOUT, ct_deadline_after(10 * MS));
      if (rc > 0)
        break; /* connected and queued (the queue may lag a moment) */
      ASSERT_ERR(rc, -ETIMEDOUT);
      assert_true(ct_now() < deadline);
    }
  }
  ct_token_unref(never);
}

static void blackhole_close(struct blackhole *b) {
  for (int i = 0; i < b->nfillers; i++)
    close(b->fillers[i]);
  close(b->lfd);
}

struct hang {
  uv_tcp_t tcp;
  ct_uv_connect_t op;
  int status, ncb, closed;
};

static void hang_connected(uv_connect_t *req, int status) {
  struct hang *h = req->data;
  h->status = status;
  h->ncb++;
  /* The adapter closed the handle; close_cb comes after this. */
  assert_true(uv_is_closing((uv_handle_t *)&h->tcp));
  assert_int_equal(h->closed, 0);
}

static void test_connect_timeout_on_full_backlog(void **state) {
  (void)state;
  uv_loop_t *loop = loop_new();
  struct blackhole b;
  struct hang h = {.status = 1};
  ct_token *never = token("never");
  int probe;

  blackhole_open(&b);
  probe = nb_connect(&b.addr); /* a plain connect, to prove the hang */

  ASSERT_OK(uv_tcp_init(loop, &h.tcp));
  h.tcp.data = &h.closed;
  h.op.req.data = &h;
  ASSERT_OK(ct_uv_tcp_connect(&h.op, &h.tcp, (struct sockaddr *)&b.addr, never,
                              ct_deadline_after(300 * MS), hang_connected,
                              count_close));
  ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
  ASSERT_ERR(h.status, UV_ETIMEDOUT);
  assert_int_equal(h.ncb, 1);
  assert_int_equal(h.closed, 1);
  /* It really hung: a connect begun before ours is still in SYN-SENT,
   * after our deadline passed. */
  assert_int_equal(tcp_state(probe), TCP_SYN_SENT);

  /* Same, ended by a token triggered from another thread. */
  {
    struct hang h2 = {.status = 1};
    ct_token *cancel = token("cancel");
    struct trigger tr;
    ASSERT_OK(uv_tcp_init(loop, &h2.tcp));
    h2.tcp.data = &h2.closed;
    h2.op.req.data = &h2;
    ASSERT_OK(ct_uv_tcp_connect(&h2.op, &h2.tcp, (struct sockaddr *)&b.addr,
                                cancel, ct_deadline_after(SAFETY),
                                hang_connected, count_close));
    trigger_start(&tr, NULL, cancel);
    ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
    trigger_join(&tr);
    ASSERT_ERR(h2.status, UV_ECANCELED);
    assert_int_equal(h2.ncb, 1);
    assert_int_equal(h2.closed, 1);
    ct_token_unref(cancel);
  }
  assert_int_equal(tcp_state(probe), TCP_SYN_SENT);
  close(probe);
  blackhole_close(&b);
  loop_finish(loop);
  ct_token_unref(never);
}

/* ------------------------------------------------------------------------ */
/* Child processes                                                          */

struct child {
  ct_uv_process_t op;
  int status, nexit, closed, term_signal;
  int64_t exit_status;
};

static void child_exited(uv_process_t *p, int status, int64_t exit_status,
                         int term_signal) {
  struct child *c = p->data;
  c->status = status;
  c->exit_status = exit_status;
  c->term_signal = term_signal;
  c->nexit++;
  p->data = &c->closed;
  uv_close((uv_handle_t *)p, count_close);
}

static void spawn_child(uv_loop_t *loop, struct child *c, char **args,
                        ct_token *t, int64_t deadline) {
  uv_process_options_t opts;
  memset(&opts, 0, sizeof opts);
  opts.file = args[0];
  opts.args = args;
  memset(c, 0, sizeof *c);
  c->status = 1;
  c->op.process.data = c;
  ASSERT_OK(ct_uv_spawn(loop, &c->op, &opts, t, deadline, 0, child_exited));
}

static void test_spawn_killed(void **state) {
  (void)state;
  uv_loop_t *loop = loop_new();
  char *sleeper[] = {"sleep", "30", NULL}, *truth[] = {"true", NULL};
  ct_token *cancel = token("cancel"), *never = token("never");
  struct child a, b, c;

  spawn_child(loop, &a, sleeper, cancel, CT_FOREVER);
  /* b must be spawned with its deadline still ahead.  A thread
   * descheduled past it (a loaded machine, valgrind) is refused at once
   * with UV_ETIMEDOUT, nothing spawned, op->process untouched (the
   * header's exception): that is checked, and b starts again with a
   * delay four times longer. */
  for (int64_t delay = 100 * MS;; delay *= 4) {
    uv_process_options_t opts;
    memset(&opts, 0, sizeof opts);
    opts.file = sleeper[0];
    opts.args = sleeper;
    memset(&b, 0, sizeof b);
    b.status = 1;
    b.op.process.data = &b;
    int r = ct_uv_spawn(loop, &b.op, &opts, never, ct_deadline_after(delay), 0,
                        child_exited);
    if (r == 0)
      break;
    ASSERT_ERR(r, UV_ETIMEDOUT); /* (a callback for it would make 4 below) */
  }
  spawn_child(loop, &c, truth, never, ct_deadline_after(SAFETY));
  trigger_from_thread(cancel);
  ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));

  ASSERT_ERR(a.status, UV_ECANCELED);
  assert_int_equal(a.term_signal, SIGTERM);
  ASSERT_ERR(b.status, UV_ETIMEDOUT);
  assert_int_equal(b.term_signal, SIGTERM);
  ASSERT_OK(c.status); /* ended by itself */
  assert_int_equal(c.exit_status, 0);
  assert_int_equal(c.term_signal, 0);
  assert_int_equal(a.nexit + b.nexit + c.nexit, 3);
  assert_int_equal(a.closed + b.closed + c.closed, 3);

  /* Already triggered: refused at once, the handle untouched. */
  {
    ct_uv_process_t op;
    uv_process_options_t opts;
    memset(&opts, 0, sizeof opts);
    opts.file = truth[0];
    opts.args = truth;
    memset(&op, 0xa5, sizeof op);
    ASSERT_ERR(ct_uv_spawn(loop, &op, &opts, cancel, CT_FOREVER, SIGKILL,
                           never_exit),
               UV_ECANCELED);
    ASSERT_ERR(ct_uv_spawn(loop, &op, &opts, never, 0, SIGKILL, never_exit),
               UV_ETIMEDOUT);
    /* A program that does not exist: uv_spawn()'s error; close as libuv
     * says. */
    char *nothing[] = {"/nonexistent/ct-uv-test", NULL};
    opts.file = nothing[0];
    opts.args = nothing;
    ASSERT_ERR(ct_uv_spawn(loop, &op, &opts, never, CT_FOREVER, 0,
                           never_exit),
               UV_ENOENT);
    uv_close((uv_handle_t *)&op.process, NULL);
  }
  loop_finish(loop);
  ct_token_unref(cancel);
  ct_token_unref(never);
}

/* ------------------------------------------------------------------------ */
/* Sleeps                                                                   */

struct nap {
  ct_uv_sleep_t op;
  int status, n;
};

static void nap_done(ct_uv_sleep_t *op, int status) {
  struct nap *n = op->data;
  assert_true(pthread_equal(pthread_self(), loop_thread));
  n->status = status;
  n->n++;
}

static void test_sleep(void **state) {
  (void)state;
  uv_loop_t *loop = loop_new();
  ct_token *never = token("never"), *cancel = token("cancel"), *timed;
  struct nap a = {.status = 1}, b = {.status = 1}, c = {.status = 1},
             d = {.status = 1};
  ASSERT_OK(ct_token_new_deadline(&timed, "timed", ct_deadline_after(10 * MS)));

  a.op.data = &a;
  ASSERT_OK(ct_uv_sleep(loop, &a.op, never, ct_deadline_after(10 * MS),
                        nap_done));
  b.op.data = &b;
  ASSERT_OK(ct_uv_sleep(loop, &b.op, cancel, CT_FOREVER, nap_done));
  c.op.data = &c;
  ASSERT_OK(ct_uv_sleep(loop, &c.op, timed, ct_deadline_after(SAFETY),
                        nap_done));
  d.op.data = &d;
  ASSERT_OK(ct_uv_sleep(loop, &d.op, never, CT_FOREVER, nap_done));
  ASSERT_OK(ct_uv_sleep_stop(&d.op)); /* no callback, loop not kept */
  ASSERT_ERR(ct_uv_sleep_stop(&d.op), UV_EINVAL);
  trigger_from_thread(cancel);
  assert_int_equal(b.n, 0); /* never from inside the trigger */
  ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
  ASSERT_OK(a.status);                /* its own deadline: success */
  ASSERT_ERR(b.status, UV_ECANCELED); /* the token */
  ASSERT_ERR(c.status, UV_ETIMEDOUT); /* the token's own deadline */
  assert_int_equal(a.n + b.n + c.n, 3);
  assert_int_equal(d.n, 0);
  loop_finish(loop);
  ct_token_unref(never);
  ct_token_unref(cancel);
  ct_token_unref(timed);
}

/* An operation's stop races its token's trigger in another thread. */
static void test_sleep_stop_races_trigger(void **state) {
  (void)state;
  uv_loop_t *loop = loop_new();
  for (int i = 0; i < 200; i++) {
    ct_token *t = token("race");
    struct nap n = {.status = 1};
    struct trigger tr;
    n.op.data = &n;
    ASSERT_OK(ct_uv_sleep(loop, &n.op, t, CT_FOREVER, nap_done));
    trigger_start(&tr, NULL, t);
    if (i & 1)
      sched_yield();
    ASSERT_OK(ct_uv_sleep_stop(&n.op));
    ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
    trigger_join(&tr);
    assert_int_equal(n.n, 0);
    ct_token_unref(t);
  }
  loop_finish(loop);
}

/* ------------------------------------------------------------------------ */
/* Already triggered when bound: one asynchronous callback, nothing started */

struct pre {
  int work, fs, gai, connect, read, closed;
  int work_status, gai_status, connect_status, read_status;
  ssize_t fs_result;
};

static struct pre *pre_of(void *p) { return p; }

static void pre_work_done(uv_work_t *req, int status) {
  pre_of(req->data)->work++;
  pre_of(req->data)->work_status = status;
}
static void pre_fs_done(uv_fs_t *req) {
  pre_of(req->data)->fs++;
  pre_of(req->data)->fs_result = req->result;
  uv_fs_req_cleanup(req); /* safe on a request that never started */
}
static void pre_gai_done(uv_getaddrinfo_t *req, int status,
                         struct addrinfo *res) {
  assert_null(res);
  pre_of(req->data)->gai++;
  pre_of(req->data)->gai_status = status;
}
static void pre_connect_done(uv_connect_t *req, int status) {
  struct pre *p = req->data;
  p->connect++;
  p->connect_status = status;
  assert_true(uv_is_closing((uv_handle_t *)req->handle));
}
static void pre_read(ct_uv_read_t *op, ssize_t n, const uv_buf_t *buf) {
  struct pre *p = op->data;
  assert_null(buf->base);
  p->read++;
  p->read_status = (int)n;
  uv_close((uv_handle_t *)op->stream, count_close);
}

static void never_accept(uv_stream_t *server, int status) {
  (void)server;
  fail_msg("a connection was accepted (%d)", status);
}

static void test_already_triggered(void **state) {
  (void)state;
  uv_loop_t *loop = loop_new();
  ct_token *t = token("t");
  struct pre p;
  ct_uv_work_t wk;
  ct_uv_fs_t fs;
  ct_uv_getaddrinfo_t gai;
  ct_uv_connect_t cn;
  ct_uv_read_t rd;
  uv_tcp_t tcp, server;
  uv_pipe_t pipe_h;
  uv_file fds[2];
  struct sockaddr_in addr;
  int len = sizeof addr;

  memset(&p, 0, sizeof p);
  ct_token_trigger(t);

  wk.req.data = &p;
  ASSERT_OK(ct_uv_queue_work(loop, &wk, t, CT_FOREVER, never_work,
                             pre_work_done));
  fs.req.data = &p;
  ASSERT_OK(ct_uv_fs_open(loop, &fs, t, CT_FOREVER, "/dev/null", O_RDONLY, 0,
                          pre_fs_done));
  gai.req.data = &p;
  ASSERT_OK(ct_uv_getaddrinfo(loop, &gai, t, CT_FOREVER, pre_gai_done,
                              "localhost", NULL, NULL));

  /* A connect to a real listener: not even attempted. */
  ASSERT_OK(uv_tcp_init(loop, &server));
  ASSERT_OK(uv_ip4_addr("127.0.0.1", 0, &addr));
  ASSERT_OK(uv_tcp_bind(&server, (struct sockaddr *)&addr, 0));
  ASSERT_OK(uv_listen((uv_stream_t *)&server, 8, never_accept));
  ASSERT_OK(uv_tcp_getsockname(&server, (struct sockaddr *)&addr, &len));
  ASSERT_OK(uv_tcp_init(loop, &tcp));
  tcp.data = &p.closed;
  cn.req.data = &p;
  ASSERT_OK(ct_uv_tcp_connect(&cn, &tcp, (struct sockaddr *)&addr, t,
                              CT_FOREVER, pre_connect_done, count_close));

  /* A read of a pipe with data waiting: nothing is read. */
  ASSERT_OK(uv_pipe(fds, 0, 0));
  assert_int_equal(write(fds[1], "data", 4), 4);
  ASSERT_OK(uv_pipe_init(loop, &pipe_h, 0));
  ASSERT_OK(uv_pipe_open(&pipe_h, fds[0]));
  pipe_h.data = &p.closed;
  rd.data = &p;
  ASSERT_OK(ct_uv_read_start(&rd, (uv_stream_t *)&pipe_h, t, CT_FOREVER,
                             never_alloc, pre_read));

  /* Nothing ran inside the calls. */
  assert_int_equal(p.work + p.fs + p.gai + p.connect + p.read, 0);
  (void)uv_run(loop, UV_RUN_ONCE); /* the reports come from the loop */
  server.data = &p.closed;
  uv_close((uv_handle_t *)&server, count_close);
  ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
  close(fds[1]);

  assert_int_equal(p.work, 1);
  assert_int_equal(p.fs, 1);
  assert_int_equal(p.gai, 1);
  assert_int_equal(p.connect, 1);
  assert_int_equal(p.read, 1);
  ASSERT_ERR(p.work_status, UV_ECANCELED);
  ASSERT_ERR((int)p.fs_result, UV_ECANCELED);
  ASSERT_ERR(p.gai_status, UV_ECANCELED);
  ASSERT_ERR(p.connect_status, UV_ECANCELED);
  ASSERT_ERR(p.read_status, UV_ECANCELED);
  assert_int_equal(p.closed, 3); /* tcp, pipe, server */
  loop_finish(loop);
  ct_token_unref(t);
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
      cmocka_unit_test(test_pool_cancel_before_start),
      cmocka_unit_test(test_connect_timeout_on_full_backlog),
      cmocka_unit_test(test_spawn_killed),
      cmocka_unit_test(test_sleep),
      cmocka_unit_test(test_sleep_stop_races_trigger),
      cmocka_unit_test(test_already_triggered),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
