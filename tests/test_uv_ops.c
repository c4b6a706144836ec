/* SPDX-License-Identifier: MIT
 *
 * test_uv_ops.c -- the libuv adapter's operations (canceltoken_uv.h) on real
 * loops: thread-pool requests cancelled before they start (the pool is
 * saturated on purpose), a connect that really hangs (the listener's accept
 * queue is full) ended by its deadline, child processes killed, cancellable
 * sleeps, and every operation started with its token already triggered.
 * Every test ends with uv_loop_close() returning 0: no handle is left open.
 *
 * Nothing here waits for time to pass to be correct: threads that must be
 * running announce it through tokens, and the only deadlines are either the
 * subject of the test or safety nets that fail the test.
 */
#include "uv_util.h"

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

int main(void) {
  /* Before any libuv pool use: the pool's size is read once. */
  setenv("UV_THREADPOOL_SIZE", "4", 1);
  signal(SIGPIPE, SIG_IGN);
  loop_thread = pthread_self();

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool_cancel_before_start),
      cmocka_unit_test(test_connect_timeout_on_full_backlog),
      cmocka_unit_test(test_spawn_killed),
      cmocka_unit_test(test_sleep),
      cmocka_unit_test(test_sleep_stop_races_trigger),
      cmocka_unit_test(test_already_triggered),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
